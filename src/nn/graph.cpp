#include "facemag/nn/graph.hpp"

#include <torch/torch.h>

#include "facemag/nn/module_utils.hpp"

namespace facemag::nn {

namespace {

struct Geometry {
  GraphSink::Pair stride, padding;
  std::int64_t groups;
};

Geometry geometry(const torch::nn::Conv2dImpl& module) {
  const auto& o = module.options;
  const auto& padding = c10::get<torch::ExpandingArray<2>>(o.padding());
  return {{o.stride()->at(0), o.stride()->at(1)}, {padding->at(0), padding->at(1)}, o.groups()};
}

}  // namespace

GraphSink::Value GraphSink::conv(const Value& x, const torch::nn::Conv2dImpl& module) {
  const auto g = geometry(module);
  return conv(x, module.weight, module.options.bias() ? module.bias : torch::Tensor(), g.stride,
              g.padding, g.groups);
}

GraphSink::Value GraphSink::conv(const Value& x, const torch::nn::Conv2dImpl& module,
                                 const torch::nn::BatchNorm2dImpl& bn) {
  torch::NoGradGuard no_grad;
  const auto g = geometry(module);
  auto [weight, bias] = fold_conv_batch_norm(module.weight, bn, torch::kFloat32);
  if (module.options.bias()) {  // the conv's own bias goes through the BatchNorm's scale too
    const auto [scale, shift] = batch_norm_affine(bn);
    bias = (module.bias.to(torch::kFloat64) * scale + shift).to(torch::kFloat32);
  }
  return conv(x, weight, bias, g.stride, g.padding, g.groups);
}

}  // namespace facemag::nn
