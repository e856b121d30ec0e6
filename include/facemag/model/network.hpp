// One table per architecture: every network facemag knows is one entry, with its built-in
// manifest, how to build it (for inference and training alike), and its op-by-op description
// (nn::GraphSink: what the oneDNN engine, int8 calibration and ONNX export read). Adding an
// architecture is one entry in src/model/network.cpp; everything else looks it up.
//
// Also here, because they are part of the model: its preprocessing (preprocess_faces) and the
// strict loading of a checkpoint into its network (load_network).
#pragma once

#include <torch/nn/module.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "facemag/model/manifest.hpp"
#include "facemag/nn/graph.hpp"

namespace facemag {

// A built network.
struct TrainableNetwork {
  std::shared_ptr<torch::nn::Module> module;  // parameters, buffers, train()/eval()
  // N x 3 x H x W float32 (preprocess_faces' output) -> N x embedding_size raw features.
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  // N x 3 x H x W -> N x num_classes classifier logits; empty without a classifier head.
  std::function<torch::Tensor(const torch::Tensor&)> logits;
};

// A network's description: writes it into `sink` from the value `input` and returns the value of
// its embedding, followed by its logits' when `with_classifier` and it has a classifier.
using NetworkDescription = std::function<std::vector<std::string>(
    nn::GraphSink& sink, const std::string& input, bool with_classifier)>;

struct Architecture {
  std::string name;  // "iresnet18", ..., "mobilefacenet", "inception_resnet_v1"
  // Its built-in manifest (see builtin_manifest in manifest.hpp).
  std::function<ModelManifest()> manifest;
  // A fresh network for `manifest` (embedding size; num_classes for a classifier head) with
  // LibTorch's default initialisation.
  std::function<TrainableNetwork(const ModelManifest& manifest)> build;
  // The description of `network` (one this entry built), which the closure keeps alive; empty
  // when `network` is not of this architecture.
  std::function<NetworkDescription(std::shared_ptr<const torch::nn::Module> network)> describe;
  // Whether num_classes is read from the checkpoint (an optional classifier head).
  bool classifier_from_checkpoint = false;
  // The classifier classes of a network this entry built; empty function: never a classifier.
  std::function<int(const torch::nn::Module& network)> classes;
};

// Every architecture, in the order `--arch` lists them.
const std::vector<Architecture>& architectures();
// The entry of `name`; InvalidInput naming the known ones for others.
const Architecture& find_architecture(const std::string& name);

// find_architecture(manifest.architecture).build(manifest).
TrainableNetwork build_network(const ModelManifest& manifest);

// The network of `manifest` with its backbone loaded strictly from a checkpoint (MagFace training
// checkpoints with `features.module.`/`module.features.` prefixes, DataParallel `module.` state
// dicts, bare ones): a missing, unexpected or mis-shaped tensor, a checkpoint whose `arch` names
// another architecture, and weights whose SHA-256 is not the manifest's (when it has one and
// `verify_sha256`) are ModelLoadErrors. `notes` receives what was ignored (a training
// classifier); `loaded` (optional) the manifest as built (num_classes from the checkpoint) with
// the SHA-256 of the weights as read (hashed beside the parsing) when `verify_sha256`.
TrainableNetwork load_network(const ModelManifest& manifest, const std::filesystem::path& weights,
                              std::vector<std::string>* notes = nullptr,
                              ModelManifest* loaded = nullptr, bool verify_sha256 = true);

// Aligned 8-bit BGR crops of exactly input_width x input_height -> N x 3 x H x W float32 in
// the manifest's colour order and normalisation (what Embedder::preprocess returns).
torch::Tensor preprocess_faces(const ModelManifest& manifest, const std::vector<cv::Mat>& faces);

}  // namespace facemag
