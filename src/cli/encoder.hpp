// What every command that turns images into embeddings shares: the model options, loading
// (with a calibrated manifest when there is one) and embedding aligned crops or photos alike.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "facemag/embed/embedder.hpp"

namespace facemag::cli {

struct ModelOptions {
  std::string arch;
  std::string weights;
  std::string manifest;  // explicit manifest file
  bool flip = false;
  int batch = 16;
  int threads = 0;
  std::string precision = "fp32";
  bool prewhiten = false;  // facenet-pytorch's per-face standardisation (`embed --prewhiten`)
  DetectorOptions detector;
};
// --precision reference|fp32|bf16 (see facemag::Precision).
void add_precision_option(CLI::App& cmd, std::string& precision);
void add_model_options(CLI::App& cmd, ModelOptions& opt, const std::string& default_arch);

// Where `facemag calibrate --save` writes a model's manifest: beside its weights.
std::filesystem::path manifest_path_for(const std::filesystem::path& weights);

// The manifest of a model: --manifest if given, else WEIGHTS.manifest.json when it exists (a
// calibration), else the built-in one. `weights` may be empty (features-only commands).
ModelManifest resolve_manifest(const ModelOptions& opt, const std::filesystem::path& weights);

// Sets the thread count and loads the model the options name: weights from --weights or
// $FACEMAG_HOME, the manifest from resolve_manifest, the precision; logs what loading noticed.
Embedder load_model(const ModelOptions& opt);

// A loaded model that embeds images: an image of exactly the model's input size is taken as an
// aligned face; anything else goes through MTCNN (loaded on first need) and alignment, keeping
// the largest face.
class FaceEncoder {
 public:
  explicit FaceEncoder(const ModelOptions& opt);

  struct Face {
    std::optional<Embedding> embedding;  // empty: failed, see error
    cv::Mat crop;                        // the model's input crop (BGR)
    std::string error;
  };
  // Images in, faces out, same order; names are for messages.
  std::vector<Face> encode(const std::vector<cv::Mat>& images,
                           const std::vector<std::string>& names) const;

  const Embedder& embedder() const { return embedder_; }
  const ModelManifest& manifest() const { return embedder_.manifest(); }

 private:
  ModelOptions opt_;
  Embedder embedder_;
  mutable std::unique_ptr<MtcnnDetector> detector_;
};

}  // namespace facemag::cli
