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
#include "facemag/nn/mobilefacenet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn_graph.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using nn::OneDnnGraph;

// Runs `graph` on slices of `input` (batch sizes below, two threads) and returns, per batch
// size, the rows' relative errors against `expected`.
std::vector<std::vector<double>> run_from_two_threads(const OneDnnGraph& graph,
                                                      const torch::Tensor& input,
                                                      const torch::Tensor& expected) {
  const std::vector<std::int64_t> batches{1, 5, 2, 3};
  std::vector<std::vector<double>> errors(batches.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < batches.size(); i += 2) {
        const auto n = batches[i];
        errors[i] =
            test::relative_errors(graph.forward(input.slice(0, 0, n)), expected.slice(0, 0, n));
      }
    });
  }
  for (auto& th : threads) th.join();
  return errors;
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
  for (const auto& rows : run_from_two_threads(fp32, input, expected))
    worst = std::max(worst, *std::max_element(rows.begin(), rows.end()));
  std::cout << "[ graph ] " << name << " fp32: max relative error " << worst << "\n";
  EXPECT_LT(worst, 1e-5);
  EXPECT_THROW(fp32.forward(torch::zeros({1, chw[0], chw[1] + 1, chw[2]})), InvalidInput);

  if (!OneDnnGraph::available(torch::kBFloat16)) {
    std::cout << "[ graph ] " << name << " bf16: not on this CPU (needs AVX-512)\n";
    return;
  }
  test::Bf16EmulationSink sink;
  const auto emulated = sink.value(describe(sink, sink.input(input)));
  const auto model_errors = test::relative_errors(emulated, expected);
  const OneDnnGraph bf16(describe, chw, torch::kBFloat16);
  double worst_ratio = 0, worst_error = 0;
  for (const auto& rows : run_from_two_threads(bf16, input, expected)) {
    for (std::size_t r = 0; r < rows.size(); ++r) {
      worst_error = std::max(worst_error, rows[r]);
      worst_ratio = std::max(worst_ratio, rows[r] / model_errors[r]);
      EXPECT_LE(rows[r], test::kBf16ErrorFactor * model_errors[r])
          << name << " row " << r << ": emulated bf16 " << model_errors[r];
    }
  }
  std::cout << "[ graph ] " << name << " bf16: max relative error " << worst_error << " (emulated "
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

TEST(OneDnnGraph, InceptionResnetV1AgreesWithItsModuleAndItsBf16Model) {
  nn::InceptionResnetV1 net(0);
  nn::fill_formula_weights(*net);
  net->eval();
  check_graph(
      "inception_resnet_v1",
      [&](nn::GraphSink& sink, const std::string& x) {
        return net->describe(sink, x, /*with_classifier=*/false).front();
      },
      [&](const torch::Tensor& x) { return net->forward(x); }, {3, 160, 160});
}

// A flatten-less network has nothing for the LibTorch tail to start from.
TEST(OneDnnGraph, RefusesANetworkWithoutAFlatten) {
  const auto no_flatten = [&](nn::GraphSink& sink, const std::string& x) { return sink.relu(x); };
  EXPECT_THROW(OneDnnGraph(no_flatten, {3, 112, 96}, torch::kFloat32), std::logic_error);
}

}  // namespace
}  // namespace facemag
