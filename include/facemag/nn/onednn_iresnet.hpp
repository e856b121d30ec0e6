// iResNet float32 inference straight on oneDNN, for the speed LibTorch cannot reach: ATen runs
// every convolution as a direct one, while oneDNN also has Winograd F(4x4, 3x3) kernels for
// AVX-512 (4x fewer multiplications; measured 1.6-1.75x faster on iResNet's 3x3 stride-1
// convolutions, which make up most of the network). Activations stay in oneDNN's blocked layout
// from the stem to the last block, the residual addition is fused into the second convolution of
// each block, and the folded weights of FoldedIResNet are used (float32).
//
// Cost: Winograd keeps weights transformed to 6x6 tiles, ~4x the memory of the 3x3 weights
// (iResNet100: about 1 GB instead of 260 MB), per weight layout; batch sizes share one layout
// where oneDNN offers it (batch 1 would otherwise pick F(2x2, 3x3) with its own).
// Results are float32 with a different summation order: 1 - cosine to the MagFace goldens
// <= 6.9e-12, magnitudes within 1.8e-6 (iResNet100).
//
// Built only where oneDNN's headers were found (FACEMAG_HAVE_ONEDNN); available() says so.
#pragma once

#include <torch/types.h>

#include <memory>

namespace facemag::nn {

class IResNetImpl;

class OneDnnIResNet {
 public:
  // True when this build links oneDNN; otherwise the constructor throws std::logic_error.
  static bool available();

  explicit OneDnnIResNet(const IResNetImpl& net);
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
