// MobileFaceNet (Chen et al. 2018) with the parameter names of the public PyTorch
// implementation whose trained CASIA-WebFace checkpoint (068.ckpt) facemag loads.
//
// Input: N x 3 x 112 x 96 (height x width) float32, RGB, (x - 127.5) / 128, aligned to the
// SphereFace template. Output: N x 128 raw features (not normalised).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include <string>

namespace facemag::nn {

class GraphSink;  // graph.hpp

// conv (optionally depthwise) - BatchNorm - PReLU (omitted when linear).
class MfnConvBlockImpl : public torch::nn::Module {
 public:
  MfnConvBlockImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 2> kernel,
                   std::int64_t stride, std::int64_t padding, bool depthwise, bool linear);
  torch::Tensor forward(const torch::Tensor& x);
  std::string describe(GraphSink& sink, const std::string& x) const;

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::PReLU prelu{nullptr};
};
TORCH_MODULE(MfnConvBlock);

// Inverted residual: 1x1 expand - BN - PReLU - 3x3 depthwise(stride) - BN - PReLU - 1x1 - BN,
// held as the Sequential `conv` (indices 0..7 are the checkpoint's names); residual when the
// shape is kept.
class MfnBottleneckImpl : public torch::nn::Module {
 public:
  MfnBottleneckImpl(std::int64_t in, std::int64_t out, std::int64_t stride, std::int64_t expansion);
  torch::Tensor forward(const torch::Tensor& x);
  std::string describe(GraphSink& sink, const std::string& x) const;

  torch::nn::Sequential conv{nullptr};

 private:
  bool residual_;
  torch::nn::Conv2d expand_{nullptr}, depthwise_{nullptr}, project_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::PReLU prelu1_{nullptr}, prelu2_{nullptr};
};
TORCH_MODULE(MfnBottleneck);

class MobileFaceNetImpl : public torch::nn::Module {
 public:
  MobileFaceNetImpl();
  torch::Tensor forward(const torch::Tensor& x);
  // The inference network (eval mode), BatchNorm folded into the convolutions; returns the
  // features' value.
  std::string describe(GraphSink& sink, const std::string& input) const;

  MfnConvBlock conv1{nullptr}, dw_conv1{nullptr};
  torch::nn::Sequential blocks{nullptr};
  MfnConvBlock conv2{nullptr}, linear7{nullptr}, linear1{nullptr};
};
TORCH_MODULE(MobileFaceNet);

}  // namespace facemag::nn
