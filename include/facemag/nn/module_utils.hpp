// State-dict plumbing shared by every network: PyTorch-ordered state dicts, strict loading and
// the deterministic "formula weights" of ../shared/golden/README.md.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <utility>

#include "facemag/io/checkpoint.hpp"

namespace facemag::nn {

// Parameters and buffers in PyTorch's state_dict() order (each module's own parameters, then
// its buffers, modules in registration pre-order).
io::NamedTensors state_dict(const torch::nn::Module& module);

// Copies `tensors` into `module`. Strict: every parameter and buffer of the module must be
// present with the same shape, and no other tensor may be given; the error names the tensor,
// the expected and the actual shape and `source`. Floating tensors of another precision are
// converted (as PyTorch's load_state_dict does); integer/float mixes are an error.
void load_state_dict_strict(torch::nn::Module& module, const io::NamedTensors& tensors,
                            const std::string& source);

// Fills every parameter and buffer of `module` with the golden "formula weights": values that
// depend only on the tensor's state_dict name and shape. Supports Conv2d, Linear, BatchNorm1d/2d
// and PReLU leaves; any other module holding tensors is an error.
void fill_formula_weights(torch::nn::Module& module);

// PReLU with per-channel weights on an N x C x ... tensor: x for x > 0, weight * x otherwise,
// the values of torch::prelu. Works in place on `x` (pass a temporary, or a copy). float32 and
// bfloat16 tensors that are contiguous (N x C, NCHW) or channels-last take one hand-written
// pass; LibTorch 1.13's own per-channel PReLU is 5-10x slower on CPU and its elementwise
// broadcast over channels-last tensors 20x. Others run as clamp_min(x, 0) + w * clamp_max(x, 0).
// Where autograd records (grad mode on and x or weight requiring grad): out of place, with a
// hand-written backward for float32 in those layouts (torch::prelu for others).
torch::Tensor prelu(torch::Tensor x, const torch::Tensor& weight);

// A BatchNorm (1-d or 2-d) at inference as y = x * scale + shift, computed in double.
template <class BatchNorm>
std::pair<torch::Tensor, torch::Tensor> batch_norm_affine(const BatchNorm& bn) {
  const auto var = bn.running_var.to(torch::kFloat64);
  const auto scale = bn.weight.to(torch::kFloat64) / (var + bn.options.eps()).sqrt();
  const auto shift = bn.bias.to(torch::kFloat64) - bn.running_mean.to(torch::kFloat64) * scale;
  return {scale, shift};
}

// conv_weight (O x I x kh x kw) with each output channel's slice multiplied by scale[o] (double),
// in double and rounded once to `dtype`, in channels-last memory (the layout oneDNN runs
// convolutions in). Computed a few output channels at a time: facemag's heap is never trimmed,
// and whole-tensor temporaries in double (5x the weights' size per convolution) left iResNet100's
// folding ~0.2 GB above what it keeps.
torch::Tensor scale_output_channels(const torch::Tensor& conv_weight, const torch::Tensor& scale,
                                    torch::ScalarType dtype);

// A convolution followed by a BatchNorm at inference as one convolution: weight scaled per
// output channel, the BatchNorm's shift as bias; computed in double, stored in `dtype`, the
// weight in channels-last memory (the layout oneDNN runs convolutions in).
template <class BatchNorm>
std::pair<torch::Tensor, torch::Tensor> fold_conv_batch_norm(const torch::Tensor& conv_weight,
                                                             const BatchNorm& bn,
                                                             torch::ScalarType dtype) {
  const auto [scale, shift] = batch_norm_affine(bn);
  return {scale_output_channels(conv_weight, scale, dtype), shift.to(dtype)};
}

// u(name, i) of the formula: a double in [-1, 1).
double formula_uniform(const std::string& name, std::uint64_t index);

}  // namespace facemag::nn
