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
#include "facemag/nn/onednn/onednn_graph.hpp"

namespace facemag::test {

constexpr double kBf16ErrorFactor = 2.0;
// The same reasoning for int8 (independent rounding errors add in quadrature).
constexpr double kInt8ErrorFactor = 2.0;

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
// bfloat16-rounded convolution weights, every value an operation stores before the flatten
// rounded to bfloat16 (the input, each convolution, PReLU/ReLU, affine, sum, pooling), biases and
// scales float32 as nn::OneDnnGraph keeps them; what follows the flatten in float32. Evaluate with
// `sink.value(network.describe(sink, sink.input(x)))`.
class Bf16EmulationSink : public nn::TorchEvaluator {
 protected:
  torch::Tensor conv_weights(const torch::Tensor& weight) override { return round_to_bf16(weight); }
  torch::Tensor stored(const torch::Tensor& value, int) override { return round_to_bf16(value); }
};

// int8's counterpart: weights quantised per output channel to 127 steps of their largest
// magnitude, every stored value to 127 steps of its calibrated largest magnitude (round to
// nearest, saturated), arithmetic in float32. nn::OneDnnGraph's int8 network rounds at these
// points or, where it fuses operations, once at the coarser step of the chain's largest value.
class Int8EmulationSink : public nn::TorchEvaluator {
 public:
  explicit Int8EmulationSink(const nn::Int8Calibration& calibration) : calibration_(calibration) {}

 protected:
  torch::Tensor conv_weights(const torch::Tensor& weight) override {
    const auto step = (weight.abs().amax({1, 2, 3}, true) / 127.0f).clamp_min(1e-30f);
    return (weight / step).round() * step;
  }
  torch::Tensor stored(const torch::Tensor& value, int node) override {
    const float max_abs = node < 0 ? calibration_.input : calibration_.values.at(node);
    const float step = max_abs > 0 ? max_abs / 127.0f : 1.0f;
    return (value / step).round().clamp(-127, 127) * step;
  }

 private:
  nn::Int8Calibration calibration_;
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

// Everything the tests hold a bf16 result to, from its rows (N x D), the emulation's rows and
// the float32 reference's: per row the relative error within kBf16ErrorFactor times the
// emulated one, the norm and the cosine within the bounds that follow, and the magnitude order
// where the bounds separate two rows. Failures come back as messages (violations).
struct Bf16Check {
  std::vector<double> errors, model_errors, bounds;
  double min_cosine = 1, worst_ratio = 0;
  MagnitudeOrder order;
  std::vector<std::string> violations;
};
inline Bf16Check check_bf16(const torch::Tensor& actual, const torch::Tensor& emulated,
                            const torch::Tensor& reference) {
  Bf16Check c;
  c.errors = relative_errors(actual, reference);
  c.model_errors = relative_errors(emulated, reference);
  const auto a = actual.to(torch::kFloat64), r = reference.to(torch::kFloat64);
  const auto norm_a = a.norm(2, 1).contiguous(), norm_r = r.norm(2, 1).contiguous();
  const auto cosines = ((a * r).sum(1) / (norm_a * norm_r)).contiguous();
  const std::vector<double> norms(norm_a.data_ptr<double>(),
                                  norm_a.data_ptr<double>() + norm_a.numel());
  const std::vector<double> reference_norms(norm_r.data_ptr<double>(),
                                            norm_r.data_ptr<double>() + norm_r.numel());
  for (std::size_t i = 0; i < c.errors.size(); ++i) {
    const double bound = kBf16ErrorFactor * c.model_errors[i];
    const double cosine = cosines.data_ptr<double>()[i];
    c.bounds.push_back(bound);
    c.min_cosine = std::min(c.min_cosine, cosine);
    c.worst_ratio = std::max(c.worst_ratio, c.errors[i] / c.model_errors[i]);
    const auto row = "row " + std::to_string(i) + ": ";
    if (!(c.errors[i] <= bound))
      c.violations.push_back(row + "relative error " + std::to_string(c.errors[i]) + " > bound " +
                             std::to_string(bound));
    if (!(std::abs(norms[i] - reference_norms[i]) / reference_norms[i] <= bound))
      c.violations.push_back(row + "norm " + std::to_string(norms[i]) + " vs " +
                             std::to_string(reference_norms[i]));
    if (!(cosine >= 1 - cosine_loss_bound(bound)))
      c.violations.push_back(row + "cosine " + std::to_string(cosine));
  }
  c.order = magnitude_order(norms, reference_norms, c.bounds);
  return c;
}

}  // namespace facemag::test
