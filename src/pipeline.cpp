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
  return process_batch({bgr}, keep)[0];
}

std::vector<std::vector<FaceRecord>> FacePipeline::process_batch(const std::vector<cv::Mat>& photos,
                                                                 KeepFaces keep) const {
  const auto detections = detector_.detect_batch(photos, options_);
  // Faces of photo p to embed: the detector orders faces largest first.
  const auto kept = [&](std::size_t p) {
    return keep == KeepFaces::kLargest ? std::min<std::size_t>(1, detections[p].size())
                                       : detections[p].size();
  };
  // Every kept face of every photo through the embedder in one batch.
  std::vector<cv::Mat> crops;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    for (std::size_t i = 0; i < kept(p); ++i)
      crops.push_back(crop_for_model(photos[p], detections[p][i], embedder_.manifest()));
  }
  const std::vector<Embedding> embeddings = embedder_.embed(crops);
  std::vector<std::vector<FaceRecord>> out(photos.size());
  std::size_t next = 0;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    for (std::size_t i = 0; i < kept(p); ++i)
      out[p].push_back({i, detections[p][i], embeddings[next++]});
    if (keep == KeepFaces::kBest && !out[p].empty()) {
      const auto best =
          std::max_element(out[p].begin(), out[p].end(), [](const auto& a, const auto& b) {
            return a.embedding.magnitude < b.embedding.magnitude;
          });
      out[p] = {*best};
    }
  }
  return out;
}

}  // namespace facemag
