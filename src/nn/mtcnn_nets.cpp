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
// max_pool2d(kernel, stride, ceil_mode=True) written out: each output is the maximum of its
// window clipped to the input, the same values as LibTorch's pooling kernel (a maximum is
// exact) in one pass, where LibTorch 1.13's NCHW ceil-mode path is several times slower.
// NCHW-contiguous and channels-last inputs keep their layout.
torch::Tensor max_pool(const torch::Tensor& input, std::int64_t kernel, std::int64_t stride) {
  const auto out_size = [&](std::int64_t in) {
    std::int64_t out = (in - kernel + stride - 1) / stride + 1;  // ceil mode
    if ((out - 1) * stride >= in) --out;  // the last window must start inside the input
    return out;
  };
  const std::int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const std::int64_t oh = out_size(h), ow = out_size(w);
  const bool channels_last = input.is_contiguous(torch::MemoryFormat::ChannelsLast) && c > 1;
  const auto format =
      channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  const auto x = input.contiguous(format);
  auto out = torch::empty({n, c, oh, ow}, x.options().memory_format(format));
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  constexpr float kLowest = -std::numeric_limits<float>::infinity();
  if (channels_last) {  // N x H x W x C: the channel loop is contiguous
    at::parallel_for(0, n * oh, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t row = begin; row < end; ++row) {
        const std::int64_t b = row / oh, i = row % oh;
        const std::int64_t y0 = i * stride, y1 = std::min(y0 + kernel, h);
        for (std::int64_t j = 0; j < ow; ++j) {
          const std::int64_t x0 = j * stride, x1 = std::min(x0 + kernel, w);
          float* __restrict o = dst + ((b * oh + i) * ow + j) * c;
          std::fill(o, o + c, kLowest);
          for (std::int64_t y = y0; y < y1; ++y) {
            for (std::int64_t xx = x0; xx < x1; ++xx) {
              const float* __restrict s = src + ((b * h + y) * w + xx) * c;
              for (std::int64_t k = 0; k < c; ++k) o[k] = std::max(o[k], s[k]);
            }
          }
        }
      }
    });
    return out;
  }
  at::parallel_for(0, n * c, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t plane = begin; plane < end; ++plane) {
      const float* s = src + plane * h * w;
      float* o = dst + plane * oh * ow;
      for (std::int64_t i = 0; i < oh; ++i) {
        const std::int64_t y0 = i * stride, y1 = std::min(y0 + kernel, h);
        for (std::int64_t j = 0; j < ow; ++j) {
          const std::int64_t x0 = j * stride, x1 = std::min(x0 + kernel, w);
          float m = kLowest;
          for (std::int64_t y = y0; y < y1; ++y) {
            for (std::int64_t xx = x0; xx < x1; ++xx) m = std::max(m, s[y * w + xx]);
          }
          o[i * ow + j] = m;
        }
      }
    }
  });
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
