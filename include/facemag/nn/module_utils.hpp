// State-dict plumbing shared by every network: PyTorch-ordered state dicts, strict loading and
// the deterministic "formula weights" of ../shared/golden/README.md.
#pragma once

#include <torch/nn/module.h>

#include <string>

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

// PReLU with per-channel weights on an N x C x ... tensor: x for x > 0, weight * x otherwise.
// Computed as clamp_min(x, 0) + w * clamp_max(x, 0), which gives the same values as
// torch::prelu (up to the sign of zero) but runs on LibTorch's vectorised elementwise kernels;
// its own per-channel PReLU kernel is 5-10x slower on CPU. Works in place on `x` (pass a
// temporary, or a copy).
torch::Tensor prelu(torch::Tensor x, const torch::Tensor& weight);

// u(name, i) of the formula: a double in [-1, 1).
double formula_uniform(const std::string& name, std::uint64_t index);

}  // namespace facemag::nn
