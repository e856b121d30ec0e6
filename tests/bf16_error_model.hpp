// The error model behind every bfloat16 bound of the tests, so that the bounds hold on any CPU
// (AVX512-BF16, AMX, or LibTorch's generic kernels) instead of being read off one machine.
//
// A bfloat16 network keeps 8 significant bits: every tensor it stores (weights, biases, each
// activation) is rounded to nearest with a relative error of at most 2^-8. Accumulation inside a
// convolution is float32 on every CPU that oneDNN supports (2^-24 per addition, negligible next
// to 2^-8). So the error of a bf16 forward is the sum of these roundings carried through the
// network, and its size can be measured without the CPU's own kernels: run the same folded
// network in float32 and round to bfloat16 wherever a bf16 kernel may store a value (after the
// input cast, each convolution, PReLU, the pre-block affine and the residual addition). Rounding
// to nearest even is exact and the same everywhere, so this emulation gives the same error on
// every CPU.
//
// A real kernel rounds at these points or at fewer (fused post-ops), so its rounding noise is
// another sample of the same sum of independent errors, or a smaller one. Independent errors add
// in quadrature: a kernel would need 4x as many rounding points for its error to reach twice the
// emulated one. The tests therefore bound the relative error vector of each embedding by
// kBf16ErrorFactor times the emulated one, and derive the rest from that:
//   |norm' - norm| / norm  <= e            (|a| - |b| <= |a - b|)
//   1 - cos(angle)         <= 1 - sqrt(1 - e^2)  (the error vector's orthogonal part is <= e)
//   magnitude order kept for faces whose norms differ by more than the sum of their bounds.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "facemag/nn/graph.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/module_utils.hpp"

namespace facemag::test {

constexpr double kBf16ErrorFactor = 2.0;

inline torch::Tensor round_to_bf16(const torch::Tensor& t) {
  return t.to(torch::kBFloat16).to(torch::kFloat32);
}

// The folded iResNet (bf16 weights, as FusedIResNet stores them) in float32 arithmetic, every
// stored activation rounded to bfloat16. Input: N x 3 x 112 x 112 float32; output N x 512.
inline torch::Tensor emulated_bf16_iresnet(const nn::IResNetImpl& net, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  const nn::FoldedIResNet folded(net, torch::kBFloat16);
  const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
  const auto conv = [&](const nn::FoldedIResNet::Conv& c, const torch::Tensor& x) {
    return round_to_bf16(
        torch::conv2d(x, f32(c.weight).contiguous(), f32(c.bias), c.stride, c.padding));
  };
  const auto prelu = [&](const torch::Tensor& x, const torch::Tensor& w) {
    return round_to_bf16(torch::prelu(x, f32(w)));
  };
  auto x = round_to_bf16(input);
  x = prelu(conv(folded.stem, x), folded.stem_prelu);
  for (const auto& b : folded.blocks) {
    auto y = round_to_bf16(f32(b.pre_shift) + x * f32(b.pre_scale));
    y = prelu(conv(b.conv1, y), b.prelu);
    y = conv(b.conv2, y);
    x = round_to_bf16(y + (b.downsample ? conv(*b.downsample, x) : x));
  }
  const auto flat = x.permute({0, 2, 3, 1}).reshape({x.size(0), -1});
  return torch::addmm(folded.fc_bias, flat, folded.fc_weight.t());
}

// Any network that describes itself (nn::GraphSink), run the same way: float32 arithmetic on
// bfloat16-rounded convolution weights, every value an operation stores rounded to bfloat16
// (after the input cast, each convolution, PReLU/ReLU, affine, sum, pooling), biases and scales
// float32 as nn::OneDnnGraph keeps them; what follows the flatten in float32. Evaluate with
// `network.describe(sink, sink.input(x))`, then sink.value(output).
class Bf16EmulationSink : public nn::GraphSink {
 public:
  Value input(const torch::Tensor& x) { return put(x); }
  torch::Tensor value(const Value& v) const { return values_.at(v); }

  Value conv(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias, Pair stride,
             Pair padding, std::int64_t groups) override {
    return put(torch::conv2d(at(x), round_to_bf16(weight.to(torch::kFloat32)),
                             bias.defined() ? bias.to(torch::kFloat32) : torch::Tensor(),
                             {stride[0], stride[1]}, {padding[0], padding[1]}, {1, 1}, groups));
  }
  Value scale_shift(const Value& x, const torch::Tensor& scale,
                    const torch::Tensor& shift) override {
    return put(at(x) * channels(scale) + channels(shift));
  }
  Value prelu(const Value& x, const torch::Tensor& slope) override {
    return put(torch::prelu(at(x), slope.to(torch::kFloat32).flatten()));
  }
  Value relu(const Value& x) override { return put(torch::relu(at(x))); }
  Value add(const Value& a, const Value& b) override { return put(at(a) + at(b)); }
  Value concat(const std::vector<Value>& values) override {
    std::vector<torch::Tensor> parts;
    for (const auto& v : values) parts.push_back(at(v));
    return put(torch::cat(parts, 1));
  }
  Value max_pool(const Value& x, Pair kernel, Pair stride, bool ceil_mode) override {
    return put(torch::max_pool2d(at(x), {kernel[0], kernel[1]}, {stride[0], stride[1]}, {0, 0},
                                 {1, 1}, ceil_mode));
  }
  Value global_average_pool(const Value& x) override {
    return put(torch::adaptive_avg_pool2d(at(x), {1, 1}));
  }
  Value flatten(const Value& x, bool caffe_order) override {
    const auto& t = at(x);
    return keep(caffe_order ? t.permute({0, 3, 2, 1}).reshape({t.size(0), -1})
                            : t.reshape({t.size(0), -1}));
  }
  Value linear(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias) override {
    auto y = torch::mm(at(x), weight.to(torch::kFloat32).t());
    return keep(bias.defined() ? y + bias.to(torch::kFloat32) : y);
  }
  Value softmax(const Value& x) override { return keep(torch::softmax(at(x), 1)); }

 private:
  static torch::Tensor channels(const torch::Tensor& t) {
    return t.to(torch::kFloat32).reshape({1, -1, 1, 1});
  }
  const torch::Tensor& at(const Value& v) const { return values_.at(v); }
  Value put(const torch::Tensor& t) { return keep(round_to_bf16(t)); }
  Value keep(const torch::Tensor& t) {
    auto name = std::to_string(values_.size());
    name.insert(name.begin(), 'v');
    values_[name] = t;
    return name;
  }
  std::map<Value, torch::Tensor> values_;
};

// Per row: |actual - reference| / |reference| (rows of N x D matrices, in double).
inline std::vector<double> relative_errors(const torch::Tensor& actual,
                                           const torch::Tensor& reference) {
  const auto a = actual.to(torch::kFloat64), r = reference.to(torch::kFloat64);
  const auto e = ((a - r).norm(2, 1) / r.norm(2, 1)).contiguous();
  return {e.data_ptr<double>(), e.data_ptr<double>() + e.numel()};
}

// The largest 1 - cosine a relative error vector of size e allows.
inline double cosine_loss_bound(double e) { return e >= 1 ? 2.0 : 1 - std::sqrt(1 - e * e); }

// Pairs (i, j) whose reference magnitudes differ by more than both bounds together, and which
// of them `actual` orders the other way round. relative_bound[i] bounds |actual_i - ref_i| / ref_i.
struct MagnitudeOrder {
  int checked = 0;
  int swapped = 0;
};
inline MagnitudeOrder magnitude_order(const std::vector<double>& actual,
                                      const std::vector<double>& reference,
                                      const std::vector<double>& relative_bound) {
  MagnitudeOrder out;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    for (std::size_t j = 0; j < reference.size(); ++j) {
      if (reference[i] <= reference[j]) continue;
      if (reference[i] * (1 - relative_bound[i]) <= reference[j] * (1 + relative_bound[j]))
        continue;  // too close to tell apart at this precision
      ++out.checked;
      out.swapped += actual[i] <= actual[j];
    }
  }
  return out;
}

}  // namespace facemag::test
