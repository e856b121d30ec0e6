// Face embeddings from aligned crops, with the preprocessing that is part of each model.
#pragma once

#include <torch/types.h>
#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace facemag {

enum class ColorOrder { kBGR, kRGB };

// Everything needed to feed a model correctly and to interpret its output.
struct ModelManifest {
  std::string name;          // e.g. "magface-iresnet100"
  std::string architecture;  // e.g. "iresnet100"
  int input_height = 112;
  int input_width = 112;
  ColorOrder color_order = ColorOrder::kBGR;
  // Pixel p in [0, 255] becomes (p - pixel_offset) / pixel_scale.
  float pixel_offset = 0.0f;
  float pixel_scale = 255.0f;
  // Instead of the fixed offset/scale, standardise each face by its own mean and (unbiased)
  // standard deviation, clamped below at 1/sqrt(values): facenet-pytorch's prewhiten().
  bool prewhiten = false;
  // How a detected face becomes the input crop: "arcface-112x112" or "sphereface-96x112"
  // (5-point similarity alignment), or "facenet-margin-<m>" (facenet-pytorch's box crop
  // resized to input_width, with a margin of m pixels).
  std::string alignment_template = "arcface-112x112";
  int embedding_size = 512;
  // Classes of an optional classifier head (FaceNet: 8631 VGGFace2, 10575 CASIA-WebFace);
  // 0 = none. Loading takes it from the checkpoint.
  int num_classes = 0;
  // True only for MagFace-trained models, where the raw feature norm is a calibrated quality.
  bool magnitude_is_quality = true;
  // Embed each face and its mirror image and concatenate the two (MobileFaceNet's LFW
  // protocol): the embedding then has 2 x embedding_size values.
  bool concat_flipped = false;
  // Cosine similarity above which two faces are taken for the same person, and what it was
  // calibrated on.
  double same_person_threshold = 0.3;
  std::string threshold_calibration = "not calibrated (a generic value)";
  // Set by `facemag calibrate`: cosine thresholds measured at target false match rates, and
  // the magnitude below which a face counts as too poor to compare (0: no such threshold).
  struct FmrThreshold {
    double fmr = 0;
    double threshold = 0;
  };
  std::vector<FmrThreshold> fmr_thresholds;
  double quality_threshold = 0;
  std::string quality_calibration;
  std::string sha256;  // of the weight file, when known
  std::string source;
  std::string licence;
};

// Manifests of the architectures facemag knows. Throws InvalidInput for others.
//   iresnet18, iresnet34, iresnet50, iresnet100 (MagFace): 112x112 ArcFace-aligned, BGR, x / 255,
//     512-d; the magnitude is the quality.
//   mobilefacenet (CASIA-WebFace, 068.ckpt): 112x96 (h x w) SphereFace-aligned, RGB,
//     (x - 127.5) / 128, 128-d; the magnitude is *not* a calibrated quality.
//   inception_resnet_v1 (FaceNet, facenet-pytorch): 160x160 MTCNN margin crop, RGB,
//     (x - 127.5) / 128, 512-d. The raw vector is the network before facenet-pytorch's final L2
//     normalisation: Embedding::normalized() is facenet-pytorch's embedding.
ModelManifest builtin_manifest(const std::string& architecture);
std::vector<std::string> builtin_architectures();

// A manifest as a JSON object, and back. Reading starts from the built-in manifest of the
// file's "architecture" and overrides the fields the file gives; unknown fields, wrong types
// and an unknown architecture are InvalidInput naming `source`.
std::string manifest_to_json(const ModelManifest& manifest);
ModelManifest manifest_from_json(const std::string& json, const std::string& source);
void save_manifest(const std::filesystem::path& path, const ModelManifest& manifest);
ModelManifest load_manifest(const std::filesystem::path& path);

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
};

// A loaded model: immutable after load and safe to share between threads; every method is const.
class Embedder {
 public:
  // Loads weights from a checkpoint (a MagFace training checkpoint with `state_dict` and
  // `features.module.`/`module.features.` prefixes, a DataParallel `module.` state dict or a
  // bare one). Strict: a missing, unexpected or mis-shaped backbone tensor is a ModelLoadError.
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
