// Face embeddings from aligned crops, with the preprocessing that is part of each model.
#pragma once

#include <torch/types.h>
#include <opencv2/core/mat.hpp>

#include "facemag/model/manifest.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace facemag {

// One face's embedding. `raw` is the network output as is; `magnitude` its L2 norm, computed
// before any normalisation (MagFace's quality); `quality` the face's quality by the model's rule
// (face_quality.hpp: the magnitude for MagFace models, else the magnitude times the crop's
// sharpness factor).
struct Embedding {
  std::vector<float> raw;
  float magnitude = 0.0f;
  float quality = 0.0f;

  // A unit-length copy of `raw` (raw itself is never changed).
  std::vector<float> normalized() const;
};

// How an Embedder computes. Measured figures: README "Speed" (per CPU family).
//   kReference: the network op for op as PyTorch runs it (NCHW, BatchNorm separate).
//   kFloat32 (default): BatchNorm folded into the convolutions, the network on oneDNN where the
//     build has it: iResNet with Winograd 3x3 convolutions (nn::OneDnnIResNet; its cost is
//     memory: the 3x3 weights kept as Winograd tiles, iResNet100 at batch 16 peaks at ~2.0 GB on
//     AVX-512 (6x6 tiles, the loaded network kept beside them) and ~0.8-0.9 GB on AVX2 (4x4
//     tiles, the loaded network let go of) against PyTorch's ~1.0 and ~0.74-0.83), MobileFaceNet
//     and InceptionResnetV1 from their own descriptions (nn::OneDnnGraph); without oneDNN, LibTorch
//     channels-last (iResNet, Inception) or kReference (MobileFaceNet). Results equal the reference
//     up to float32 rounding (1 - cosine ~1e-11).
//   kBFloat16: the same networks on oneDNN in bfloat16 (weights and stored activations rounded
//     to 8 significant bits, float32 accumulation), where the CPU has AVX-512 (AVX512-BF16 or
//     AMX natively, else emulated by oneDNN); about half the memory of kFloat32. Accuracy cost
//     on real faces (MobileFaceNet, LFW folds 1-5): 99.00 -> 98.93 %; against the goldens,
//     1 - cosine <= ~2e-4.
//   kInt8: post-training quantisation on oneDNN's VNNI kernels (nn::OneDnnGraph): weights per
//     output channel, every stored value per tensor with the scale of a calibration measured on
//     real faces (`facemag calibrate-int8`, read from EmbedderOptions::int8_calibration or
//     WEIGHTS.int8.json); every network. Refused on CPUs without VNNI.
enum class Precision { kReference, kFloat32, kBFloat16, kInt8 };
// "reference", "fp32", "bf16", "int8"; InvalidInput for others.
Precision parse_precision(const std::string& name);
std::string precision_name(Precision precision);
// Every accepted name, in the enum's order.
std::vector<std::string> precision_names();

struct EmbedderOptions {
  Precision precision = Precision::kFloat32;
  // Loading hashes the weights while the checkpoint is parsed; when the manifest has a sha256 it
  // refuses a mismatch naming both hashes, and the loaded model's manifest().sha256 is the
  // hash of the file it was loaded from. Unchecked, it has none: what it says is always true.
  bool verify_sha256 = true;
  // kInt8: the calibration file; empty: WEIGHTS.int8.json beside the loaded checkpoint.
  std::filesystem::path int8_calibration = {};
};

// The calibration as JSON (the model's name, architecture and weights SHA-256 when known, the
// number of faces, the largest magnitudes), written atomically.
void write_int8_calibration(const std::filesystem::path& file, const ModelManifest& manifest,
                            const nn::Int8Calibration& calibration);
// Reads one back; ModelLoadError when it was made for another architecture or other weights.
nn::Int8Calibration read_int8_calibration(const std::filesystem::path& file,
                                          const ModelManifest& manifest);

// A loaded model: immutable after load and safe to share between threads; every method is const.
class Embedder {
 public:
  // Loads weights from a checkpoint (a MagFace training checkpoint with `state_dict` and
  // `features.module.`/`module.features.` prefixes, a DataParallel `module.` state dict or a
  // bare one). Strict: a missing, unexpected or mis-shaped backbone tensor is a ModelLoadError,
  // and so are weights whose SHA-256 is not the manifest's (see EmbedderOptions).
  static Embedder load(const ModelManifest& manifest, const std::filesystem::path& weights,
                       const EmbedderOptions& options = {});
  // The same for a model resolve_model() found (the one way front ends load a model).
  static Embedder load(const ResolvedModel& model, const EmbedderOptions& options = {});
  // A network with the deterministic formula weights of the goldens (tests, benchmarks).
  static Embedder with_formula_weights(const ModelManifest& manifest,
                                       const EmbedderOptions& options = {});

  // Faces: 8-bit BGR cv::Mat of exactly input_width x input_height (aligned crops).
  std::vector<Embedding> embed(const std::vector<cv::Mat>& faces) const;
  // The model's input tensor for faces: N x 3 x H x W float32, in the manifest's colour order
  // and normalisation.
  torch::Tensor preprocess(const std::vector<cv::Mat>& faces) const;
  // Raw features (N x embedding_size) of a preprocessed batch.
  torch::Tensor forward(const torch::Tensor& batch) const;
  // int8 calibration: the range of every value of the network over these faces (aligned crops,
  // as embed() takes them; mirrored too for mirror-feature manifests), measured in float32
  // whatever this Embedder's precision; see nn::Int8Calibration for the percentile.
  nn::Int8Calibration calibrate_int8(const std::vector<cv::Mat>& faces,
                                     double percentile = 99.99) const;
  // Classifier logits (N x num_classes) of a preprocessed batch; InvalidInput for a model
  // without a classifier head.
  torch::Tensor logits(const torch::Tensor& batch) const;

  const ModelManifest& manifest() const;
  Precision precision() const;
  // Values per embedding: embedding_size, doubled when concat_flipped.
  int output_size() const;
  // The network's parameters and buffers in PyTorch's state_dict() order and names (for
  // writing a checkpoint torch.load and facemag read back). A model whose fused network let go
  // of the loaded one (iResNet in kFloat32 below AVX-512; every network run by nn::OneDnnGraph,
  // unless it has a classifier) builds it again for this and for calibrate_int8(): from the
  // formula, or by reading its checkpoint again (ModelLoadError if the file's size or time
  // changed since the load).
  std::vector<std::pair<std::string, torch::Tensor>> state_dict() const;
  // What loading noticed but accepted (e.g. an ignored classifier tensor).
  const std::vector<std::string>& load_notes() const;

  struct Impl;

 private:
  explicit Embedder(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace facemag
