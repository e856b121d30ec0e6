// What every command that turns images into embeddings shares: the model options, loading
// (with a calibrated manifest when there is one) and embedding aligned crops or photos alike.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "facemag/align/landmark_file.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::cli {

struct ModelOptions {
  std::string arch;
  std::string weights;
  std::string manifest;    // explicit manifest file
  bool no_verify = false;  // load weights whose SHA-256 differs from the manifest's
  bool flip = false;
  int batch = 16;
  int threads = 0;
  std::string precision = "fp32";
  std::string int8_calibration;  // --int8-calibration (default WEIGHTS.int8.json)
  bool prewhiten = false;        // facenet-pytorch's per-face standardisation (`embed --prewhiten`)
  DetectorOptions detector;
  // One face per photo: which one (see KeepFaces), or the dataset's own landmarks instead of
  // detection.
  std::string keep = "center";
  std::string landmarks;
};
// --precision reference|fp32|bf16|int8 (see facemag::Precision).
void add_precision_option(CLI::App& cmd, std::string& precision);
void add_model_options(CLI::App& cmd, ModelOptions& opt, const std::string& default_arch);
// --landmarks FILE (a dataset's 5-point landmarks: detection skipped).
void add_landmarks_option(CLI::App& cmd, std::string& landmarks);
// --keep [all|largest|center|best] for commands that list every face by default: a bare --keep
// means center. The value is checked by keep_option_value.
void add_keep_all_option(CLI::App& cmd, std::string& keep);
KeepFaces keep_option_value(const std::string& keep);
// --keep largest|center|best and --landmarks, for commands that take one face per photo.
void add_face_choice_options(CLI::App& cmd, ModelOptions& opt);
// The landmarks file named by --landmarks, or nullopt.
std::optional<LandmarkFile> read_landmarks_option(const std::string& path);
// "N of M photos showed several faces; kept ..." for photos that went through detection.
std::string face_choice_summary(std::size_t several, std::size_t detected, KeepFaces keep);

// Where `facemag calibrate --save` writes a model's manifest: beside its weights.
std::filesystem::path manifest_path_for(const std::filesystem::path& weights);

// The manifest of a model: --manifest if given, else WEIGHTS.manifest.json when it exists (a
// calibration), else the built-in one. `weights` may be empty (features-only commands).
ModelManifest resolve_manifest(const ModelOptions& opt, const std::filesystem::path& weights);

// Sets the thread count and loads the model the options name: weights from --weights or
// $FACEMAG_HOME, the manifest from resolve_manifest, the precision; logs what loading noticed.
Embedder load_model(const ModelOptions& opt);

enum class FaceSource { kAlignedInput, kLandmarks, kDetector };

// Model input crops from images, one face per image: an image of exactly the model's input size
// is taken as an aligned face; a photo found in --landmarks is aligned from its landmarks;
// anything else goes through MTCNN (loaded on first need, photos of a call detected together) and
// alignment, keeping the face that --keep chooses (default: the one the photo is about; `best`
// leaves every face as a candidate for the caller to choose by quality).
class FaceAligner {
 public:
  FaceAligner(const ModelOptions& opt, ModelManifest manifest);

  struct Candidates {
    std::vector<cv::Mat> crops;  // empty: failed, see error
    std::string error;
    FaceSource source = FaceSource::kAlignedInput;
    std::size_t faces_in_photo = 0;  // faces the detector found (kDetector)
  };
  // Images in, candidates out, same order; names are for messages and --landmarks lookups.
  std::vector<Candidates> align(const std::vector<cv::Mat>& images,
                                const std::vector<std::string>& names) const;
  KeepFaces keep() const { return keep_; }

 private:
  DetectorOptions detector_options_;
  ModelManifest manifest_;
  KeepFaces keep_;
  std::optional<LandmarkFile> landmarks_;
  mutable std::unique_ptr<MtcnnDetector> detector_;
};

// A loaded model that embeds images, one face per image, aligned by a FaceAligner (`best`: the
// face of highest magnitude).
class FaceEncoder {
 public:
  explicit FaceEncoder(const ModelOptions& opt);

  struct Face {
    std::optional<Embedding> embedding;  // empty: failed, see error
    cv::Mat crop;                        // the model's input crop (BGR)
    std::string error;
    using Source = FaceSource;
    Source source = Source::kAlignedInput;
    std::size_t faces_in_photo = 0;  // faces the detector found (kDetector)
  };
  // Images in, faces out, same order; names are for messages and --landmarks lookups.
  std::vector<Face> encode(const std::vector<cv::Mat>& images,
                           const std::vector<std::string>& names) const;

  const Embedder& embedder() const { return embedder_; }
  const ModelManifest& manifest() const { return embedder_.manifest(); }
  KeepFaces keep() const { return aligner_.keep(); }

 private:
  ModelOptions opt_;
  Embedder embedder_;
  FaceAligner aligner_;
};

// What happened to the faces of a run of FaceEncoder::encode: the summary above, or how many were
// aligned from --landmarks; empty when every input was an aligned face.
std::string face_choice_summary(const std::vector<FaceEncoder::Face>& faces, KeepFaces keep,
                                const std::string& landmarks);

// Photos in chunks of 32, decoded (an unreadable one is reported and skipped), detected together
// and their chosen faces embedded together: per_chunk(which, records) gets the files of the photos
// that decoded and, for each, its faces. Returns the number of unreadable photos.
template <class F>
std::size_t for_each_photo_chunk(const std::vector<io::InputFile>& files,
                                 const FacePipeline& pipeline, KeepFaces keep, const char* label,
                                 F per_chunk) {
  std::size_t unreadable = 0;
  ProgressBar progress(files.size(), label);
  constexpr std::size_t kChunk = 32;
  for (std::size_t start = 0; start < files.size(); start += kChunk) {
    const auto end = std::min(files.size(), start + kChunk);
    std::vector<cv::Mat> photos;
    std::vector<const io::InputFile*> which;
    for (std::size_t i = start; i < end; ++i) {
      try {
        photos.push_back(io::read_image_bgr(files[i].path));
        which.push_back(&files[i]);
      } catch (const InvalidInput& e) {
        report_skipped(files[i].path.string(), e.what());
        ++unreadable;
      }
    }
    auto records = pipeline.process_batch(photos, keep);
    per_chunk(which, records);
    progress.advance(end - start);
  }
  return unreadable;
}

}  // namespace facemag::cli
