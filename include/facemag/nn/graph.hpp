// A network written out operation by operation, for exporters (ONNX): each network's describe()
// walks its own modules and parameters (the ones forward() runs) and calls these. Values are
// names chosen by the sink; tensors are float32 with BatchNorm folded where that is exact (a
// BatchNorm after a convolution or a Linear), never where it is not (before a padded
// convolution).
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <array>
#include <cstddef>
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

// Evaluates a description with LibTorch in float32 (NCHW), keeping every value by name: what
// int8 calibration measures and what the tests' reduced-precision models derive from. Hooks let
// a subclass change a convolution's weights as used and each value before the flatten as stored.
class TorchEvaluator : public GraphSink {
 public:
  // The network's input (N x C x H x W float32) as a value.
  Value input(const torch::Tensor& x);
  const torch::Tensor& value(const Value& v) const;

  Value conv(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias, Pair stride,
             Pair padding, std::int64_t groups) override;
  Value scale_shift(const Value& x, const torch::Tensor& scale,
                    const torch::Tensor& shift) override;
  Value prelu(const Value& x, const torch::Tensor& slope) override;
  Value relu(const Value& x) override;
  Value add(const Value& a, const Value& b) override;
  Value concat(const std::vector<Value>& values) override;
  Value max_pool(const Value& x, Pair kernel, Pair stride, bool ceil_mode) override;
  Value global_average_pool(const Value& x) override;
  Value flatten(const Value& x, bool caffe_order) override;
  Value linear(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias) override;
  Value softmax(const Value& x) override;
  using GraphSink::conv;

 protected:
  // A convolution's float32 weights (O x I/groups x kh x kw) as the evaluation uses them.
  virtual torch::Tensor conv_weights(const torch::Tensor& weight) { return weight; }
  // A value as stored: the input (node -1) and each operation's result before the flatten, node
  // counting the operations in the order they are described (as nn::OneDnnGraph numbers them).
  virtual torch::Tensor stored(const torch::Tensor& value, int node) { return value; }
  // Frees the stored value of `node` (numbered as for stored()), for a subclass that knows no
  // later operation reads it: int8 calibration keeps only the live values of a deep network.
  void forget(int node);

 private:
  Value keep(torch::Tensor t);
  Value store(const torch::Tensor& t);
  const torch::Tensor& at(const Value& v) const { return value(v); }

  std::vector<torch::Tensor> values_;
  std::vector<std::size_t> stored_at_;  // the position in values_ of node + 1's value
  int operations_ = 0;                  // described so far
};

}  // namespace facemag::nn
