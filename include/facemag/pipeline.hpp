// Photo to embeddings: detect faces, align each as the embedding model expects, embed them.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "facemag/align/landmark_file.hpp"
#include "facemag/detect/mtcnn.hpp"
#include "facemag/embed/embedder.hpp"

namespace facemag {

struct FaceRecord {
  std::size_t index = 0;           // position in the detector's order (largest face first)
  std::size_t faces_in_photo = 0;  // faces the detector found in the photo (before any choice)
  Detection detection;
  Embedding embedding;
};

// Which faces of a photo to keep.
//   kAll: every face found.
//   kLargest: the largest box (MTCNN's first face).
//   kCenter: the face the photo is about: the largest box weighted by its distance from the
//     image centre (central_face(), insightface's choice). The default wherever a dataset takes
//     one face per photo: a larger bystander at the edge does not win.
//   kBest: the face with the highest embedding magnitude (MagFace quality).
enum class KeepFaces { kAll, kLargest, kCenter, kBest };
// "all", "largest", "center", "best"; InvalidInput for others.
KeepFaces parse_keep_faces(const std::string& name);
std::string keep_faces_name(KeepFaces keep);
std::vector<std::string> keep_faces_names();
// How `keep` chooses, in words, for reports ("largest box nearest the image centre", ...).
std::string keep_faces_rule(KeepFaces keep);

// The library's one face-choice rule (FacePipeline, FaceAligner and the server use it): which of
// a photo's detections `keep` keeps, as indices into `faces` (MTCNN's order, largest first), in
// that order. kLargest: the first; kCenter: central_face() of the image's width and height; kAll
// and kBest: every one (kBest then keeps the face of highest_magnitude() among their
// embeddings). No face: an empty vector.
std::vector<std::size_t> chosen_faces(std::span<const Detection> faces, int image_width,
                                      int image_height, KeepFaces keep);
// kBest's pick: the index of the embedding of highest magnitude, the first of equals.
// `embeddings` must not be empty.
std::size_t highest_magnitude(std::span<const Embedding> embeddings);

// "N of M photo(s) showed several faces; kept <keep_faces_rule> ('<name>')": of `detected`
// photos that went through detection, `several` showed more than one face.
std::string face_choice_summary(std::size_t several, std::size_t detected, KeepFaces keep);

// The crop a model expects for a detected face, following its manifest's alignment_template:
// a similarity-aligned crop for "arcface-112x112"/"sphereface-96x112", facenet-pytorch's margin
// crop for "facenet-margin-<size>". BGR in, BGR out.
cv::Mat crop_for_model(const cv::Mat& bgr, const Detection& face, const ModelManifest& manifest);

// Borrows a detector and an embedder (both immutable, shareable); holds no per-call state.
class FacePipeline {
 public:
  FacePipeline(const MtcnnDetector& detector, const Embedder& embedder, MtcnnOptions options = {})
      : detector_(detector), embedder_(embedder), options_(options) {}

  // All faces of an 8-bit BGR photo, then filtered by `keep`. No face: an empty vector.
  std::vector<FaceRecord> process(const cv::Mat& bgr, KeepFaces keep = KeepFaces::kAll) const;
  // The same for several photos: detected together (MtcnnDetector::detect_batch: photos of one
  // size share every network pass) and all faces embedded in one batch. Result i belongs to
  // photos[i].
  std::vector<std::vector<FaceRecord>> process_batch(const std::vector<cv::Mat>& photos,
                                                     KeepFaces keep = KeepFaces::kAll) const;

  const ModelManifest& manifest() const { return embedder_.manifest(); }

 private:
  const MtcnnDetector& detector_;
  const Embedder& embedder_;
  MtcnnOptions options_;
};

// Where the face of an image came from (FaceAligner).
enum class FaceSource {
  kAlignedInput,  // the image was the model's input size: taken as an aligned face
  kLandmarks,     // aligned from the image's entry in a LandmarkFile
  kDetector,      // detected by MTCNN, then aligned
};

// Model input crops from images, one face per image: an image of exactly the model's input size
// is taken as an aligned face; with a LandmarkFile, any other image is aligned from its entry
// there (no entry: an error, no detection); without one, it goes through MTCNN (photos of one
// align() call detected together) and crop_for_model(), keeping the face that `keep` chooses
// (chosen_faces(); kBest leaves every face as a candidate for the caller to choose by quality).
// Copies share the detector; align() is const and safe to call from several threads.
class FaceAligner {
 public:
  // Makes the detector the first time an image needs detection, never when every image is an
  // aligned face or listed in the LandmarkFile (MTCNN's weights may be absent then). A load that
  // throws is tried again at the next need.
  using DetectorLoader = std::function<MtcnnDetector()>;

  // `manifest`: the embedding model's (input size, alignment template). `keep`: kLargest,
  // kCenter or kBest; kAll is InvalidInput (one face per image).
  FaceAligner(DetectorLoader load_detector, MtcnnOptions options, ModelManifest manifest,
              KeepFaces keep, std::optional<LandmarkFile> landmarks = std::nullopt);
  // The same with a loaded detector, borrowed: it must outlive the aligner and its copies.
  FaceAligner(const MtcnnDetector& detector, MtcnnOptions options, ModelManifest manifest,
              KeepFaces keep, std::optional<LandmarkFile> landmarks = std::nullopt);

  struct Candidates {
    std::vector<cv::Mat> crops;  // BGR, the model's input size; empty: failed, see error
    std::string error;           // "<name>: no face found", "<name>: no landmarks in <file>"
    FaceSource source = FaceSource::kAlignedInput;
    std::size_t faces_in_photo = 0;  // faces the detector found (kDetector)
  };
  // 8-bit BGR images in, candidates out, same order; names[i] names images[i] in messages and is
  // the path looked up in the LandmarkFile.
  std::vector<Candidates> align(const std::vector<cv::Mat>& images,
                                const std::vector<std::string>& names) const;

  KeepFaces keep() const { return keep_; }
  const ModelManifest& manifest() const { return manifest_; }
  // The LandmarkFile given, or nullptr.
  const LandmarkFile* landmarks() const { return landmarks_ ? &*landmarks_ : nullptr; }

 private:
  struct Detector;  // the borrowed or lazily loaded detector
  // What both public constructors share: the fields and the check of `keep`.
  FaceAligner(std::shared_ptr<Detector> detector, MtcnnOptions options, ModelManifest manifest,
              KeepFaces keep, std::optional<LandmarkFile> landmarks);
  std::shared_ptr<Detector> detector_;
  MtcnnOptions options_;
  ModelManifest manifest_;
  KeepFaces keep_;
  std::optional<LandmarkFile> landmarks_;
};

// Embeds images, one face per image, as a FaceAligner aligns them; of kBest's candidates the face
// of highest magnitude (highest_magnitude()). Borrows the embedder (immutable; it must outlive the
// encoder), which the crops of a call go through `batch` at a time.
class FaceEncoder {
 public:
  // `aligner` must be made for the embedder's manifest (same input size and alignment template)
  // and `batch` at least 1; InvalidInput otherwise.
  FaceEncoder(const Embedder& embedder, FaceAligner aligner, int batch = 16);

  struct Face {
    std::optional<Embedding> embedding;  // empty: failed, see error
    cv::Mat crop;                        // the model's input crop (BGR)
    std::string error;
    using Source = FaceSource;
    Source source = Source::kAlignedInput;
    std::size_t faces_in_photo = 0;  // faces the detector found (kDetector)
  };
  // 8-bit BGR images in, faces out, same order; names as FaceAligner::align takes them.
  std::vector<Face> encode(const std::vector<cv::Mat>& images,
                           const std::vector<std::string>& names) const;

  const Embedder& embedder() const { return embedder_; }
  const ModelManifest& manifest() const { return embedder_.manifest(); }
  const FaceAligner& aligner() const { return aligner_; }
  KeepFaces keep() const { return aligner_.keep(); }

 private:
  const Embedder& embedder_;
  FaceAligner aligner_;
  std::size_t batch_;
};

// What happened to the faces of FaceEncoder::encode results: "N photo(s) aligned from the
// landmarks in <landmarks>" (the LandmarkFile's name as the caller gives it) and/or the summary
// above for the photos that went through detection; empty when every input was an aligned face.
std::string face_choice_summary(const std::vector<FaceEncoder::Face>& faces, KeepFaces keep,
                                const std::string& landmarks);

}  // namespace facemag
