// nn::OneDnnGraph, the networks that describe themselves run on oneDNN: against each module as
// PyTorch runs it (float32, batches of several sizes from two threads at once) and, in
// bfloat16, within the bounds of the CPU-independent error model (bf16_error_model.hpp).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bf16_error_model.hpp"
#include "facemag/error.hpp"
#include "facemag/nn/graph.hpp"
#include "facemag/nn/inception_resnet_v1.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/mobilefacenet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using nn::OneDnnGraph;

// Runs `graph` on the first n rows of `input` for each batch size n below, from two threads at
// once (plans of several sizes built and used concurrently); returns the outputs per size.
const std::vector<std::int64_t> kBatches{1, 5, 2, 3};
std::vector<torch::Tensor> run_from_two_threads(const OneDnnGraph& graph,
                                                const torch::Tensor& input) {
  std::vector<torch::Tensor> outputs(kBatches.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < kBatches.size(); i += 2)
        outputs[i] = graph.forward(input.slice(0, 0, kBatches[i]));
    });
  }
  for (auto& th : threads) th.join();
  return outputs;
}

void check_graph(const std::string& name, const OneDnnGraph::Describe& describe,
                 const std::function<torch::Tensor(const torch::Tensor&)>& reference,
                 std::array<std::int64_t, 3> chw) {
  torch::NoGradGuard no_grad;
  const auto generator = torch::Generator(at::detail::createCPUGenerator(5));
  const auto input = torch::rand({5, chw[0], chw[1], chw[2]}, generator) * 2 - 1;
  const auto expected = reference(input);

  const OneDnnGraph fp32(describe, chw, torch::kFloat32);
  double worst = 0;
  const auto fp32_outputs = run_from_two_threads(fp32, input);
  for (std::size_t i = 0; i < kBatches.size(); ++i) {
    const auto rows = test::relative_errors(fp32_outputs[i], expected.slice(0, 0, kBatches[i]));
    worst = std::max(worst, *std::max_element(rows.begin(), rows.end()));
  }
  std::cout << "[ graph ] " << name << " fp32: max relative error " << worst << "\n";
  EXPECT_LT(worst, 1e-5);
  EXPECT_THROW(fp32.forward(torch::zeros({1, chw[0], chw[1] + 1, chw[2]})), InvalidInput);

  if (!OneDnnGraph::available(torch::kBFloat16)) {
    std::cout << "[ graph ] " << name << " bf16: not on this CPU (needs AVX-512)\n";
    return;
  }
  test::Bf16EmulationSink sink;
  const auto emulated = sink.value(describe(sink, sink.input(input)));
  const OneDnnGraph bf16(describe, chw, torch::kBFloat16);
  const auto bf16_outputs = run_from_two_threads(bf16, input);
  double worst_ratio = 0, worst_error = 0;
  for (std::size_t i = 0; i < kBatches.size(); ++i) {
    const auto n = kBatches[i];
    const auto check =
        test::check_bf16(bf16_outputs[i], emulated.slice(0, 0, n), expected.slice(0, 0, n));
    for (const auto& v : check.violations) ADD_FAILURE() << name << " batch " << n << " " << v;
    worst_ratio = std::max(worst_ratio, check.worst_ratio);
    worst_error =
        std::max(worst_error, *std::max_element(check.errors.begin(), check.errors.end()));
  }
  std::cout << "[ graph ] " << name << " bf16: max relative error " << worst_error
            << " (worst ratio to the emulation " << worst_ratio << ")\n";
}

// int8 calibrated on one random batch and run on another, against the int8 emulation
// (bf16_error_model.hpp) of the same calibration; on a CPU without VNNI, the refusal.
void check_int8(const std::string& name, const OneDnnGraph::Describe& describe,
                const std::function<torch::Tensor(const torch::Tensor&)>& reference,
                std::array<std::int64_t, 3> chw) {
  torch::NoGradGuard no_grad;
  const auto generator = torch::Generator(at::detail::createCPUGenerator(17));
  const auto calibration_input = torch::rand({8, chw[0], chw[1], chw[2]}, generator) * 2 - 1;
  const auto input = torch::rand({5, chw[0], chw[1], chw[2]}, generator) * 2 - 1;
  const auto calibration = OneDnnGraph::calibrate(describe, {calibration_input});
  if (!OneDnnGraph::available(torch::kChar)) {
    EXPECT_THROW(OneDnnGraph(describe, chw, calibration), InvalidInput);
    GTEST_SKIP() << "CPU without VNNI: int8 refused";
  }
  const auto expected = reference(input);
  test::Int8EmulationSink sink(calibration);
  const auto emulated = sink.value(describe(sink, sink.input(input)));
  const auto model_errors = test::relative_errors(emulated, expected);
  const OneDnnGraph int8(describe, chw, calibration);
  const auto outputs = run_from_two_threads(int8, input);
  double worst_ratio = 0, worst_error = 0;
  for (std::size_t i = 0; i < kBatches.size(); ++i) {
    const auto errors = test::relative_errors(outputs[i], expected.slice(0, 0, kBatches[i]));
    for (std::size_t r = 0; r < errors.size(); ++r) {
      worst_error = std::max(worst_error, errors[r]);
      worst_ratio = std::max(worst_ratio, errors[r] / model_errors[r]);
      EXPECT_LE(errors[r], test::kInt8ErrorFactor * model_errors[r])
          << name << " batch " << kBatches[i] << " row " << r << ": emulated int8 "
          << model_errors[r];
    }
  }
  std::cout << "[ graph ] " << name << " int8: max relative error " << worst_error << " (emulated "
            << *std::max_element(model_errors.begin(), model_errors.end()) << ", worst ratio "
            << worst_ratio << ")\n";
}

TEST(OneDnnGraph, MobileFaceNetAgreesWithItsModuleAndItsBf16Model) {
  nn::MobileFaceNet net;
  nn::fill_formula_weights(*net);
  net->eval();
  check_graph(
      "mobilefacenet",
      [&](nn::GraphSink& sink, const std::string& x) { return net->describe(sink, x); },
      [&](const torch::Tensor& x) { return net->forward(x); }, {3, 112, 96});
}

// InceptionResnetV1 up to its embedding (no classifier), as a description.
OneDnnGraph::Describe describe_embedding(const nn::InceptionResnetV1& net) {
  return [net](nn::GraphSink& sink, const std::string& x) {
    return net->describe(sink, x, /*with_classifier=*/false).front();
  };
}

TEST(OneDnnGraph, InceptionResnetV1AgreesWithItsModuleAndItsBf16Model) {
  nn::InceptionResnetV1 net(0);
  nn::fill_formula_weights(*net);
  net->eval();
  check_graph("inception_resnet_v1", describe_embedding(net),
              [&](const torch::Tensor& x) { return net->forward(x); }, {3, 160, 160});
}

// A flatten-less network has nothing for the LibTorch tail to start from.
TEST(OneDnnGraph, RefusesANetworkWithoutAFlatten) {
  const auto no_flatten = [&](nn::GraphSink& sink, const std::string& x) { return sink.relu(x); };
  EXPECT_THROW(OneDnnGraph(no_flatten, {3, 112, 96}, torch::kFloat32), std::logic_error);
}

TEST(OneDnnGraph, Int8MobileFaceNetStaysWithinItsErrorModel) {
  nn::MobileFaceNet net;
  nn::fill_formula_weights(*net);
  net->eval();
  check_int8(
      "mobilefacenet",
      [&](nn::GraphSink& sink, const std::string& x) { return net->describe(sink, x); },
      [&](const torch::Tensor& x) { return net->forward(x); }, {3, 112, 96});
}

TEST(OneDnnGraph, Int8IResNetStaysWithinItsErrorModel) {
  nn::IResNet net(nn::IResNetDepth::k18);
  nn::fill_formula_weights(*net);
  net->eval();
  check_int8(
      "iresnet18",
      [&](nn::GraphSink& sink, const std::string& x) { return net->describe(sink, x); },
      [&](const torch::Tensor& x) { return net->forward(x); }, {3, 112, 112});
}

// Concatenations in int8: the branches store at the concatenation's scale, the pooled branch of
// a reduction block is requantised to it.
TEST(OneDnnGraph, Int8InceptionResnetV1StaysWithinItsErrorModel) {
  nn::InceptionResnetV1 net(0);
  nn::fill_formula_weights(*net);
  net->eval();
  check_int8("inception_resnet_v1", describe_embedding(net),
             [&](const torch::Tensor& x) { return net->forward(x); }, {3, 160, 160});
}

// A stack of 3x3 stride-1 convolutions from 32 to 512 channels, padded by 1 and by 0, on sizes that
// leave tiles partly outside (17 x 15 down to 13 x 11), with a bias, PReLU, ReLU and residual sums:
// on AVX2 facemag's Winograd F(4x4) (up to 128 channels), F(2x2) (256) and oneDNN's direct kernels
// (512, and 36 channels, which do not fill 8-channel blocks); on AVX-512 oneDNN's F(4x4) or direct,
// as it picks. Against float64, the relative error per row stays within 10x LibTorch float32's, the
// per-layer bound of Winograd F(4x4) (test_blocked_training.cpp: its transforms multiply by up to
// 8). Measured: 1.5x on AVX2 (facemag's, an Intel Xeon held to AVX2), 3.2x on AVX-512 (oneDNN's
// F(4x4)).
TEST(OneDnnGraph, Float32WinogradLayersRoundWithinTheirBound) {
  torch::NoGradGuard no_grad;
  const auto generator = torch::Generator(at::detail::createCPUGenerator(23));
  struct Layer {
    torch::Tensor weight, bias, slope;
    bool relu = false, residual = false;
    std::int64_t padding = 1;
  };
  std::vector<Layer> layers;
  // in, out, padding
  const std::vector<std::array<std::int64_t, 3>> widths{
      {3, 32, 1},    {32, 32, 0},   {32, 36, 1},   {36, 64, 1},   {64, 64, 1},  {64, 128, 0},
      {128, 128, 1}, {128, 256, 1}, {256, 256, 1}, {256, 512, 1}, {512, 512, 1}};
  for (std::size_t i = 0; i < widths.size(); ++i) {
    const auto [ins, outs, padding] = widths[i];
    Layer layer;
    layer.padding = padding;
    layer.weight = torch::randn({outs, ins, 3, 3}, generator) * std::sqrt(2.0 / (9.0 * ins));
    layer.bias = torch::rand({outs}, generator) * 0.2 - 0.1;
    if (i % 3 == 1) layer.slope = torch::rand({outs}, generator) * 0.5;
    layer.relu = i % 3 == 2;
    layer.residual = ins == outs && padding == 1;
    layers.push_back(layer);
  }
  const auto describe = [&](nn::GraphSink& sink, const std::string& input) {
    auto x = input;
    for (const auto& layer : layers) {
      auto y = sink.conv(x, layer.weight, layer.bias, {1, 1}, {layer.padding, layer.padding}, 1);
      if (layer.residual) y = sink.add(y, x);
      if (layer.relu) y = sink.relu(y);
      if (layer.slope.defined()) y = sink.prelu(y, layer.slope);
      x = y;
    }
    return sink.flatten(x, false);
  };
  const auto reference = [&](const torch::Tensor& input, torch::ScalarType type) {
    auto x = input.to(type);
    for (const auto& layer : layers) {
      auto y = torch::conv2d(x, layer.weight.to(type), layer.bias.to(type), 1, layer.padding);
      if (layer.residual) y = y + x;
      if (layer.relu) y = torch::relu(y);
      if (layer.slope.defined()) y = torch::prelu(y, layer.slope.to(type));
      x = y;
    }
    return x.flatten(1);
  };
  const std::array<std::int64_t, 3> chw{3, 17, 15};
  const auto input = torch::rand({5, chw[0], chw[1], chw[2]}, generator) * 2 - 1;
  const auto exact = reference(input, torch::kFloat64);
  const auto libtorch = test::relative_errors(reference(input, torch::kFloat32), exact);
  const OneDnnGraph graph(describe, chw, torch::kFloat32);
  const auto outputs = run_from_two_threads(graph, input);
  double worst_ratio = 0;
  for (std::size_t i = 0; i < kBatches.size(); ++i) {
    const auto errors = test::relative_errors(outputs[i], exact.slice(0, 0, kBatches[i]));
    for (std::size_t r = 0; r < errors.size(); ++r) {
      worst_ratio = std::max(worst_ratio, errors[r] / libtorch[r]);
      EXPECT_LE(errors[r], 10.0 * libtorch[r])
          << "batch " << kBatches[i] << " row " << r << ": LibTorch float32 " << libtorch[r];
    }
  }
  std::cout << "[ graph ] 3x3 stack fp32: worst ratio to LibTorch float32's error " << worst_ratio
            << " (LibTorch's " << *std::max_element(libtorch.begin(), libtorch.end()) << ")\n";
}

}  // namespace
}  // namespace facemag
