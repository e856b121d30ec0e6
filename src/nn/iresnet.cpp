#include "facemag/nn/iresnet.hpp"

#include <torch/torch.h>

#include "facemag/nn/module_utils.hpp"

namespace facemag::nn {
namespace {

constexpr double kBatchNormEps =
    2e-5;  // MagFace's BatchNorm eps (momentum is irrelevant at inference)

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel,
                       std::int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

torch::nn::BatchNorm2d batch_norm(std::int64_t channels) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(kBatchNormEps));
}

}  // namespace

IBasicBlockImpl::IBasicBlockImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride) {
  // Registration order = the reference state_dict order.
  bn1 = register_module("bn1", batch_norm(inplanes));
  conv1 = register_module("conv1", conv(inplanes, planes, 3, 1));
  bn2 = register_module("bn2", batch_norm(planes));
  prelu =
      register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(planes)));
  conv2 = register_module("conv2", conv(planes, planes, 3, stride));
  bn3 = register_module("bn3", batch_norm(planes));
  if (stride != 1 || inplanes != planes) {
    downsample = register_module(
        "downsample", torch::nn::Sequential(conv(inplanes, planes, 1, stride), batch_norm(planes)));
  }
}

torch::Tensor IBasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = bn3(conv2(nn::prelu(bn2(conv1(bn1(x))), prelu->weight)));
  out += downsample ? downsample->forward(x) : x;
  return out;
}

std::optional<IResNetDepth> iresnet_depth_from_name(std::string_view name) {
  for (auto depth : {IResNetDepth::k18, IResNetDepth::k34, IResNetDepth::k50, IResNetDepth::k100}) {
    if (name == "iresnet" + std::to_string(static_cast<int>(depth))) return depth;
  }
  return std::nullopt;
}

std::array<int, 4> iresnet_layers(IResNetDepth depth) {
  switch (depth) {
    case IResNetDepth::k18:
      return {2, 2, 2, 2};
    case IResNetDepth::k34:
      return {3, 4, 6, 3};
    case IResNetDepth::k50:
      return {3, 4, 14, 3};
    case IResNetDepth::k100:
      return {3, 13, 30, 3};
  }
  return {};
}

IResNetImpl::IResNetImpl(IResNetDepth depth, std::int64_t embedding_size) {
  constexpr std::int64_t kFcScale = 7 * 7;  // 112x112 input, four stride-2 stages
  conv1 = register_module("conv1", conv(3, 64, 3, 1));
  bn1 = register_module("bn1", batch_norm(64));
  prelu = register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(64)));
  const auto blocks = iresnet_layers(depth);
  std::int64_t inplanes = 64;
  for (int stage = 0; stage < 4; ++stage) {
    const std::int64_t planes = 64 << stage;
    torch::nn::Sequential seq;
    for (int b = 0; b < blocks[stage]; ++b) {
      seq->push_back(IBasicBlock(inplanes, planes, b == 0 ? 2 : 1));
      inplanes = planes;
    }
    layers[stage] = register_module("layer" + std::to_string(stage + 1), seq);
  }
  bn2 = register_module("bn2", batch_norm(512));
  fc = register_module("fc", torch::nn::Linear(512 * kFcScale, embedding_size));
  features = register_module(
      "features",
      torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(embedding_size).eps(kBatchNormEps)));
}

torch::Tensor IResNetImpl::forward(const torch::Tensor& x) {
  auto y = nn::prelu(bn1(conv1(x)), prelu->weight);
  for (auto& layer : layers) y = layer->forward(y);
  y = bn2(y);  // Dropout2d(p=0.4) of the reference is the identity at inference
  return features(fc(y.flatten(1)));
}

}  // namespace facemag::nn
