#include "facemag/nn/mobilefacenet.hpp"

#include <torch/torch.h>

#include "facemag/nn/graph.hpp"
#include "facemag/nn/module_utils.hpp"

namespace facemag::nn {
namespace {

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::array<std::int64_t, 2> kernel,
                       std::int64_t stride, std::int64_t padding, std::int64_t groups) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, {kernel[0], kernel[1]})
                               .stride(stride)
                               .padding(padding)
                               .groups(groups)
                               .bias(false));
}

torch::nn::PReLU make_prelu(std::int64_t channels) {
  return torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(channels));
}

// PyTorch's BatchNorm2d defaults (eps 1e-5), as the reference model uses.
torch::nn::BatchNorm2d batch_norm(std::int64_t channels) {
  return torch::nn::BatchNorm2d(channels);
}

using Kernel = std::array<std::int64_t, 2>;

struct Stage {
  std::int64_t expansion, channels, repeats, stride;
};
// MobileFaceNet's bottleneck settings (t, c, n, s) from the paper's Table 1.
constexpr Stage kStages[] = {
    {2, 64, 5, 2}, {4, 128, 1, 2}, {2, 128, 6, 1}, {4, 128, 1, 2}, {2, 128, 2, 1}};

}  // namespace

MfnConvBlockImpl::MfnConvBlockImpl(std::int64_t in, std::int64_t out,
                                   std::array<std::int64_t, 2> kernel, std::int64_t stride,
                                   std::int64_t padding, bool depthwise, bool linear) {
  conv = register_module("conv", nn::conv(in, out, kernel, stride, padding, depthwise ? in : 1));
  bn = register_module("bn", batch_norm(out));
  if (!linear) prelu = register_module("prelu", make_prelu(out));
}

torch::Tensor MfnConvBlockImpl::forward(const torch::Tensor& x) {
  auto y = bn(conv(x));
  return prelu ? nn::prelu(y, prelu->weight) : y;
}

MfnBottleneckImpl::MfnBottleneckImpl(std::int64_t in, std::int64_t out, std::int64_t stride,
                                     std::int64_t expansion)
    : residual_(stride == 1 && in == out) {
  const std::int64_t hidden = in * expansion;
  expand_ = nn::conv(in, hidden, {1, 1}, 1, 0, 1);
  bn1_ = batch_norm(hidden);
  prelu1_ = make_prelu(hidden);
  depthwise_ = nn::conv(hidden, hidden, {3, 3}, stride, 1, hidden);
  bn2_ = batch_norm(hidden);
  prelu2_ = make_prelu(hidden);
  project_ = nn::conv(hidden, out, {1, 1}, 1, 0, 1);
  bn3_ = batch_norm(out);
  conv = register_module("conv", torch::nn::Sequential(expand_, bn1_, prelu1_, depthwise_, bn2_,
                                                       prelu2_, project_, bn3_));
}

torch::Tensor MfnBottleneckImpl::forward(const torch::Tensor& x) {
  auto y = nn::prelu(bn1_(expand_(x)), prelu1_->weight);
  y = nn::prelu(bn2_(depthwise_(y)), prelu2_->weight);
  y = bn3_(project_(y));
  return residual_ ? x + y : y;
}

MobileFaceNetImpl::MobileFaceNetImpl() {
  conv1 = register_module("conv1", MfnConvBlock(3, 64, Kernel{3, 3}, 2, 1, false, false));
  dw_conv1 = register_module("dw_conv1", MfnConvBlock(64, 64, Kernel{3, 3}, 1, 1, true, false));
  blocks = register_module("blocks", torch::nn::Sequential());
  std::int64_t in = 64;
  for (const auto& stage : kStages) {
    for (std::int64_t i = 0; i < stage.repeats; ++i) {
      blocks->push_back(
          MfnBottleneck(in, stage.channels, i == 0 ? stage.stride : 1, stage.expansion));
      in = stage.channels;
    }
  }
  conv2 = register_module("conv2", MfnConvBlock(128, 512, Kernel{1, 1}, 1, 0, false, false));
  // "Global depthwise convolution" over the 7 x 6 map left from a 112 x 96 input.
  linear7 = register_module("linear7", MfnConvBlock(512, 512, Kernel{7, 6}, 1, 0, true, true));
  linear1 = register_module("linear1", MfnConvBlock(512, 128, Kernel{1, 1}, 1, 0, false, true));
}

torch::Tensor MobileFaceNetImpl::forward(const torch::Tensor& x) {
  auto y = dw_conv1(conv1(x));
  y = blocks->forward(y);
  y = linear1(linear7(conv2(y)));
  return y.flatten(1);
}

std::string MfnConvBlockImpl::describe(GraphSink& sink, const std::string& x) const {
  const auto y = sink.conv(x, *conv, *bn);
  return prelu ? sink.prelu(y, prelu->weight) : y;
}

std::string MfnBottleneckImpl::describe(GraphSink& sink, const std::string& x) const {
  auto y = sink.prelu(sink.conv(x, *expand_, *bn1_), prelu1_->weight);
  y = sink.prelu(sink.conv(y, *depthwise_, *bn2_), prelu2_->weight);
  y = sink.conv(y, *project_, *bn3_);
  return residual_ ? sink.add(x, y) : y;
}

std::string MobileFaceNetImpl::describe(GraphSink& sink, const std::string& input) const {
  auto y = dw_conv1->describe(sink, conv1->describe(sink, input));
  for (const auto& block : blocks->children())
    y = block->as<MfnBottleneckImpl>()->describe(sink, y);
  y = linear1->describe(sink, linear7->describe(sink, conv2->describe(sink, y)));
  return sink.flatten(y, /*caffe_order=*/false);
}

}  // namespace facemag::nn
