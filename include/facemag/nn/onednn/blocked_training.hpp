// Training layers on activations kept in oneDNN's channel blocks from the first convolution to
// the last (convolutions need a build with oneDNN: available()).
//
// A blocked activation is a contiguous float32 tensor N x C/B x H x W x B, B = block_width():
// channel c of pixel (h, w) at [n][c / B][h][w][c % B], oneDNN's nChw16c on CPUs with AVX-512
// (its Winograd training kernels for 3x3 stride-1 convolutions, forward, backward data and
// weights: 1.2-2.3x its direct kernels, which LibTorch runs) and nChw8c on AVX2 (its direct
// kernels in 8-channel blocks: 1.1-2.5x the same kernels on LibTorch's channels-last
// activations, backward weights gaining most; from 128 channels facemag's own Winograd
// F(2x2, 3x3), 1.1-2.1x those kernels); kept from layer to layer, no reorders. Float rounding:
// Winograd F(4x4)'s is about 3x direct's, F(2x2)'s 0.3-2.2x LibTorch's per layer; BatchNorm sums
// in double (closer to float64 than LibTorch's float sums). Every function here is differentiable
// (LibTorch autograd).
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <cstdint>

namespace facemag::nn::blocked {

// Whether this build and CPU train in blocks: oneDNN present and AVX2 at least.
bool available();

// How 3x3 stride-1 convolutions (padding 1) from `in` to `out` channels run here, forward and both
// gradients.
enum class StrideOneAlgorithm {
  kDirect,       // oneDNN's direct kernels, LibTorch's (and its rounding)
  kWinograd4x4,  // oneDNN's Winograd F(4x4, 3x3): AVX-512 CPUs
  kWinograd2x2,  // facemag's Winograd F(2x2, 3x3) on oneDNN's sgemm: AVX2 CPUs, 128 channels or
                 // more in and out
};
StrideOneAlgorithm stride_one_algorithm(std::int64_t in, std::int64_t out);

// Channels per block: 16 where oneDNN runs AVX-512 (one vector), else 8 (one AVX2 vector).
std::int64_t block_width();

// N x C x H x W (C a multiple of block_width()) -> blocked, and back (each a copy).
torch::Tensor from_nchw(const torch::Tensor& x);
torch::Tensor to_nchw(const torch::Tensor& x);

// A convolution without bias (square kernel `weight`, O x I x k x k, O a multiple of the block
// width) of a blocked input, or of an N x C x H x W input with fewer channels than a block (a
// network's image input, whose gradient is never asked for); returns the blocked result. 3x3
// stride-1 convolutions run Winograd where stride_one_algorithm() says so, others direct.
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, std::int64_t stride,
                     std::int64_t padding);

// `bn` applied to a blocked input exactly as its forward() would: in training mode with the
// batch's mean and biased variance, updating the running statistics (unbiased variance) with the
// module's momentum and counting the batch; in eval mode with the running statistics.
torch::Tensor batch_norm(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn);

// PReLU with one slope per channel.
torch::Tensor prelu(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace facemag::nn::blocked
