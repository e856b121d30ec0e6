// Face embeddings from aligned crops, with the preprocessing that is part of each model.
#pragma once

#include <torch/types.h>
#include <opencv2/core/mat.hpp>

#include "facemag/model/manifest.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace facemag {

// One face's embedding. `raw` is the network output as is; `magnitude` its L2 norm, computed
// before any normalisation (MagFace's quality).
struct Embedding {
  std::vector<float> raw;
  float magnitude = 0.0f;

  // A unit-length copy of `raw` (raw itself is never changed).
  std::vector<float> normalized() const;
};

// How an Embedder computes.
//   kReference: the network op for op as PyTorch runs it (NCHW, BatchNorm separate).
//   kFloat32 (default): iResNet with BatchNorm folded into the convolutions, run on oneDNN with
//     Winograd 3x3 convolutions where this build has oneDNN (nn::OneDnnIResNet, about twice the
//     reference's speed, ~1.9 GB for iResNet100 at batch 16), else on LibTorch channels-last
//     (nn::FusedIResNet); float32 results equal up to rounding (1 - cosine ~1e-11 against the
//     reference). InceptionResnetV1 runs with BatchNorm and residual scales folded and
//     channels-last activations, its stem on oneDNN Winograd kernels for 160x160 inputs where
//     the build has oneDNN (~1.55x the reference; ~0.5 GB more memory at batch 16-64);
//     MobileFaceNet as kReference.
//   kBFloat16: iResNet convolutions in bfloat16 (AVX512-BF16 where the CPU has it), about
//     twice as fast; see the README for the measured accuracy cost. iResNet only.
enum class Precision { kReference, kFloat32, kBFloat16 };
// "reference", "fp32", "bf16"; InvalidInput for others.
Precision parse_precision(const std::string& name);
std::string precision_name(Precision precision);
// Every accepted name, in the enum's order.
std::vector<std::string> precision_names();

struct EmbedderOptions {
  Precision precision = Precision::kFloat32;
  // When the manifest has a sha256, loading checks the weights against it (hashed while the
  // checkpoint is parsed) and refuses a mismatch naming both hashes. Unchecked, the loaded
  // model's manifest has no sha256: what manifest().sha256 says is always verified.
  bool verify_sha256 = true;
};

// A loaded model: immutable after load and safe to share between threads; every method is const.
class Embedder {
 public:
  // Loads weights from a checkpoint (a MagFace training checkpoint with `state_dict` and
  // `features.module.`/`module.features.` prefixes, a DataParallel `module.` state dict or a
  // bare one). Strict: a missing, unexpected or mis-shaped backbone tensor is a ModelLoadError,
  // and so are weights whose SHA-256 is not the manifest's (see EmbedderOptions).
  static Embedder load(const ModelManifest& manifest, const std::filesystem::path& weights,
                       const EmbedderOptions& options = {});
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
  // Classifier logits (N x num_classes) of a preprocessed batch; InvalidInput for a model
  // without a classifier head.
  torch::Tensor logits(const torch::Tensor& batch) const;

  const ModelManifest& manifest() const;
  Precision precision() const;
  // Values per embedding: embedding_size, doubled when concat_flipped.
  int output_size() const;
  // The network's parameters and buffers in PyTorch's state_dict() order and names (for
  // writing a checkpoint torch.load and facemag read back).
  std::vector<std::pair<std::string, torch::Tensor>> state_dict() const;
  // What loading noticed but accepted (e.g. an ignored classifier tensor).
  const std::vector<std::string>& load_notes() const;

  struct Impl;

 private:
  explicit Embedder(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace facemag
