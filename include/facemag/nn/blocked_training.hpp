// Training layers on activations kept in oneDNN's 16-channel blocks from the first convolution to
// the last (convolutions need a build with oneDNN: available()).
//
// A blocked activation is a contiguous float32 tensor N x C/16 x H x W x 16: channel c of pixel
// (h, w) at [n][c / 16][h][w][c % 16] (oneDNN's nChw16c), the layout of oneDNN's Winograd
// training kernels (forward, backward data and weights of 3x3 stride-1 convolutions on AVX-512:
// 1.2-2.3x its direct kernels, which LibTorch runs); kept from layer to layer, no reorders.
// Float rounding: Winograd's is about 3x direct's; BatchNorm sums in double (closer to float64
// than LibTorch's float sums). Every function here is differentiable (LibTorch autograd).
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <cstdint>

namespace facemag::nn::blocked {

inline constexpr std::int64_t kBlock = 16;

// Whether this build and CPU train in blocks: oneDNN present and AVX-512 (16-float vectors).
bool available();

// N x C x H x W (C a multiple of 16) -> blocked, and back (each a copy).
torch::Tensor from_nchw(const torch::Tensor& x);
torch::Tensor to_nchw(const torch::Tensor& x);

// A convolution without bias (square kernel `weight`, O x I x k x k, O a multiple of 16) of a
// blocked input, or of an N x C x H x W input with C < 16 (a network's image input, whose
// gradient is never asked for); returns the blocked result. 3x3 stride-1 convolutions run
// Winograd F(4x4, 3x3) where oneDNN has it for this CPU, others direct.
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, std::int64_t stride,
                     std::int64_t padding);

// `bn` applied to a blocked input exactly as its forward() would: in training mode with the
// batch's mean and biased variance, updating the running statistics (unbiased variance) with the
// module's momentum and counting the batch; in eval mode with the running statistics.
torch::Tensor batch_norm(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn);

// PReLU with one slope per channel.
torch::Tensor prelu(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace facemag::nn::blocked
