// Any network that describes itself (nn::GraphSink, the walk the ONNX exporter reads) run
// straight on oneDNN primitives, in float32 or bfloat16 activations: MobileFaceNet and
// InceptionResnetV1 the way nn::OneDnnIResNet runs iResNet. The description is recorded once;
// per batch size it becomes one oneDNN plan: activations in the layout oneDNN prefers on this
// CPU from the first convolution to the last 4-D value, PReLU/ReLU and residual sums fused into
// the convolution before them where a kernel takes them, buffers reused as soon as a value is
// dead, weights reordered once and kept. What follows the flatten (the Linear layers) runs on
// LibTorch in float32.
//
// bfloat16: weights and activations rounded to bfloat16 (8 significant bits) at every stored
// value, float32 accumulation, biases and scales; input and output stay float32. Its error is
// bounded in the tests by a CPU-independent emulation of exactly these roundings
// (tests/bf16_error_model.hpp).
//
// Built only where oneDNN's headers were found (FACEMAG_HAVE_ONEDNN); available() says so.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace facemag::nn {

class GraphSink;

// What int8 inference needs to know of a network's values, measured on real faces: the range of
// the input and of each operation's result (in the order the network describes its operations;
// those after the flatten are not quantized and read 0). A range is a percentile of the
// magnitudes, the largest over the calibration batches: 99.99 by default, which clips the rare
// outliers that would otherwise coarsen every step (MobileFaceNet on LFW: 98.77 % with the
// maxima, 98.80 % with 99.99, fp32 99.00 %; README "int8"). A value that only a concatenation
// reads takes the concatenation's range: the concatenated tensor has one scale, and the values
// that make it up are stored at that scale from the start.
struct Int8Calibration {
  float input = 0;
  std::vector<float> values;
  std::int64_t faces = 0;   // how many faces it was measured on
  double percentile = 100;  // of the magnitudes in each batch
};

class OneDnnGraph {
 public:
  // A network's describe(): writes the network into `sink` from the value `input`, returns the
  // value of its output.
  using Describe = std::function<std::string(GraphSink& sink, const std::string& input)>;

  // True when this build links oneDNN and this CPU runs `dtype` (kFloat32: always; kBFloat16:
  // AVX-512, natively or emulated by oneDNN; kChar, int8: VNNI).
  static bool available(torch::ScalarType dtype);
  // Throws InvalidInput where !available(dtype), naming what the CPU (AVX-512 for bf16, VNNI for
  // int8) or the build (oneDNN) lacks and which precision to use instead.
  static void require(torch::ScalarType dtype);
  // require(dtype) where this build has oneDNN, whatever runs the network: there the CPU alone
  // decides, and LibTorch's own bf16 on a CPU without AVX-512 falls to reference code (~30-65x
  // slower than fp32). A build without oneDNN leaves the choice to LibTorch.
  static void require_of_this_cpu(torch::ScalarType dtype);

  // Records the network for inputs of input_chw (C x H x W), with a copy of its weights, and
  // lets go of `describe` before building anything from the record: a network that only it
  // holds is freed there. Throws InvalidInput for a dtype this CPU does not run,
  // std::logic_error for an operation it cannot place (a 4-D operation after the flatten) or a
  // build without oneDNN.
  OneDnnGraph(Describe describe, std::array<std::int64_t, 3> input_chw, torch::ScalarType dtype);
  ~OneDnnGraph();
  OneDnnGraph(const OneDnnGraph&) = delete;
  OneDnnGraph& operator=(const OneDnnGraph&) = delete;

  // int8 (post-training quantisation): weights per output channel, each value per tensor
  // (scale = its calibrated largest magnitude / 127), int32 accumulation, on VNNI kernels; every
  // network (concatenations take one scale, see Int8Calibration). InvalidInput where the CPU
  // lacks VNNI (available(torch::kChar)) or the calibration is of another network.
  OneDnnGraph(Describe describe, std::array<std::int64_t, 3> input_chw,
              const Int8Calibration& calibration);

  // Runs the network in float32 (LibTorch) over `batches` (each N x C x H x W) and records the
  // range of every value (see Int8Calibration).
  static Int8Calibration calibrate(const Describe& describe,
                                   const std::vector<torch::Tensor>& batches,
                                   double percentile = 99.99);

  // N x C x H x W float32 -> the network's output, float32. Thread-safe (per-call buffers).
  torch::Tensor forward(const torch::Tensor& x) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace facemag::nn
