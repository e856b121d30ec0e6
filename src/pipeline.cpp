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
  // Faces of photo p to embed, as indices into its detections (largest first).
  const auto kept = [&](std::size_t p) -> std::vector<std::size_t> {
    const auto& found = detections[p];
    if (found.empty()) return {};
    if (keep == KeepFaces::kLargest) return {0};
    if (keep == KeepFaces::kCenter) return {central_face(found, photos[p].cols, photos[p].rows)};
    std::vector<std::size_t> all(found.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    return all;
  };
  // Every kept face of every photo through the embedder in one batch.
  std::vector<std::vector<std::size_t>> chosen(photos.size());
  std::vector<cv::Mat> crops;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    chosen[p] = kept(p);
    for (const std::size_t i : chosen[p])
      crops.push_back(crop_for_model(photos[p], detections[p][i], embedder_.manifest()));
  }
  const std::vector<Embedding> embeddings = embedder_.embed(crops);
  std::vector<std::vector<FaceRecord>> out(photos.size());
  std::size_t next = 0;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    for (const std::size_t i : chosen[p])
      out[p].push_back({i, detections[p].size(), detections[p][i], embeddings[next++]});
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

namespace {
struct KeepName {
  KeepFaces keep;
  const char* name;
  const char* rule;
};
constexpr KeepName kKeepNames[] = {
    {KeepFaces::kAll, "all", "every face"},
    {KeepFaces::kLargest, "largest", "the largest box"},
    {KeepFaces::kCenter, "center",
     "the largest box nearest the image centre (area - 2 x squared distance to the centre)"},
    {KeepFaces::kBest, "best", "the highest embedding magnitude"}};
}  // namespace

KeepFaces parse_keep_faces(const std::string& name) {
  for (const auto& k : kKeepNames) {
    if (name == k.name) return k.keep;
  }
  throw InvalidInput("unknown face choice '" + name + "' (all, largest, center, best)");
}

std::string keep_faces_name(KeepFaces keep) {
  for (const auto& k : kKeepNames) {
    if (k.keep == keep) return k.name;
  }
  return "?";
}

std::vector<std::string> keep_faces_names() {
  std::vector<std::string> names;
  for (const auto& k : kKeepNames) names.emplace_back(k.name);
  return names;
}

std::string keep_faces_rule(KeepFaces keep) {
  for (const auto& k : kKeepNames) {
    if (k.keep == keep) return k.rule;
  }
  return "?";
}

}  // namespace facemag
