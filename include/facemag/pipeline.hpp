// Photo to embeddings: detect faces, align each as the embedding model expects, embed them.
#pragma once

#include <opencv2/core/mat.hpp>

#include <string>
#include <vector>

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

}  // namespace facemag
