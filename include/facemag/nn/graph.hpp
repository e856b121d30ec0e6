// A network written out operation by operation, for exporters (ONNX): each network's describe()
// walks its own modules and parameters (the ones forward() runs) and calls these. Values are
// names chosen by the sink; tensors are float32 with BatchNorm folded where that is exact (a
// BatchNorm after a convolution or a Linear), never where it is not (before a padded
// convolution).
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace facemag::nn {

class GraphSink {
 public:
  using Value = std::string;
  using Pair = std::array<std::int64_t, 2>;
  virtual ~GraphSink() = default;

  // weight: O x I/groups x kh x kw; bias: O values or undefined.
  virtual Value conv(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     Pair stride, Pair padding, std::int64_t groups) = 0;
  // x * scale + shift, per channel (dimension 1).
  virtual Value scale_shift(const Value& x, const torch::Tensor& scale,
                            const torch::Tensor& shift) = 0;
  // max(x, 0) + slope * min(x, 0), one slope per channel (dimension 1).
  virtual Value prelu(const Value& x, const torch::Tensor& slope) = 0;
  virtual Value relu(const Value& x) = 0;
  virtual Value add(const Value& a, const Value& b) = 0;
  // Along the channels (dimension 1).
  virtual Value concat(const std::vector<Value>& values) = 0;
  virtual Value max_pool(const Value& x, Pair kernel, Pair stride, bool ceil_mode) = 0;
  virtual Value global_average_pool(const Value& x) = 0;
  // N x C x H x W -> N x CHW, in (c, h, w) order, or in Caffe's (w, h, c) order (MTCNN's dense
  // layers were trained on that).
  virtual Value flatten(const Value& x, bool caffe_order) = 0;
  // x W^T + b; bias may be undefined.
  virtual Value linear(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias) = 0;
  // Over dimension 1.
  virtual Value softmax(const Value& x) = 0;

  // A Conv2d module as it is (bias when it has one).
  Value conv(const Value& x, const torch::nn::Conv2dImpl& module);
  // A Conv2d module and the BatchNorm after it, as one folded convolution.
  Value conv(const Value& x, const torch::nn::Conv2dImpl& module,
             const torch::nn::BatchNorm2dImpl& bn);
};

}  // namespace facemag::nn
