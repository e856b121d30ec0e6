// ONNX export of facemag's networks (iResNet-18..100, MobileFaceNet, InceptionResnetV1 with or
// without its classifier, MTCNN's P-, R- and O-Net), written from each network's own describe()
// (the modules and parameters the runtime runs), checked by ONNX's checker and shape inference
// before anything is written.
//
// Inputs:
//   plain:               "input", float32 N x 3 x H x W in the model's colour order and
//                        normalisation (the manifest's; MTCNN: RGB, (x - 127.5) / 128).
//   with_preprocessing:  "image", uint8 N x H x W x 3 in BGR order: an OpenCV image (or a batch of
//                        them) as it is; the graph reorders the channels and normalises.
// Outputs: embedding networks "features" (N x embedding_size, the raw vector: its norm is the
// MagFace quality) and, with the classifier, "logits"; P-Net and R-Net "boxes", "prob"; O-Net
// "boxes", "landmarks", "prob" (as facemag's and facenet-pytorch's forward() return them).
// The manifest goes into metadata_props: every field under its own key plus "manifest" (JSON).
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "facemag/model/manifest.hpp"
#include "facemag/model/resolve.hpp"

namespace facemag {

inline constexpr int kMinOnnxOpset = 13;
inline constexpr int kMaxOnnxOpset = 17;

struct OnnxExportOptions {
  int opset = kMaxOnnxOpset;  // kMinOnnxOpset..kMaxOnnxOpset
  std::int64_t batch = 0;     // 0: dynamic ("N"); else fixed
  bool with_preprocessing = false;
  bool with_classifier = true;  // InceptionResnetV1 with a classifier: also output "logits"
};

// InvalidInput for an opset outside kMinOnnxOpset..kMaxOnnxOpset or a batch < 0 (what every
// export checks first; callers may check before loading a model).
void check_onnx_export_options(const OnnxExportOptions& options);

// An embedding network of `manifest.architecture` (eval mode; as load_network returns it) as
// serialized ONNX. `manifest.sha256` should be that of the source weights (it goes into the
// metadata). InvalidInput for an opset out of range, a batch < 0, preprocessing that cannot be
// put in the graph (prewhiten), or a network that is not of the manifest's architecture.
std::string embedding_network_to_onnx(const torch::nn::Module& network,
                                      const ModelManifest& manifest,
                                      const OnnxExportOptions& options);

// One of MTCNN's networks (nn::PNetImpl, RNetImpl or ONetImpl) as serialized ONNX. P-Net's
// height and width are dynamic; R-Net's input is 24 x 24, O-Net's 48 x 48.
std::string mtcnn_network_to_onnx(const torch::nn::Module& network,
                                  const std::string& weights_sha256,
                                  const OnnxExportOptions& options);

// The MTCNN networks `facemag export onnx --arch` takes by name: "mtcnn-pnet", "mtcnn-rnet",
// "mtcnn-onet".
std::vector<std::string> mtcnn_network_names();
bool is_mtcnn_network_name(const std::string& name);

// A model's ONNX, what `facemag export onnx` writes: an MTCNN network (`architecture` one of the
// names above) from its checkpoint, or an embedding model resolved by resolve_model(), its
// network loaded strictly (the manifest's SHA-256 verified unless `verify_sha256` is false), with
// the SHA-256 of its weights in the metadata. The options are checked before anything is loaded.
std::string model_to_onnx(const std::string& architecture, const ResolvedModel& model,
                          const OnnxExportOptions& options, bool verify_sha256 = true);

// A batch size as `--batch` takes it: "dynamic" (0), or a positive number. InvalidInput otherwise.
std::int64_t parse_onnx_batch(const std::string& text);

// What `facemag export onnx` is asked: a model as resolve_model() finds it (an MTCNN network:
// `weights` only), written to `out`.
struct OnnxFileRequest {
  std::string architecture;  // a built-in architecture or an MTCNN network name
  bool architecture_given = false;
  std::filesystem::path weights;
  std::filesystem::path manifest;
  std::filesystem::path out;
  OnnxExportOptions options;
  bool verify_sha256 = true;  // false: a warning, and weights of another SHA-256 are exported
};

// Checks the options and that out's folder exists (before the slow load), then writes
// model_to_onnx() to `out` atomically. Returns the bytes written.
std::size_t export_onnx_file(const OnnxFileRequest& request);

}  // namespace facemag
