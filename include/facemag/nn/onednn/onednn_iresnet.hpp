// iResNet inference straight on oneDNN, in float32 or bfloat16, for the speed LibTorch cannot
// reach. float32: ATen runs every convolution as a direct one, while oneDNN also has Winograd
// F(4x4, 3x3) kernels for AVX-512 (4x fewer multiplications; measured 1.6-1.75x faster on
// iResNet's 3x3 stride-1 convolutions, which make up most of the network). On AVX2, where oneDNN
// has none, facemag's own Winograd F(2x2, 3x3) runs the 3x3 stride-1 layers of 128 channels or
// more (2.25x fewer multiplications; iResNet100 1.4-1.7x faster than on the direct kernels).
// Activations stay in oneDNN's blocked layout from the stem to the last block, the residual
// addition is fused into the second convolution of each block, and the folded weights of
// FoldedIResNet are used, of which only oneDNN's (or facemag's Winograd) copy is kept (see the
// constructor).
//
// Cost: Winograd keeps weights transformed to 6x6 tiles, ~4x the memory of the 3x3 weights
// (iResNet100: about 1 GB instead of 260 MB), per weight layout; batch sizes share one layout
// where oneDNN offers it (batch 1 would otherwise pick F(2x2, 3x3) with its own). On AVX2
// facemag's F(4x4) keeps 6x6 tiles up to 128 x 128 channels and its F(2x2) 4x4 tiles (16/9 of the
// weights) up to 256 x 256, direct kernels the rest: one layout for every batch size, and no more
// memory than F(2x2) alone took (winograd::forward_tile).
// Results are float32 with a different summation order: 1 - cosine to the MagFace goldens
// <= 6.9e-12, magnitudes within 1.8e-6 (iResNet100).
//
// bfloat16: activations and weights in bfloat16 from the stem to the last block, float32
// accumulation, biases and BatchNorm; PReLU fused into the convolution before it; weights
// reordered once per layout and kept (iResNet100: ~130 MB), not per call as LibTorch's bf16 path
// does. Error: that of rounding every stored tensor to 8 significant bits (the tests bound it by
// a CPU-independent emulation, tests/bf16_error_model.hpp); input and output stay float32.
//
// Built only where oneDNN's headers were found (FACEMAG_HAVE_ONEDNN); available() says so.
#pragma once

#include <torch/types.h>

#include <memory>

namespace facemag::nn {

class IResNetImpl;

class OneDnnIResNet {
 public:
  // True when this build links oneDNN and this CPU runs `dtype` (kFloat32: always; kBFloat16:
  // AVX-512). Without oneDNN the constructor throws std::logic_error, for an unavailable dtype
  // InvalidInput.
  static bool available(torch::ScalarType dtype = torch::kFloat32);

  // Never mutates `net`. Each convolution's weights are folded from it when a plan needs them in
  // a layout not kept yet; only oneDNN's (or facemag's Winograd) copy stays. float32 below
  // AVX-512 (no oneDNN Winograd layouts): all are folded here and `net` let go of (freed here if
  // this got the last reference), then the batch-1 plan is built, each folded copy dropped as
  // soon as its layout is kept; later batch sizes take those weights or reorder them.
  explicit OneDnnIResNet(std::shared_ptr<const IResNetImpl> net,
                         torch::ScalarType dtype = torch::kFloat32);
  ~OneDnnIResNet();
  OneDnnIResNet(const OneDnnIResNet&) = delete;
  OneDnnIResNet& operator=(const OneDnnIResNet&) = delete;

  // Same input and output as IResNetImpl::forward (N x 3 x 112 x 112 float32 -> N x 512 float32).
  // Thread-safe: the oneDNN primitives for a batch size are created once (the few most recent
  // batch sizes are kept) and every call works in its own buffers.
  torch::Tensor forward(const torch::Tensor& x) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace facemag::nn
