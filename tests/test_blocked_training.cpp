// The blocked training layers (oneDNN's 16- or 8-channel blocks) against LibTorch's own layers:
// every output and gradient of the blocked float32 computation is held to the error of LibTorch's
// float32 computation, both measured against LibTorch in float64 (the independent reference).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "facemag/error.hpp"
#include "facemag/model/manifest.hpp"
#include "facemag/model/network.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/blocked_training.hpp"
#include "facemag/train/collective.hpp"
#include "facemag/train/trainer.hpp"

namespace facemag {
namespace {

namespace blocked = nn::blocked;

double relative_error(const torch::Tensor& a, const torch::Tensor& reference) {
  const auto r = reference.to(torch::kFloat64);
  return (a.to(torch::kFloat64) - r).norm().item<double>() /
         std::max(r.norm().item<double>(), 1e-300);
}

// Bounds, as multiples of LibTorch float32's distance from float64 (plus 1e-6 for results it
// happens to get almost exact): direct kernels and double-accumulated BatchNorm round no worse
// than LibTorch (measured 0.1-1.1x; oneDNN's direct kernels are LibTorch's, 1.0x); Winograd
// F(4x4, 3x3) rounds up to an order of magnitude worse than direct convolution in float32 (its
// transforms multiply values by up to 8; measured here 1.5-3.4x). facemag's F(2x2, 3x3) (AVX2, 128
// channels or more) only adds in its transforms: measured on a Zen 3 over eight shapes, 0.4-0.6x
// for outputs, 0.3-0.8x for weight gradients and 1.2-2.2x for input gradients (LibTorch's direct
// data gradient rounds unusually well, relative error 2.2-3.1e-7 against 5.6e-7-1.1e-6 forward;
// F(2x2)'s is 2.5-5.0e-7 in every direction), hence 3. Over a whole training step of direct
// kernels two float32 computations drift apart further: measured on AVX2 (Zen 3) up to 1.7x for
// gradients and 2.0x for running means, hence 3 (with F(2x2) layers: 1.2x at most).
constexpr double kDirectFactor = 2.0;
constexpr double kDirectStepFactor = 3.0;
constexpr double kWinogradFactor = 10.0;
constexpr double kWinograd2x2Factor = 3.0;

// 3x3 stride-1 convolutions from `in` to `out` channels are held to their algorithm's bound.
double stride_one_factor(std::int64_t in, std::int64_t out, double direct) {
  switch (blocked::stride_one_algorithm(in, out)) {
    case blocked::StrideOneAlgorithm::kWinograd4x4:
      return kWinogradFactor;
    case blocked::StrideOneAlgorithm::kWinograd2x2:
      return std::max(direct, kWinograd2x2Factor);
    case blocked::StrideOneAlgorithm::kDirect:
      break;
  }
  return direct;
}

void expect_as_accurate(const std::string& what, const torch::Tensor& blocked_result,
                        const torch::Tensor& float32_result, const torch::Tensor& float64_result,
                        double factor) {
  const double ours = relative_error(blocked_result, float64_result);
  const double theirs = relative_error(float32_result, float64_result);
  EXPECT_LE(ours, factor * theirs + 1e-6)
      << what << ": blocked " << ours << ", LibTorch " << theirs;
}

#define SKIP_WITHOUT_BLOCKED() \
  if (!blocked::available())   \
  GTEST_SKIP() << "blocked training needs oneDNN and AVX2 (not on this machine/build)"

TEST(BlockedTraining, LayoutRoundTrips) {
  const auto x = torch::randn({2, 32, 5, 3});
  const auto b = blocked::from_nchw(x);
  const std::int64_t width = blocked::block_width();
  ASSERT_EQ(b.sizes(), (std::vector<std::int64_t>{2, 32 / width, 5, 3, width}));
  EXPECT_EQ(b[1][19 / width][4][2][19 % width].item<float>(), x[1][19][4][2].item<float>());
  EXPECT_TRUE(torch::equal(blocked::to_nchw(b), x));
  try {
    blocked::from_nchw(torch::zeros({4, 3, 2, 2}));
    FAIL() << "3 channels went into " << width << "-channel blocks";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("got [4, 3, 2, 2]"), std::string::npos) << e.what();
  }
  // oneDNN 2.6 has Winograd training kernels for AVX-512 only, where blocks are 16 wide; on AVX2
  // facemag's F(2x2, 3x3) takes 3x3 stride-1 convolutions of 128 channels or more.
  using Algorithm = blocked::StrideOneAlgorithm;
  const bool avx512 = blocked::available() && width == 16, avx2 = blocked::available() && !avx512;
  EXPECT_EQ(blocked::stride_one_algorithm(64, 64),
            avx512 ? Algorithm::kWinograd4x4 : Algorithm::kDirect);
  EXPECT_EQ(blocked::stride_one_algorithm(64, 128),
            avx512 ? Algorithm::kWinograd4x4 : Algorithm::kDirect);
  EXPECT_EQ(blocked::stride_one_algorithm(256, 128), avx512 ? Algorithm::kWinograd4x4
                                                     : avx2 ? Algorithm::kWinograd2x2
                                                            : Algorithm::kDirect);
}

TEST(BlockedTraining, BatchNormMatchesLibTorch) {
  SKIP_WITHOUT_BLOCKED();
  torch::manual_seed(1);
  const auto x = torch::randn({8, 32, 56, 56}) * 3 + 1.5;
  const auto dy = torch::randn_like(x);
  auto make = [](torch::ScalarType dtype) {
    torch::nn::BatchNorm2d bn(torch::nn::BatchNorm2dOptions(32).eps(2e-5).momentum(0.9));
    torch::NoGradGuard no_grad;
    bn->weight.copy_(torch::linspace(0.5, 1.5, 32));
    bn->bias.copy_(torch::linspace(-0.2, 0.3, 32));
    bn->running_mean.fill_(0.25);
    bn->running_var.fill_(2.0);
    bn->to(dtype);
    return bn;
  };
  auto reference = make(torch::kFloat64), plain = make(torch::kFloat32),
       ours = make(torch::kFloat32);
  const auto x64 = x.to(torch::kFloat64).requires_grad_();
  const auto y64 = reference->forward(x64);
  (y64 * dy.to(torch::kFloat64)).sum().backward();
  const auto x32 = x.clone().requires_grad_();
  const auto y32 = plain->forward(x32);
  (y32 * dy).sum().backward();
  const auto xb = blocked::from_nchw(x).requires_grad_();
  const auto yb = blocked::batch_norm(xb, *ours);
  (yb * blocked::from_nchw(dy)).sum().backward();

  expect_as_accurate("output", blocked::to_nchw(yb), y32, y64, kDirectFactor);
  expect_as_accurate("input gradient", blocked::to_nchw(xb.grad()), x32.grad(), x64.grad(),
                     kDirectFactor);
  expect_as_accurate("weight gradient", ours->weight.grad(), plain->weight.grad(),
                     reference->weight.grad(), kDirectFactor);
  expect_as_accurate("bias gradient", ours->bias.grad(), plain->bias.grad(), reference->bias.grad(),
                     kDirectFactor);
  expect_as_accurate("running mean", ours->running_mean, plain->running_mean,
                     reference->running_mean, kDirectFactor);
  expect_as_accurate("running variance", ours->running_var, plain->running_var,
                     reference->running_var, kDirectFactor);
  EXPECT_EQ(ours->num_batches_tracked.item<std::int64_t>(), 1);

  // Eval mode: the running statistics, gradients still reaching scale and shift.
  ours->eval();
  plain->eval();
  reference->eval();
  expect_as_accurate("eval output",
                     blocked::to_nchw(blocked::batch_norm(blocked::from_nchw(x), *ours)),
                     plain->forward(x), reference->forward(x.to(torch::kFloat64)), kDirectFactor);
}

// One convolution of each kind: 3x3 stride 1 at 64 channels (Winograd F(4x4) where oneDNN has it,
// else direct) and from 128 and 256 channels (on AVX2 facemag's F(2x2): odd sizes leave tiles half
// outside; 27x27 takes 4 images per product, so 6 make a full and a partial group), 3x3 stride 2
// and 1x1 stride 2 (direct), and the 3-channel image input; forward and both gradients.
TEST(BlockedTraining, ConvolutionMatchesLibTorch) {
  SKIP_WITHOUT_BLOCKED();
  struct Case {
    std::int64_t in, out, size, kernel, stride;
    double factor;
    std::int64_t batch = 8;
  };
  for (const Case c : {Case{64, 64, 56, 3, 1, stride_one_factor(64, 64, kDirectFactor)},
                       Case{256, 256, 7, 3, 1, stride_one_factor(256, 256, kDirectFactor), 12},
                       Case{128, 256, 27, 3, 1, stride_one_factor(128, 256, kDirectFactor), 6},
                       Case{32, 48, 20, 3, 2, kDirectFactor}, Case{32, 64, 20, 1, 2, kDirectFactor},
                       Case{3, 64, 24, 3, 1, kDirectFactor}}) {
    SCOPED_TRACE("in " + std::to_string(c.in) + " batch " + std::to_string(c.batch) + " kernel " +
                 std::to_string(c.kernel) + " stride " + std::to_string(c.stride));
    torch::manual_seed(c.in + c.kernel + c.stride);
    const auto x = torch::randn({c.batch, c.in, c.size, c.size});
    const auto w = torch::randn({c.out, c.in, c.kernel, c.kernel}) / (c.in * c.kernel);
    const std::int64_t padding = c.kernel / 2;
    const auto x64 = x.to(torch::kFloat64).requires_grad_(c.in >= 16);
    const auto w64 = w.to(torch::kFloat64).requires_grad_();
    const auto y64 = torch::conv2d(x64, w64, {}, c.stride, padding);
    const auto dy = torch::randn(y64.sizes());
    (y64 * dy.to(torch::kFloat64)).sum().backward();
    const auto x32 = x.clone().requires_grad_(c.in >= 16);
    const auto w32 = w.clone().requires_grad_();
    const auto y32 = torch::conv2d(x32, w32, {}, c.stride, padding);
    (y32 * dy).sum().backward();
    const auto xb = (c.in >= 16 ? blocked::from_nchw(x) : x.clone()).requires_grad_(c.in >= 16);
    const auto wb = w.clone().requires_grad_();
    const auto yb = blocked::conv2d(xb, wb, c.stride, padding);
    (yb * blocked::from_nchw(dy)).sum().backward();
    expect_as_accurate("output", blocked::to_nchw(yb), y32, y64, c.factor);
    expect_as_accurate("weight gradient", wb.grad(), w32.grad(), w64.grad(), c.factor);
    if (c.in >= 16)
      expect_as_accurate("input gradient", blocked::to_nchw(xb.grad()), x32.grad(), x64.grad(),
                         c.factor);
  }
}

TEST(BlockedTraining, PReluMatchesLibTorch) {
  torch::manual_seed(5);
  const auto x = torch::randn({3, 32, 6, 5});
  const auto slope = torch::linspace(-0.3, 0.6, 32);
  const auto dy = torch::randn_like(x);
  const auto x64 = x.to(torch::kFloat64).requires_grad_();
  const auto s64 = slope.to(torch::kFloat64).requires_grad_();
  (torch::prelu(x64, s64) * dy.to(torch::kFloat64)).sum().backward();
  const auto x32 = x.clone().requires_grad_();
  const auto s32 = slope.clone().requires_grad_();
  const auto y32 = torch::prelu(x32, s32);
  (y32 * dy).sum().backward();
  const auto xb = blocked::from_nchw(x).requires_grad_();
  const auto sb = slope.clone().requires_grad_();
  const auto yb = blocked::prelu(xb, sb);
  (yb * blocked::from_nchw(dy)).sum().backward();
  EXPECT_TRUE(torch::equal(blocked::to_nchw(yb), y32));  // one multiply per value either way
  EXPECT_TRUE(torch::equal(blocked::to_nchw(xb.grad()), x32.grad()));
  expect_as_accurate("slope gradient", sb.grad(), s32.grad(), s64.grad(), kDirectFactor);
}
}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

// iResNet-18 trained one step both ways: forward_blocked's embeddings, every parameter's
// gradient and every running statistic against forward()'s, both against forward() in float64.
TEST(BlockedTraining, IResNetStepMatchesLibTorch) {
  SKIP_WITHOUT_BLOCKED();
  auto make = [](torch::ScalarType dtype) {
    nn::IResNet net(nn::IResNetDepth::k18);
    nn::fill_formula_weights(*net);
    net->dropout->options.p(0.0);
    net->to(dtype);
    net->train();
    return net;
  };
  auto reference = make(torch::kFloat64), plain = make(torch::kFloat32),
       ours = make(torch::kFloat32);
  torch::manual_seed(3);
  const auto images = torch::rand({8, 3, 112, 112});
  const auto direction = torch::randn({8, 512});
  const auto e64 = reference->forward(images.to(torch::kFloat64));
  (e64 * direction.to(torch::kFloat64)).sum().backward();
  const auto e32 = plain->forward(images);
  (e32 * direction).sum().backward();
  const auto eb = ours->forward_blocked(images);
  (eb * direction).sum().backward();

  const double factor = std::max(stride_one_factor(64, 64, kDirectStepFactor),
                                 stride_one_factor(256, 256, kDirectStepFactor));
  expect_as_accurate("embeddings", eb, e32, e64, factor);
  const auto p64 = reference->named_parameters(), p32 = plain->named_parameters();
  for (const auto& item : ours->named_parameters()) {
    const auto& name = item.key();
    expect_as_accurate(name + " gradient", item.value().grad(), p32[name].grad(), p64[name].grad(),
                       factor);
  }
  const auto b64 = reference->named_buffers(), b32 = plain->named_buffers();
  for (const auto& item : ours->named_buffers()) {
    const auto& name = item.key();
    if (name.ends_with("num_batches_tracked")) {
      EXPECT_EQ(item.value().item<std::int64_t>(), 1) << name;
    } else {
      expect_as_accurate(name, item.value(), b32[name], b64[name], factor);
    }
  }
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

// The trainer in blocks: a few SGD steps on one batch lower the loss as the NCHW trainer's do,
// and the layout is refused, naming why, for what it does not cover.
TEST(BlockedTraining, TrainerLearnsAndRefusesOtherNetworks) {
  SKIP_WITHOUT_BLOCKED();
  const auto run = [](train::ActivationLayout layout) {
    train::TrainerOptions options;
    options.manifest = builtin_manifest("iresnet18");
    options.num_classes = 4;
    options.layout = layout;
    options.dropout = 0.0;
    auto network = build_network(options.manifest);
    nn::fill_formula_weights(*network.module);
    auto single = train::single_process_collective();
    train::Trainer trainer(options, network, *single);
    torch::manual_seed(7);
    const auto images = torch::rand({8, 3, 112, 112});
    const auto labels = torch::tensor({0, 1, 2, 3, 0, 1, 2, 3}, torch::kInt64);
    std::vector<double> losses;
    for (int step = 0; step < 4; ++step) losses.push_back(trainer.step(images, labels, 0.01).loss);
    return losses;
  };
  const auto blocked_losses = run(train::ActivationLayout::kBlocked);
  const auto nchw_losses = run(train::ActivationLayout::kNchw);
  EXPECT_LT(blocked_losses.back(), blocked_losses.front());
  // The first loss is the forward alone: embeddings within 1e-5 relative (IResNetStep's bound, 10x
  // LibTorch's 1.1e-6), through a softmax of cosines scaled by 64: 1e-4 of the loss at most.
  EXPECT_NEAR(blocked_losses.front(), nchw_losses.front(), 1e-4 * nchw_losses.front());
  // Later steps only coarsely: rounding differences grow with each update (as in the goldens).
  for (std::size_t i = 0; i < nchw_losses.size(); ++i)
    EXPECT_NEAR(blocked_losses[i], nchw_losses[i], 0.05 * nchw_losses[i]) << "step " << i;

  train::TrainerOptions other;
  other.manifest = builtin_manifest("mobilefacenet");
  other.num_classes = 4;
  other.layout = train::ActivationLayout::kBlocked;
  auto single = train::single_process_collective();
  try {
    train::Trainer trainer(other, build_network(other.manifest), *single);
    FAIL() << "the blocked layout accepted MobileFaceNet";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("mobilefacenet"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace facemag
