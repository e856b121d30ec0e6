// Image files to embeddings, in chunks: aligned crops, photos aligned from a dataset's landmarks,
// or photos through detection (FacePipeline), each face with its place in the photo and, for a
// model with a classifier head, its most probable classes. What `facemag embed` and `facemag
// quality` print, and what a binding's embed_photos() returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "facemag/align/landmark_file.hpp"
#include "facemag/detect/mtcnn.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/pipeline.hpp"

namespace facemag {

// One of a face's most probable classes: probability from the softmax of the classifier logits.
struct ClassScore {
  std::int64_t index = 0;
  float probability = 0.0f;
  std::optional<std::string> name;  // the class's label, when the labels list has one
};

// The `k` most probable classes of each face (aligned crops as Embedder::embed takes them), most
// probable first: min(k, num_classes) per face. `labels[i]` names class i (may be shorter).
// InvalidInput for a model without a classifier head (Embedder::logits).
std::vector<std::vector<ClassScore>> top_classes(const Embedder& embedder,
                                                 const std::vector<cv::Mat>& faces, int k,
                                                 const std::vector<std::string>& labels = {});

// Class names, one per line in class order; of a CSV line the last field. A first line "name",
// "Name" or "label" is a header and skipped. InvalidInput naming the file when it cannot be read.
std::vector<std::string> read_class_labels(const std::filesystem::path& path);

// Where a face of a photo is.
struct FoundFace {
  std::size_t index = 0;           // FaceRecord::index (largest first); 0 from landmarks
  std::size_t faces_in_photo = 0;  // faces the detector found; 1 from landmarks
  Detection detection;             // from landmarks: detection_from_landmarks()
};

// One embedded face of an input file.
struct FileFace {
  std::string path;                // the input file (path.string())
  std::optional<FoundFace> found;  // unset for an aligned input (the whole image is the face)
  Embedding embedding;
  std::vector<ClassScore> classes;  // top_classes(); empty unless EmbedFilesOptions::classify
};

// An input skipped: unreadable, not an aligned face of the model's size (no detector), or absent
// from the landmarks file. `reason` is the InvalidInput message (most name the file).
struct FileFailure {
  std::string path;
  std::string reason;
};

struct EmbedFilesOptions {
  // Which faces of a detected photo to keep (chosen_faces()).
  KeepFaces keep = KeepFaces::kAll;
  // Images not of the model's input size that are listed here are aligned from their landmarks,
  // never detected; those not listed are failures.
  std::optional<LandmarkFile> landmarks;
  int classify = 0;                 // top classes per face (0: none)
  std::vector<std::string> labels;  // class names for `classify`
  MtcnnOptions detection;
  std::size_t chunk = 16;  // files decoded, detected and embedded together
};

// What a run over files (or one chunk of them) gave.
struct EmbeddedFiles {
  std::size_t files = 0;  // inputs covered
  // In input order, except that without a detector the aligned inputs of a chunk follow the faces
  // aligned from landmarks in it.
  std::vector<FileFace> faces;
  std::vector<FileFailure> failures;  // in input order
  std::vector<std::string> faceless;  // photos in which the detector found no face
  std::size_t detected = 0;           // photos in which it found one or more
  std::size_t several = 0;            // of those, photos showing more than one face
};

// Borrows an embedder and optionally a detector (immutable; they must outlive it); holds no
// per-call state, so embed() is const and safe to call from several threads.
class FileEmbedder {
 public:
  // `detector` nullptr: every input must be an aligned face of the model's input size or listed
  // in options.landmarks; otherwise images not aligned from landmarks are detected, whatever
  // their size. InvalidInput when options.classify > 0 and the model has no classifier head, or
  // options.chunk is 0.
  FileEmbedder(const Embedder& embedder, const MtcnnDetector* detector,
               EmbedFilesOptions options = {});

  // Embeds the faces of `files` (decoded with io::read_image_bgr), options.chunk files at a time,
  // handing each chunk's result to `on_chunk` before the next starts. An input that fails with
  // InvalidInput is a FileFailure of its chunk, never an exception; other errors propagate.
  void embed(std::span<const std::filesystem::path> files,
             const std::function<void(EmbeddedFiles chunk)>& on_chunk) const;
  // The same, every chunk's result together.
  EmbeddedFiles embed(std::span<const std::filesystem::path> files) const;

  const ModelManifest& manifest() const { return embedder_.manifest(); }

 private:
  struct Chunk;
  EmbeddedFiles embed_chunk(std::span<const std::filesystem::path> files) const;
  void decode(const std::filesystem::path& file, Chunk& chunk) const;
  FileFace from_landmarks(const std::filesystem::path& file, const cv::Mat& image) const;
  void detect(Chunk& chunk, EmbeddedFiles& result) const;

  const Embedder& embedder_;
  std::optional<FacePipeline> pipeline_;
  EmbedFilesOptions options_;
};

}  // namespace facemag
