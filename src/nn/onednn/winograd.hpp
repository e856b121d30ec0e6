// Winograd F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 float32 convolutions (padding 1; in
// inference also 0) on
// 8-channel blocked activations (oneDNN's nChw8c: N x C/8 x H x W x 8, channel c of pixel (h, w)
// at [n][c / 8][h][w][c % 8]), on AVX2 CPUs, where oneDNN has no Winograd kernels of its own
// (internal; built with FACEMAG_HAVE_ONEDNN only). F(2x2) serves blocked training (forward, both
// gradients); the oneDNN inference plans run F(4x4) or F(2x2) (forward_tile) with bias, residual
// sum, ReLU and PReLU in the output transform.
//
// Each 2x2 (4x4) output tile comes from a 4x4 (6x6) input tile: 16 (36) multiplications per pair
// of channels instead of 36 (144), as 16 (36) oneDNN sgemm products (tiles x in by in x out, one
// per point of the transformed tile) between transforms. F(2x2)'s only add and subtract (its weight
// transform also halves, exactly); F(4x4)'s multiply by powers of two up to 8 and round more.
// Rounding against float64, per layer: F(2x2) 0.3-2.2x LibTorch's direct kernels
// (test_blocked_training); F(4x4) within 10x (test_onednn_graph), the bound of oneDNN's F(4x4).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <optional>

namespace facemag::nn::winograd {

inline constexpr std::int64_t kLanes = 8;    // channels per block
inline constexpr std::int64_t kPoints = 16;  // F(2x2)'s transformed 4x4 tile

// The output tile's side: F(2x2, 3x3) (forward and both gradients) or F(4x4, 3x3) (forward only).
enum class Tile : std::int64_t { k2x2 = 2, k4x4 = 4 };
// Points of the transformed tile: (side + 2)^2.
constexpr std::int64_t points(Tile tile) {
  return (static_cast<std::int64_t>(tile) + 2) * (static_cast<std::int64_t>(tile) + 2);
}

// Whether blocked training's F(2x2) takes a convolution from `ins` to `outs` channels with a square
// kernel and equal strides and paddings: 3x3, stride 1, padding 1, on a CPU where oneDNN runs
// AVX2, and where it is faster than oneDNN's direct kernels (measured on AVX2: 1.1-2.1x from 128
// channels on each side; the products of 64-channel layers are too narrow). The caller checks its
// layout (8-channel blocks, float32).
bool applies(std::int64_t ins, std::int64_t outs, std::int64_t kernel, std::int64_t stride,
             std::int64_t padding);
// The tile an inference (forward) convolution runs with (padding 0 or 1, whole blocks of channels
// on each side), or none (oneDNN's direct kernels). F(4x4) is the fastest from 32 channels on each
// side (iResNet-100 at batch 16 on AVX2: 1.5x F(2x2); InceptionResnetV1's stem and block35 layers
// at 32-80 channels: +4-8 % at batch 16, +11 % at 1), but keeps 36 floats per pair of channels
// against F(2x2)'s 16 and direct's 9, so the choice also holds memory where it was: F(4x4) up to
// 128 x 128 channels, F(2x2) up to 256 x 256, direct beyond (iResNet's 512-channel layers at 7x7: 6
// % of its arithmetic, a fifth of its weights).
std::optional<Tile> forward_tile(std::int64_t ins, std::int64_t outs, std::int64_t kernel,
                                 std::int64_t stride, std::int64_t padding);

// A blocked activation: `batch` images of `channels` (a multiple of kLanes) x height x width.
struct Blocked {
  const float* data;
  std::int64_t batch, channels, height, width;
};

// What the output transform does to each result before storing it, in oneDNN's post-op order:
// y = prelu(relu(result + bias [+ y])). Null pointers, false: none.
struct OutputEpilogue {
  const float* bias = nullptr;  // one per output channel
  bool accumulate = false;      // add what y holds (a residual sum)
  bool relu = false;
  const float* prelu = nullptr;  // one slope per output channel
};

// G k G^T of every 3x3 kernel k of OIHW float32 weights, as [point][in][out] matrices (the
// right-hand factors of the forward products). For the data gradient (a forward convolution of
// the output's gradient with the kernels rotated by 180 degrees, in and out swapped):
// [point][out][in] of the rotated kernels.
torch::Tensor transform_weights(const torch::Tensor& weight, bool for_data_gradient);
// The same written to `out` (16 x I x O floats), reading float32 `weight` in any memory format
// (a network's kept weights are made without a contiguous copy or a temporary result).
void transform_weights(const torch::Tensor& weight, bool for_data_gradient, float* out);
// Forward weights for `tile` (points(tile) x I x O floats).
void transform_weights(const torch::Tensor& weight, Tile tile, float* out);

// Floats of workspace that convolve() and weight_gradient() need for x with `outs` output
// channels.
std::int64_t workspace_floats(const Blocked& x, std::int64_t outs, Tile tile = Tile::k2x2,
                              std::int64_t padding = 1);

// y (blocked, x's batch, `outs` channels, x's size with padding 1, 2 less each way with padding 0)
// = epilogue(conv(x)) with transformed weights ([point][ins][outs], transform_weights).
void convolve(const Blocked& x, const float* weights, std::int64_t outs, float* y,
              const OutputEpilogue& epilogue, float* workspace, Tile tile = Tile::k2x2,
              std::int64_t padding = 1);

// The OIHW weight gradient (outs x ins x 3 x 3) of that convolution from x and the output's
// gradient dy (blocked, `outs` channels): the sum over tiles of the transformed input times the
// transformed gradient, per point, transformed back.
torch::Tensor weight_gradient(const Blocked& x, const float* dy, std::int64_t outs,
                              float* workspace);

}  // namespace facemag::nn::winograd
