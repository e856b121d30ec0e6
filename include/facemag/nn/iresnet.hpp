// iResNet-18/34/50/100 exactly as MagFace's backbone (models/iresnet.py): parameter names equal
// the reference state_dict keys, BatchNorm eps 2e-5, 512-d output of a final BatchNorm1d.
//
// Input: N x 3 x 112 x 112 float32, BGR channel order, values x / 255 in [0, 1].
// Output: N x 512 raw features; their L2 norm is MagFace's quality (never normalised here).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace facemag::nn {

// IBasicBlock: BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the (downsampled) input.
class IBasicBlockImpl : public torch::nn::Module {
 public:
  IBasicBlockImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::PReLU prelu{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::BatchNorm2d bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};  // conv1x1(stride) + BN, when the shape changes
};
TORCH_MODULE(IBasicBlock);

enum class IResNetDepth { k18 = 18, k34 = 34, k50 = 50, k100 = 100 };

// "iresnet18" -> k18 ... ; nullopt for other names.
std::optional<IResNetDepth> iresnet_depth_from_name(std::string_view name);

// Blocks per stage: 18 {2,2,2,2}, 34 {3,4,6,3}, 50 {3,4,14,3}, 100 {3,13,30,3}.
std::array<int, 4> iresnet_layers(IResNetDepth depth);

class IResNetImpl : public torch::nn::Module {
 public:
  explicit IResNetImpl(IResNetDepth depth, std::int64_t embedding_size = 512);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::PReLU prelu{nullptr};
  std::array<torch::nn::Sequential, 4> layers{nullptr, nullptr, nullptr, nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d features{nullptr};
};
TORCH_MODULE(IResNet);

}  // namespace facemag::nn
