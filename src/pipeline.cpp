#include "facemag/pipeline.hpp"

#include <algorithm>

#include "facemag/align/align.hpp"
#include "facemag/error.hpp"

namespace facemag {

cv::Mat crop_for_model(const cv::Mat& bgr, const Detection& face, const ModelManifest& manifest) {
  const std::string& name = manifest.alignment_template;
  const std::string facenet_prefix = "facenet-margin-";
  if (name.rfind(facenet_prefix, 0) == 0) {
    const int margin = std::stoi(name.substr(facenet_prefix.size()));
    return margin_crop(bgr, face.box, manifest.input_width, margin);
  }
  return align_face(bgr, face.landmarks, alignment_template(name)).image;
}

std::vector<FaceRecord> FacePipeline::process(const cv::Mat& bgr, KeepFaces keep) const {
  const std::vector<Detection> faces = detector_.detect(bgr, options_);
  if (faces.empty()) return {};
  std::vector<cv::Mat> crops;
  for (const auto& face : faces) crops.push_back(crop_for_model(bgr, face, embedder_.manifest()));
  if (keep == KeepFaces::kLargest) crops.resize(1);  // the detector orders faces largest first
  const std::vector<Embedding> embeddings = embedder_.embed(crops);
  std::vector<FaceRecord> out;
  for (std::size_t i = 0; i < embeddings.size(); ++i) out.push_back({i, faces[i], embeddings[i]});
  if (keep == KeepFaces::kBest) {
    const auto best = std::max_element(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return a.embedding.magnitude < b.embedding.magnitude;
    });
    out = {*best};
  }
  return out;
}

}  // namespace facemag
