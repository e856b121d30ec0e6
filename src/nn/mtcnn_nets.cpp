#include "facemag/nn/mtcnn_nets.hpp"

#include <torch/torch.h>

namespace facemag::nn {
namespace {

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel));
}
torch::nn::PReLU prelu(std::int64_t channels) {
  return torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(channels));
}
torch::Tensor max_pool(const torch::Tensor& x, std::int64_t kernel, std::int64_t stride) {
  return torch::max_pool2d(x, {kernel, kernel}, {stride, stride}, {0, 0}, {1, 1},
                           /*ceil_mode=*/true);
}
// The dense layers were trained on Caffe's W x H flattening order.
torch::Tensor flatten_caffe(const torch::Tensor& x) {
  return x.permute({0, 3, 2, 1}).contiguous().view({x.size(0), -1});
}

}  // namespace

PNetImpl::PNetImpl() {
  conv1 = register_module("conv1", conv(3, 10, 3));
  prelu1 = register_module("prelu1", prelu(10));
  conv2 = register_module("conv2", conv(10, 16, 3));
  prelu2 = register_module("prelu2", prelu(16));
  conv3 = register_module("conv3", conv(16, 32, 3));
  prelu3 = register_module("prelu3", prelu(32));
  conv4_1 = register_module("conv4_1", conv(32, 2, 1));
  conv4_2 = register_module("conv4_2", conv(32, 4, 1));
}

std::tuple<torch::Tensor, torch::Tensor> PNetImpl::forward(const torch::Tensor& x) {
  auto y = max_pool(prelu1(conv1(x)), 2, 2);
  y = prelu3(conv3(prelu2(conv2(y))));
  return {conv4_2(y), torch::softmax(conv4_1(y), 1)};
}

RNetImpl::RNetImpl() {
  conv1 = register_module("conv1", conv(3, 28, 3));
  prelu1 = register_module("prelu1", prelu(28));
  conv2 = register_module("conv2", conv(28, 48, 3));
  prelu2 = register_module("prelu2", prelu(48));
  conv3 = register_module("conv3", conv(48, 64, 2));
  prelu3 = register_module("prelu3", prelu(64));
  dense4 = register_module("dense4", torch::nn::Linear(576, 128));
  prelu4 = register_module("prelu4", prelu(128));
  dense5_1 = register_module("dense5_1", torch::nn::Linear(128, 2));
  dense5_2 = register_module("dense5_2", torch::nn::Linear(128, 4));
}

std::tuple<torch::Tensor, torch::Tensor> RNetImpl::forward(const torch::Tensor& x) {
  auto y = max_pool(prelu1(conv1(x)), 3, 2);
  y = max_pool(prelu2(conv2(y)), 3, 2);
  y = prelu4(dense4(flatten_caffe(prelu3(conv3(y)))));
  return {dense5_2(y), torch::softmax(dense5_1(y), 1)};
}

ONetImpl::ONetImpl() {
  conv1 = register_module("conv1", conv(3, 32, 3));
  prelu1 = register_module("prelu1", prelu(32));
  conv2 = register_module("conv2", conv(32, 64, 3));
  prelu2 = register_module("prelu2", prelu(64));
  conv3 = register_module("conv3", conv(64, 64, 3));
  prelu3 = register_module("prelu3", prelu(64));
  conv4 = register_module("conv4", conv(64, 128, 2));
  prelu4 = register_module("prelu4", prelu(128));
  dense5 = register_module("dense5", torch::nn::Linear(1152, 256));
  prelu5 = register_module("prelu5", prelu(256));
  dense6_1 = register_module("dense6_1", torch::nn::Linear(256, 2));
  dense6_2 = register_module("dense6_2", torch::nn::Linear(256, 4));
  dense6_3 = register_module("dense6_3", torch::nn::Linear(256, 10));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ONetImpl::forward(const torch::Tensor& x) {
  auto y = max_pool(prelu1(conv1(x)), 3, 2);
  y = max_pool(prelu2(conv2(y)), 3, 2);
  y = max_pool(prelu3(conv3(y)), 2, 2);
  y = prelu5(dense5(flatten_caffe(prelu4(conv4(y)))));
  return {dense6_2(y), dense6_3(y), torch::softmax(dense6_1(y), 1)};
}

}  // namespace facemag::nn
