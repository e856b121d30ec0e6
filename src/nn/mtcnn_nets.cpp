#include "facemag/nn/mtcnn_nets.hpp"

#include "facemag/nn/graph.hpp"
#include "facemag/nn/module_utils.hpp"

#include <torch/torch.h>

#include <limits>

#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "kernels.hpp"

namespace facemag::nn {
namespace {

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel));
}
torch::nn::PReLU make_prelu(std::int64_t channels) {
  return torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(channels));
}
// Output size of max_pool2d(kernel, stride, ceil_mode=True).
std::int64_t pooled_size(std::int64_t in, std::int64_t kernel, std::int64_t stride) {
  std::int64_t out = (in - kernel + stride - 1) / stride + 1;
  if ((out - 1) * stride >= in) --out;  // the last window must start inside the input
  return out;
}

// One output row of max_pool2d(prelu(x)) over a channels-last image (w columns of c values,
// input rows [y0, y1)): each output is the maximum of its window clipped to the input. Channels
// go V at a time, the maximum kept in registers; when V does not divide c the last run overlaps
// the one before and stores the same values again.
template <int V>
FACEMAG_VECTOR_CLONES void prelu_pool_row(const float* __restrict src, float* __restrict dst,
                                          const float* __restrict slope, std::int64_t w,
                                          std::int64_t c, std::int64_t y0, std::int64_t y1,
                                          std::int64_t ow, std::int64_t kernel,
                                          std::int64_t stride) {
  const FloatVec<V> lowest = FloatVec<V>{} - std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < ow; ++j) {
    const std::int64_t x0 = j * stride, x1 = std::min(x0 + kernel, w);
    for (std::int64_t run = 0; run < c; run += V) {
      const std::int64_t k = std::min(run, c - V);
      const auto a = load_floats<V>(slope + k);
      auto m = lowest;
      for (std::int64_t y = y0; y < y1; ++y) {
        for (std::int64_t x = x0; x < x1; ++x) {
          m = max_floats<V>(m, prelu_floats<V>(load_floats<V>(src + (y * w + x) * c + k), a));
        }
      }
      store_floats<V>(dst + j * c + k, m);
    }
  }
}

// max_pool2d(prelu(x, slope), kernel, stride, ceil_mode=True) of a conv output in one pass, the
// values of LibTorch's PReLU and pooling kernels (a maximum is exact); LibTorch 1.13's NCHW
// ceil-mode pooling alone is several times slower. Channels-last inputs of 8 or more channels
// (as the networks run) take the fused pass; others the PReLU pass, then a plain pooling loop.
torch::Tensor prelu_max_pool(const torch::Tensor& input, const torch::Tensor& slope,
                             std::int64_t kernel, std::int64_t stride) {
  const std::int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const std::int64_t oh = pooled_size(h, kernel, stride), ow = pooled_size(w, kernel, stride);
  if (input.scalar_type() != torch::kFloat32 || slope.numel() != c) {
    throw InvalidInput("MTCNN pooling expects float32 input and one slope per channel");
  }
  if (input.is_contiguous(torch::MemoryFormat::ChannelsLast) && c >= 8) {
    const auto a = slope.to(torch::kFloat32).contiguous();
    auto out = torch::empty({n, c, oh, ow},
                            input.options().memory_format(torch::MemoryFormat::ChannelsLast));
    const float* src = input.data_ptr<float>();
    const float* slopes = a.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    const auto row_kernel = c >= 16 ? prelu_pool_row<16> : prelu_pool_row<8>;
    at::parallel_for(0, n * oh, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t row = begin; row < end; ++row) {
        const std::int64_t b = row / oh, y0 = (row % oh) * stride;
        row_kernel(src + b * h * w * c, dst + row * ow * c, slopes, w, c, y0,
                   std::min(y0 + kernel, h), ow, kernel, stride);
      }
    });
    return out;
  }
  const auto x = nn::prelu(input.contiguous(), slope);
  auto out = torch::empty({n, c, oh, ow}, x.options());
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, n * c, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t plane = begin; plane < end; ++plane) {
      const float* s = src + plane * h * w;
      float* o = dst + plane * oh * ow;
      for (std::int64_t i = 0; i < oh; ++i) {
        const std::int64_t y0 = i * stride, y1 = std::min(y0 + kernel, h);
        for (std::int64_t j = 0; j < ow; ++j) {
          const std::int64_t x0 = j * stride, x1 = std::min(x0 + kernel, w);
          float m = -std::numeric_limits<float>::infinity();
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
  auto y = prelu_max_pool(conv1(x), prelu1->weight, 2, 2);
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
  auto y = prelu_max_pool(conv1(x), prelu1->weight, 3, 2);
  y = prelu_max_pool(conv2(y), prelu2->weight, 3, 2);
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
  auto y = prelu_max_pool(conv1(x), prelu1->weight, 3, 2);
  y = prelu_max_pool(conv2(y), prelu2->weight, 3, 2);
  y = prelu_max_pool(conv3(y), prelu3->weight, 2, 2);
  y = nn::prelu(dense5(flatten_caffe(nn::prelu(conv4(y), prelu4->weight))), prelu5->weight);
  return {dense6_2(y), dense6_3(y), torch::softmax(dense6_1(y), 1)};
}

std::vector<std::string> PNetImpl::describe(GraphSink& sink, const std::string& input) const {
  auto y =
      sink.max_pool(sink.prelu(sink.conv(input, *conv1), prelu1->weight), {2, 2}, {2, 2}, true);
  y = sink.prelu(sink.conv(y, *conv2), prelu2->weight);
  y = sink.prelu(sink.conv(y, *conv3), prelu3->weight);
  return {sink.conv(y, *conv4_2), sink.softmax(sink.conv(y, *conv4_1))};
}

namespace {
std::string conv_prelu_pool(GraphSink& sink, const std::string& x,
                            const torch::nn::Conv2dImpl& conv, const torch::nn::PReLUImpl& prelu,
                            std::int64_t kernel) {
  return sink.max_pool(sink.prelu(sink.conv(x, conv), prelu.weight), {kernel, kernel}, {2, 2},
                       /*ceil_mode=*/true);
}
}  // namespace

std::vector<std::string> RNetImpl::describe(GraphSink& sink, const std::string& input) const {
  auto y = conv_prelu_pool(sink, input, *conv1, *prelu1, 3);
  y = conv_prelu_pool(sink, y, *conv2, *prelu2, 3);
  y = sink.flatten(sink.prelu(sink.conv(y, *conv3), prelu3->weight), /*caffe_order=*/true);
  y = sink.prelu(sink.linear(y, dense4->weight, dense4->bias), prelu4->weight);
  return {sink.linear(y, dense5_2->weight, dense5_2->bias),
          sink.softmax(sink.linear(y, dense5_1->weight, dense5_1->bias))};
}

std::vector<std::string> ONetImpl::describe(GraphSink& sink, const std::string& input) const {
  auto y = conv_prelu_pool(sink, input, *conv1, *prelu1, 3);
  y = conv_prelu_pool(sink, y, *conv2, *prelu2, 3);
  y = conv_prelu_pool(sink, y, *conv3, *prelu3, 2);
  y = sink.flatten(sink.prelu(sink.conv(y, *conv4), prelu4->weight), /*caffe_order=*/true);
  y = sink.prelu(sink.linear(y, dense5->weight, dense5->bias), prelu5->weight);
  return {sink.linear(y, dense6_2->weight, dense6_2->bias),
          sink.linear(y, dense6_3->weight, dense6_3->bias),
          sink.softmax(sink.linear(y, dense6_1->weight, dense6_1->bias))};
}

void load_mtcnn_weights(torch::nn::Module& net, const std::filesystem::path& file) {
  const io::Checkpoint checkpoint = io::load_checkpoint(file);
  load_state_dict_strict(net, io::find_state_dict(checkpoint), checkpoint.source);
  net.eval();
}

}  // namespace facemag::nn
