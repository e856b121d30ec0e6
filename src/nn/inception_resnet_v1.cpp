#include "facemag/nn/inception_resnet_v1.hpp"

#include <torch/torch.h>

#include <tuple>

#include "facemag/nn/graph.hpp"
#include "facemag/nn/module_utils.hpp"

namespace facemag::nn {
namespace {

using Pair = std::array<std::int64_t, 2>;

torch::Tensor max_pool_3x3_s2(const torch::Tensor& x) {
  return torch::max_pool2d(x, {3, 3}, {2, 2});
}

// A Sequential of BasicConv2d given as (in, out, kernel, stride, padding) rows.
struct ConvSpec {
  std::int64_t in, out;
  Pair kernel;
  std::int64_t stride;
  Pair padding;
};
torch::nn::Sequential convs(std::initializer_list<ConvSpec> specs) {
  torch::nn::Sequential seq;
  for (const auto& s : specs)
    seq->push_back(BasicConv2d(s.in, s.out, s.kernel, s.stride, s.padding));
  return seq;
}

}  // namespace

BasicConv2dImpl::BasicConv2dImpl(std::int64_t in, std::int64_t out, Pair kernel,
                                 std::int64_t stride, Pair padding)
    : stride_(stride), padding_(padding) {
  conv = register_module("conv",
                         torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, {kernel[0], kernel[1]})
                                               .stride(stride)
                                               .padding({padding[0], padding[1]})
                                               .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(0.001)));
}

torch::Tensor BasicConv2dImpl::forward(const torch::Tensor& x) {
  if (folded_weight_.defined()) {
    return torch::conv2d(x, folded_weight_, folded_bias_, stride_, {padding_[0], padding_[1]})
        .relu_();
  }
  return torch::relu(bn(conv(x)));
}

void BasicConv2dImpl::fold_batch_norm() {
  torch::NoGradGuard no_grad;
  std::tie(folded_weight_, folded_bias_) = fold_conv_batch_norm(conv->weight, *bn, torch::kFloat32);
}

InceptionResidualImpl::InceptionResidualImpl(Kind kind, double scale, bool relu)
    : scale_(scale), relu_(relu) {
  std::int64_t channels = 0, concat = 0;
  const auto add = [&](const char* name, auto module) {
    auto registered = register_module(name, module);
    branches_.emplace_back([registered](const torch::Tensor& x) { return registered->forward(x); });
  };
  switch (kind) {
    case Kind::kBlock35:
      channels = 256;
      concat = 96;
      add("branch0", BasicConv2d(256, 32, Pair{1, 1}, 1));
      add("branch1", convs({{256, 32, {1, 1}, 1, {0, 0}}, {32, 32, {3, 3}, 1, {1, 1}}}));
      add("branch2", convs({{256, 32, {1, 1}, 1, {0, 0}},
                            {32, 32, {3, 3}, 1, {1, 1}},
                            {32, 32, {3, 3}, 1, {1, 1}}}));
      break;
    case Kind::kBlock17:
      channels = 896;
      concat = 256;
      add("branch0", BasicConv2d(896, 128, Pair{1, 1}, 1));
      add("branch1", convs({{896, 128, {1, 1}, 1, {0, 0}},
                            {128, 128, {1, 7}, 1, {0, 3}},
                            {128, 128, {7, 1}, 1, {3, 0}}}));
      break;
    case Kind::kBlock8:
      channels = 1792;
      concat = 384;
      add("branch0", BasicConv2d(1792, 192, Pair{1, 1}, 1));
      add("branch1", convs({{1792, 192, {1, 1}, 1, {0, 0}},
                            {192, 192, {1, 3}, 1, {0, 1}},
                            {192, 192, {3, 1}, 1, {1, 0}}}));
      break;
  }
  conv2d_ =
      register_module("conv2d", torch::nn::Conv2d(torch::nn::Conv2dOptions(concat, channels, 1)));
}

torch::Tensor InceptionResidualImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> outs;
  for (const auto& branch : branches_) outs.push_back(branch(x));
  if (folded_weight_.defined()) {
    auto out = torch::conv2d(torch::cat(outs, 1), folded_weight_, folded_bias_).add_(x);
    return relu_ ? out.relu_() : out;
  }
  auto out = conv2d_(torch::cat(outs, 1)) * scale_ + x;
  return relu_ ? torch::relu(out) : out;
}

void InceptionResidualImpl::fold_scale() {
  torch::NoGradGuard no_grad;
  folded_weight_ = (conv2d_->weight.to(torch::kFloat64) * scale_)
                       .to(torch::kFloat32)
                       .contiguous(torch::MemoryFormat::ChannelsLast);
  folded_bias_ = (conv2d_->bias.to(torch::kFloat64) * scale_).to(torch::kFloat32);
}

InceptionReductionImpl::InceptionReductionImpl(Kind kind) {
  const auto add = [&](const char* name, auto module) {
    auto registered = register_module(name, module);
    branches_.emplace_back([registered](const torch::Tensor& x) { return registered->forward(x); });
  };
  if (kind == Kind::kMixed6a) {
    add("branch0", BasicConv2d(256, 384, Pair{3, 3}, 2));
    add("branch1", convs({{256, 192, {1, 1}, 1, {0, 0}},
                          {192, 192, {3, 3}, 1, {1, 1}},
                          {192, 256, {3, 3}, 2, {0, 0}}}));
  } else {
    add("branch0", convs({{896, 256, {1, 1}, 1, {0, 0}}, {256, 384, {3, 3}, 2, {0, 0}}}));
    add("branch1", convs({{896, 256, {1, 1}, 1, {0, 0}}, {256, 256, {3, 3}, 2, {0, 0}}}));
    add("branch2", convs({{896, 256, {1, 1}, 1, {0, 0}},
                          {256, 256, {3, 3}, 1, {1, 1}},
                          {256, 256, {3, 3}, 2, {0, 0}}}));
  }
}

torch::Tensor InceptionReductionImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> outs;
  for (const auto& branch : branches_) outs.push_back(branch(x));
  outs.push_back(max_pool_3x3_s2(x));  // the parameter-free last branch
  return torch::cat(outs, 1);
}

InceptionResnetV1Impl::InceptionResnetV1Impl(std::int64_t num_classes) : num_classes_(num_classes) {
  conv2d_1a_ = register_module("conv2d_1a", BasicConv2d(3, 32, Pair{3, 3}, 2));
  conv2d_2a_ = register_module("conv2d_2a", BasicConv2d(32, 32, Pair{3, 3}, 1));
  conv2d_2b_ = register_module("conv2d_2b", BasicConv2d(32, 64, Pair{3, 3}, 1, Pair{1, 1}));
  conv2d_3b_ = register_module("conv2d_3b", BasicConv2d(64, 80, Pair{1, 1}, 1));
  conv2d_4a_ = register_module("conv2d_4a", BasicConv2d(80, 192, Pair{3, 3}, 1));
  conv2d_4b_ = register_module("conv2d_4b", BasicConv2d(192, 256, Pair{3, 3}, 2));
  using K = InceptionResidualImpl::Kind;
  const auto repeat = [](K kind, double scale, int n) {
    torch::nn::Sequential seq;
    for (int i = 0; i < n; ++i) seq->push_back(InceptionResidual(kind, scale));
    return seq;
  };
  repeat_1_ = register_module("repeat_1", repeat(K::kBlock35, 0.17, 5));
  mixed_6a_ =
      register_module("mixed_6a", InceptionReduction(InceptionReductionImpl::Kind::kMixed6a));
  repeat_2_ = register_module("repeat_2", repeat(K::kBlock17, 0.10, 10));
  mixed_7a_ =
      register_module("mixed_7a", InceptionReduction(InceptionReductionImpl::Kind::kMixed7a));
  repeat_3_ = register_module("repeat_3", repeat(K::kBlock8, 0.20, 5));
  block8_ = register_module("block8", InceptionResidual(K::kBlock8, 1.0, /*relu=*/false));
  last_linear_ = register_module(
      "last_linear", torch::nn::Linear(torch::nn::LinearOptions(1792, 512).bias(false)));
  last_bn_ = register_module("last_bn",
                             torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(512).eps(0.001)));
  if (num_classes > 0) logits_ = register_module("logits", torch::nn::Linear(512, num_classes));
}

void InceptionResnetV1Impl::prepare_inference() {
  for (const auto& module : modules()) {
    if (auto* basic = module->as<BasicConv2dImpl>()) basic->fold_batch_norm();
    if (auto* residual = module->as<InceptionResidualImpl>()) residual->fold_scale();
  }
  prepared_ = true;
}

torch::Tensor InceptionResnetV1Impl::forward(const torch::Tensor& input) {
  const auto x = prepared_ ? input.contiguous(torch::MemoryFormat::ChannelsLast) : input;
  auto y = conv2d_2b_(conv2d_2a_(conv2d_1a_(x)));
  y = conv2d_4b_(conv2d_4a_(conv2d_3b_(max_pool_3x3_s2(y))));
  y = repeat_3_->forward(mixed_7a_(repeat_2_->forward(mixed_6a_(repeat_1_->forward(y)))));
  y = torch::adaptive_avg_pool2d(block8_(y), {1, 1});  // dropout is the identity at inference
  return last_bn_(last_linear_(y.flatten(1)));
}

torch::Tensor InceptionResnetV1Impl::logits(const torch::Tensor& x) {
  TORCH_CHECK(logits_, "this InceptionResnetV1 has no classifier layer");
  return logits_(forward(x));
}

std::string BasicConv2dImpl::describe(GraphSink& sink, const std::string& x) const {
  return sink.relu(sink.conv(x, *conv, *bn));
}

namespace {
// A branch: one BasicConv2d or a Sequential of them.
std::string describe_branch(const torch::nn::Module& branch, GraphSink& sink, std::string x) {
  if (const auto* basic = branch.as<BasicConv2dImpl>()) return basic->describe(sink, x);
  for (const auto& child : branch.children()) x = child->as<BasicConv2dImpl>()->describe(sink, x);
  return x;
}
}  // namespace

std::string InceptionResidualImpl::describe(GraphSink& sink, const std::string& x) const {
  std::vector<std::string> outs;
  for (const auto& child : named_children()) {
    if (child.key() != "conv2d") outs.push_back(describe_branch(*child.value(), sink, x));
  }
  torch::NoGradGuard no_grad;
  // The residual scale folded into the closing convolution, as fold_scale() does.
  const auto weight = (conv2d_->weight.to(torch::kFloat64) * scale_).to(torch::kFloat32);
  const auto bias = (conv2d_->bias.to(torch::kFloat64) * scale_).to(torch::kFloat32);
  const auto out = sink.add(sink.conv(sink.concat(outs), weight, bias, {1, 1}, {0, 0}, 1), x);
  return relu_ ? sink.relu(out) : out;
}

std::string InceptionReductionImpl::describe(GraphSink& sink, const std::string& x) const {
  std::vector<std::string> outs;
  for (const auto& child : children()) outs.push_back(describe_branch(*child, sink, x));
  outs.push_back(sink.max_pool(x, {3, 3}, {2, 2}, /*ceil_mode=*/false));
  return sink.concat(outs);
}

std::vector<std::string> InceptionResnetV1Impl::describe(GraphSink& sink, const std::string& input,
                                                         bool with_classifier) const {
  auto y =
      conv2d_2b_->describe(sink, conv2d_2a_->describe(sink, conv2d_1a_->describe(sink, input)));
  y = sink.max_pool(y, {3, 3}, {2, 2}, /*ceil_mode=*/false);
  y = conv2d_4b_->describe(sink, conv2d_4a_->describe(sink, conv2d_3b_->describe(sink, y)));
  const auto residuals = [&](const torch::nn::Sequential& repeat) {
    for (const auto& block : repeat->children())
      y = block->as<InceptionResidualImpl>()->describe(sink, y);
  };
  residuals(repeat_1_);
  y = mixed_6a_->describe(sink, y);
  residuals(repeat_2_);
  y = mixed_7a_->describe(sink, y);
  residuals(repeat_3_);
  y = sink.flatten(sink.global_average_pool(block8_->describe(sink, y)), /*caffe_order=*/false);
  torch::NoGradGuard no_grad;
  // last_bn folded into last_linear (no bias of its own).
  const auto [scale, shift] = batch_norm_affine(*last_bn_);
  const auto weight =
      (last_linear_->weight.to(torch::kFloat64) * scale.view({-1, 1})).to(torch::kFloat32);
  std::vector<std::string> outputs{sink.linear(y, weight, shift.to(torch::kFloat32))};
  if (with_classifier && logits_)
    outputs.push_back(sink.linear(outputs.front(), logits_->weight, logits_->bias));
  return outputs;
}

}  // namespace facemag::nn
