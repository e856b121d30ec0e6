// What every command that turns images into embeddings shares: the model options, loading
// (with a calibrated manifest when there is one), and the library's FaceAligner and FaceEncoder
// (facemag/pipeline.hpp) made from those options.
#pragma once

#include <CLI/CLI.hpp>

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
  CLI::Option* arch_option = nullptr;  // --arch, to tell a given one from the command's default
  std::string weights;
  std::string manifest;                // explicit manifest file
  std::optional<ResolvedModel> store;  // --model NAME's files, resolved once at parsing
  bool no_verify = false;              // load weights whose SHA-256 differs from the manifest's
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

  bool arch_given() const { return arch_option && arch_option->count() > 0; }
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
// What the options ask for, and the model files the library finds for it (resolve_model; --model
// NAME's, resolved when the command line was parsed, while the options still name its weights).
ModelRequest model_request(const ModelOptions& opt);
ResolvedModel resolve_model_files(const ModelOptions& opt);

// The model behind embeddings: the files the options resolve to where the faces were embedded
// by this command; for features read from a file, the weights given (may be empty) and the
// manifest that goes with them (resolve_manifest).
ResolvedModel resolve_model_of_embeddings(const ModelOptions& opt, bool embedded_here);

// The manifest of the options' model with the weights given (may be empty: features-only
// commands; see facemag::resolve_manifest).
ModelManifest resolve_manifest(const ModelOptions& opt, const std::filesystem::path& weights);

// Sets the thread count and loads the model the options name (resolve_model_files), at the
// precision asked for; logs what loading noticed.
Embedder load_model(const ModelOptions& opt);
// The same for files already resolved from `opt` (for a caller that needs them too: resolved
// once, not again).
Embedder load_model(const ResolvedModel& model, const ModelOptions& opt);

// The library's FaceAligner as the options ask for it: --keep (not all), --landmarks, and MTCNN
// from the detector options, loaded on first need.
FaceAligner make_face_aligner(const ModelOptions& opt, ModelManifest manifest);

namespace detail {
struct OwnedEmbedder {
  Embedder owned_embedder;
};
}  // namespace detail

// The model the options name (load_model) with the library's FaceEncoder over it: crops --batch
// at a time, aligned by make_face_aligner. Not copied or moved (the encoder borrows the model).
class LoadedFaceEncoder : private detail::OwnedEmbedder, public FaceEncoder {
 public:
  explicit LoadedFaceEncoder(const ModelOptions& opt);
  LoadedFaceEncoder(const LoadedFaceEncoder&) = delete;
  LoadedFaceEncoder& operator=(const LoadedFaceEncoder&) = delete;
};

}  // namespace facemag::cli
