// The embedding networks as trainable LibTorch modules (for training and fine-tuning; inference
// goes through Embedder, which prepares faster, immutable forms of the same networks).
#pragma once

#include <torch/nn/module.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "facemag/embed/embedder.hpp"

namespace facemag {

struct TrainableNetwork {
  std::shared_ptr<torch::nn::Module> module;  // parameters, buffers, train()/eval()
  // N x 3 x H x W float32 (preprocess_faces' output) -> N x embedding_size raw features.
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

// A fresh network of `manifest.architecture` (iresnet18..100, mobilefacenet,
// inception_resnet_v1) with LibTorch's default initialisation.
TrainableNetwork build_network(const ModelManifest& manifest);

// The same network with its backbone loaded strictly from a checkpoint, exactly as
// Embedder::load selects it (MagFace, DataParallel and bare state dicts; a checkpoint whose
// `arch` names another architecture is a ModelLoadError, and so are weights whose SHA-256 is not
// the manifest's, when it has one). `notes` receives what was ignored.
TrainableNetwork load_network(const ModelManifest& manifest, const std::filesystem::path& weights,
                              std::vector<std::string>* notes = nullptr);

// Aligned 8-bit BGR crops of exactly input_width x input_height -> N x 3 x H x W float32 in
// the manifest's colour order and normalisation (what Embedder::preprocess returns).
torch::Tensor preprocess_faces(const ModelManifest& manifest, const std::vector<cv::Mat>& faces);

}  // namespace facemag
