#include "facemag/pipeline.hpp"

#include <algorithm>
#include <mutex>

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
  // Every kept face of every photo through the embedder in one batch.
  std::vector<std::vector<std::size_t>> chosen(photos.size());
  std::vector<cv::Mat> crops;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    chosen[p] = chosen_faces(detections[p], photos[p].cols, photos[p].rows, keep);
    for (const std::size_t i : chosen[p])
      crops.push_back(crop_for_model(photos[p], detections[p][i], embedder_.manifest()));
  }
  const std::vector<Embedding> embeddings = embedder_.embed(crops);
  std::vector<std::vector<FaceRecord>> out(photos.size());
  std::size_t next = 0;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    const std::span<const Embedding> mine(embeddings.data() + next, chosen[p].size());
    next += mine.size();
    const auto record = [&](std::size_t k) -> FaceRecord {
      const std::size_t i = chosen[p][k];
      return {i, detections[p].size(), detections[p][i], mine[k]};
    };
    if (keep == KeepFaces::kBest && !mine.empty()) {
      out[p].push_back(record(highest_magnitude(mine)));
      continue;
    }
    for (std::size_t k = 0; k < mine.size(); ++k) out[p].push_back(record(k));
  }
  return out;
}

std::vector<std::size_t> chosen_faces(std::span<const Detection> faces, int image_width,
                                      int image_height, KeepFaces keep) {
  if (faces.empty()) return {};
  if (keep == KeepFaces::kLargest) return {0};  // MTCNN lists the largest face first
  if (keep == KeepFaces::kCenter) return {central_face(faces, image_width, image_height)};
  // kAll, and kBest, which needs every face's embedding to choose.
  std::vector<std::size_t> all(faces.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  return all;
}

std::size_t highest_magnitude(std::span<const Embedding> embeddings) {
  const auto best = std::max_element(
      embeddings.begin(), embeddings.end(),
      [](const Embedding& a, const Embedding& b) { return a.magnitude < b.magnitude; });
  return static_cast<std::size_t>(best - embeddings.begin());
}

std::string face_choice_summary(std::size_t several, std::size_t detected, KeepFaces keep) {
  return std::to_string(several) + " of " + std::to_string(detected) +
         " photo(s) showed several faces; kept " + keep_faces_rule(keep) + " ('" +
         keep_faces_name(keep) + "')";
}

std::string face_choice_summary(const std::vector<FaceEncoder::Face>& faces, KeepFaces keep,
                                const std::string& landmarks) {
  std::size_t several = 0, detected = 0, from_landmarks = 0;
  for (const auto& f : faces) {
    from_landmarks += f.source == FaceSource::kLandmarks;
    detected += f.source == FaceSource::kDetector && f.faces_in_photo > 0;
    several += f.faces_in_photo > 1;
  }
  std::string out;
  if (from_landmarks)
    out = std::to_string(from_landmarks) + " photo(s) aligned from the landmarks in " + landmarks;
  if (detected) out += (out.empty() ? "" : "; ") + face_choice_summary(several, detected, keep);
  return out;
}

struct FaceAligner::Detector {
  const MtcnnDetector* borrowed = nullptr;
  DetectorLoader load;
  std::mutex mutex;  // guards `loaded`: align() is const and may run on several threads
  std::optional<MtcnnDetector> loaded;

  const MtcnnDetector& get() {
    if (borrowed) return *borrowed;
    const std::lock_guard lock(mutex);
    if (!loaded) loaded.emplace(load());
    return *loaded;
  }
};

FaceAligner::FaceAligner(std::shared_ptr<Detector> detector, MtcnnOptions options,
                         ModelManifest manifest, KeepFaces keep,
                         std::optional<LandmarkFile> landmarks)
    : detector_(std::move(detector)),
      options_(options),
      manifest_(std::move(manifest)),
      keep_(keep),
      landmarks_(std::move(landmarks)) {
  if (keep_ == KeepFaces::kAll)
    throw InvalidInput("FaceAligner takes one face per image: KeepFaces::kAll is no choice");
}

FaceAligner::FaceAligner(DetectorLoader load_detector, MtcnnOptions options, ModelManifest manifest,
                         KeepFaces keep, std::optional<LandmarkFile> landmarks)
    : FaceAligner(std::make_shared<Detector>(), options, std::move(manifest), keep,
                  std::move(landmarks)) {
  if (!load_detector) throw InvalidInput("FaceAligner: no detector loader");
  detector_->load = std::move(load_detector);
}

FaceAligner::FaceAligner(const MtcnnDetector& detector, MtcnnOptions options,
                         ModelManifest manifest, KeepFaces keep,
                         std::optional<LandmarkFile> landmarks)
    : FaceAligner(std::make_shared<Detector>(), options, std::move(manifest), keep,
                  std::move(landmarks)) {
  detector_->borrowed = &detector;
}

std::vector<FaceAligner::Candidates> FaceAligner::align(
    const std::vector<cv::Mat>& images, const std::vector<std::string>& names) const {
  const auto& m = manifest_;
  std::vector<Candidates> out(images.size());
  std::vector<std::size_t> to_detect;
  for (std::size_t i = 0; i < images.size(); ++i) {
    if (images[i].rows == m.input_height && images[i].cols == m.input_width) {
      out[i].crops.push_back(images[i]);
    } else if (landmarks_) {
      out[i].source = FaceSource::kLandmarks;
      const Landmarks5* marks = landmarks_->find(names[i]);
      if (!marks) {
        out[i].error = names[i] + ": no landmarks in " + landmarks_->source().string();
        continue;
      }
      out[i].crops.push_back(crop_for_model(images[i], detection_from_landmarks(*marks), m));
    } else {
      to_detect.push_back(i);
    }
  }
  if (to_detect.empty()) return out;
  std::vector<cv::Mat> photos;
  for (const std::size_t i : to_detect) photos.push_back(images[i]);
  const auto detections = detector_->get().detect_batch(photos, options_);
  for (std::size_t k = 0; k < to_detect.size(); ++k) {
    const std::size_t i = to_detect[k];
    const auto& found = detections[k];
    out[i].source = FaceSource::kDetector;
    out[i].faces_in_photo = found.size();
    if (found.empty()) {
      out[i].error = names[i] + ": no face found";
      continue;
    }
    for (const std::size_t f : chosen_faces(found, images[i].cols, images[i].rows, keep_))
      out[i].crops.push_back(crop_for_model(images[i], found[f], m));
  }
  return out;
}

FaceEncoder::FaceEncoder(const Embedder& embedder, FaceAligner aligner, int batch)
    : embedder_(embedder),
      aligner_(std::move(aligner)),
      batch_(static_cast<std::size_t>(std::max(batch, 0))) {
  if (batch < 1) throw InvalidInput("FaceEncoder: batch must be at least 1");
  const auto& a = aligner_.manifest();
  const auto& m = embedder_.manifest();
  if (a.input_width != m.input_width || a.input_height != m.input_height ||
      a.alignment_template != m.alignment_template)
    throw InvalidInput("FaceEncoder: the aligner makes " + std::to_string(a.input_width) + "x" +
                       std::to_string(a.input_height) + " " + a.alignment_template + " crops, " +
                       m.name + " takes " + std::to_string(m.input_width) + "x" +
                       std::to_string(m.input_height) + " " + m.alignment_template);
}

std::vector<FaceEncoder::Face> FaceEncoder::encode(const std::vector<cv::Mat>& images,
                                                   const std::vector<std::string>& names) const {
  const auto candidates = aligner_.align(images, names);
  std::vector<Face> faces(images.size());
  std::vector<cv::Mat> crops;
  for (std::size_t i = 0; i < images.size(); ++i) {
    faces[i].error = candidates[i].error;
    faces[i].source = candidates[i].source;
    faces[i].faces_in_photo = candidates[i].faces_in_photo;
    crops.insert(crops.end(), candidates[i].crops.begin(), candidates[i].crops.end());
  }
  std::vector<Embedding> embeddings;
  for (std::size_t start = 0; start < crops.size(); start += batch_) {
    const std::size_t end = std::min(crops.size(), start + batch_);
    for (auto& e : embedder_.embed({crops.begin() + start, crops.begin() + end}))
      embeddings.push_back(std::move(e));
  }
  // Each image's candidates are consecutive crops; one unless kBest.
  std::size_t next = 0;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const std::size_t n = candidates[i].crops.size();
    if (n > 0) {
      const std::size_t best = highest_magnitude({embeddings.data() + next, n});
      faces[i].embedding = std::move(embeddings[next + best]);
      faces[i].crop = candidates[i].crops[best];
    }
    next += n;
  }
  return faces;
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
