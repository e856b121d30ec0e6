#include "facemag/nn/mtcnn_nets.hpp"

#include "facemag/nn/module_utils.hpp"

#include <torch/torch.h>

#include <limits>

namespace facemag::nn {
namespace {

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel));
}
torch::nn::PReLU make_prelu(std::int64_t channels) {
  return torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(channels));
}
// max_pool2d(kernel, stride, ceil_mode=True) as the elementwise maximum of kernel x kernel
// strided views of the input padded with -inf: the same values as LibTorch's pooling kernel
// (a maximum is exact), several times faster than its NCHW ceil-mode path.
torch::Tensor max_pool(const torch::Tensor& x, std::int64_t kernel, std::int64_t stride) {
  const auto out_size = [&](std::int64_t in) {
    std::int64_t out = (in - kernel + stride - 1) / stride + 1;  // ceil mode
    if ((out - 1) * stride >= in) --out;  // the last window must start inside the input
    return out;
  };
  const std::int64_t oh = out_size(x.size(2)), ow = out_size(x.size(3));
  const std::int64_t ph = (oh - 1) * stride + kernel, pw = (ow - 1) * stride + kernel;
  const auto padded = torch::constant_pad_nd(x, {0, pw - x.size(3), 0, ph - x.size(2)},
                                             -std::numeric_limits<float>::infinity());
  using torch::indexing::Slice;
  torch::Tensor out;
  for (std::int64_t i = 0; i < kernel; ++i) {
    for (std::int64_t j = 0; j < kernel; ++j) {
      const auto view = padded.index({Slice(), Slice(), Slice(i, i + (oh - 1) * stride + 1, stride),
                                      Slice(j, j + (ow - 1) * stride + 1, stride)});
      out = out.defined() ? torch::max(out, view) : view.contiguous();
    }
  }
  return out;
}
// The dense layers were trained on Caffe's W x H flattening order.
torch::Tensor flatten_caffe(const torch::Tensor& x) {
  return x.permute({0, 3, 2, 1}).contiguous().view({x.size(0), -1});
}

}  // namespace

PNetImpl::PNetImpl() {
  conv1 = register_module("conv1", conv(3, 10, 3));
  prelu1 = register_module("prelu1", make_prelu(10));
  conv2 = register_module("conv2", conv(10, 16, 3));
  prelu2 = register_module("prelu2", make_prelu(16));
  conv3 = register_module("conv3", conv(16, 32, 3));
  prelu3 = register_module("prelu3", make_prelu(32));
  conv4_1 = register_module("conv4_1", conv(32, 2, 1));
  conv4_2 = register_module("conv4_2", conv(32, 4, 1));
}

std::tuple<torch::Tensor, torch::Tensor> PNetImpl::forward(const torch::Tensor& x) {
  auto y = max_pool(nn::prelu(conv1(x), prelu1->weight), 2, 2);
  y = nn::prelu(conv3(nn::prelu(conv2(y), prelu2->weight)), prelu3->weight);
  return {conv4_2(y), torch::softmax(conv4_1(y), 1)};
}

RNetImpl::RNetImpl() {
  conv1 = register_module("conv1", conv(3, 28, 3));
  prelu1 = register_module("prelu1", make_prelu(28));
  conv2 = register_module("conv2", conv(28, 48, 3));
  prelu2 = register_module("prelu2", make_prelu(48));
  conv3 = register_module("conv3", conv(48, 64, 2));
  prelu3 = register_module("prelu3", make_prelu(64));
  dense4 = register_module("dense4", torch::nn::Linear(576, 128));
  prelu4 = register_module("prelu4", make_prelu(128));
  dense5_1 = register_module("dense5_1", torch::nn::Linear(128, 2));
  dense5_2 = register_module("dense5_2", torch::nn::Linear(128, 4));
}

std::tuple<torch::Tensor, torch::Tensor> RNetImpl::forward(const torch::Tensor& x) {
  auto y = max_pool(nn::prelu(conv1(x), prelu1->weight), 3, 2);
  y = max_pool(nn::prelu(conv2(y), prelu2->weight), 3, 2);
  y = nn::prelu(dense4(flatten_caffe(nn::prelu(conv3(y), prelu3->weight))), prelu4->weight);
  return {dense5_2(y), torch::softmax(dense5_1(y), 1)};
}

ONetImpl::ONetImpl() {
  conv1 = register_module("conv1", conv(3, 32, 3));
  prelu1 = register_module("prelu1", make_prelu(32));
  conv2 = register_module("conv2", conv(32, 64, 3));
  prelu2 = register_module("prelu2", make_prelu(64));
  conv3 = register_module("conv3", conv(64, 64, 3));
  prelu3 = register_module("prelu3", make_prelu(64));
  conv4 = register_module("conv4", conv(64, 128, 2));
  prelu4 = register_module("prelu4", make_prelu(128));
  dense5 = register_module("dense5", torch::nn::Linear(1152, 256));
  prelu5 = register_module("prelu5", make_prelu(256));
  dense6_1 = register_module("dense6_1", torch::nn::Linear(256, 2));
  dense6_2 = register_module("dense6_2", torch::nn::Linear(256, 4));
  dense6_3 = register_module("dense6_3", torch::nn::Linear(256, 10));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ONetImpl::forward(const torch::Tensor& x) {
  auto y = max_pool(nn::prelu(conv1(x), prelu1->weight), 3, 2);
  y = max_pool(nn::prelu(conv2(y), prelu2->weight), 3, 2);
  y = max_pool(nn::prelu(conv3(y), prelu3->weight), 2, 2);
  y = nn::prelu(dense5(flatten_caffe(nn::prelu(conv4(y), prelu4->weight))), prelu5->weight);
  return {dense6_2(y), dense6_3(y), torch::softmax(dense6_1(y), 1)};
}

}  // namespace facemag::nn
