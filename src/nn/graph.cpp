#include "facemag/nn/graph.hpp"

#include <torch/torch.h>

#include <algorithm>

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

// Values are named by their position in values_; the input is stored as node -1.
GraphSink::Value TorchEvaluator::input(const torch::Tensor& x) {
  stored_at_.resize(std::max<std::size_t>(stored_at_.size(), 1));
  stored_at_[0] = values_.size();
  return keep(stored(x.to(torch::kFloat32), -1));
}

GraphSink::Value TorchEvaluator::store(const torch::Tensor& t) {
  stored_at_.resize(static_cast<std::size_t>(operations_) + 2);
  stored_at_[operations_ + 1] = values_.size();
  return keep(stored(t, operations_));
}

void TorchEvaluator::forget(int node) { values_.at(stored_at_.at(node + 1)) = torch::Tensor(); }

const torch::Tensor& TorchEvaluator::value(const Value& v) const {
  return values_.at(std::stoul(v));
}

GraphSink::Value TorchEvaluator::keep(torch::Tensor t) {
  values_.push_back(std::move(t));
  return std::to_string(values_.size() - 1);
}

namespace {
torch::Tensor channels(const torch::Tensor& t) {
  return t.to(torch::kFloat32).reshape({1, -1, 1, 1});
}
}  // namespace

GraphSink::Value TorchEvaluator::conv(const Value& x, const torch::Tensor& weight,
                                      const torch::Tensor& bias, Pair stride, Pair padding,
                                      std::int64_t groups) {
  auto y = torch::conv2d(at(x), conv_weights(weight.to(torch::kFloat32)),
                         bias.defined() ? bias.to(torch::kFloat32) : torch::Tensor(),
                         {stride[0], stride[1]}, {padding[0], padding[1]}, {1, 1}, groups);
  const auto v = store(y);
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::scale_shift(const Value& x, const torch::Tensor& scale,
                                             const torch::Tensor& shift) {
  const auto v = store(at(x) * channels(scale) + channels(shift));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::prelu(const Value& x, const torch::Tensor& slope) {
  const auto v = store(torch::prelu(at(x), slope.to(torch::kFloat32).flatten()));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::relu(const Value& x) {
  const auto v = at(x).dim() == 4 ? store(torch::relu(at(x))) : keep(torch::relu(at(x)));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::add(const Value& a, const Value& b) {
  const auto v = store(at(a) + at(b));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::concat(const std::vector<Value>& values) {
  std::vector<torch::Tensor> parts;
  for (const auto& v : values) parts.push_back(at(v));
  const auto v = store(torch::cat(parts, 1));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::max_pool(const Value& x, Pair kernel, Pair stride,
                                          bool ceil_mode) {
  const auto v = store(torch::max_pool2d(at(x), {kernel[0], kernel[1]}, {stride[0], stride[1]},
                                         {0, 0}, {1, 1}, ceil_mode));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::global_average_pool(const Value& x) {
  const auto v = store(torch::adaptive_avg_pool2d(at(x), {1, 1}));
  ++operations_;
  return v;
}

GraphSink::Value TorchEvaluator::flatten(const Value& x, bool caffe_order) {
  const auto& t = at(x);
  ++operations_;
  return keep(caffe_order ? t.permute({0, 3, 2, 1}).reshape({t.size(0), -1})
                          : t.reshape({t.size(0), -1}));
}

GraphSink::Value TorchEvaluator::linear(const Value& x, const torch::Tensor& weight,
                                        const torch::Tensor& bias) {
  auto y = torch::mm(at(x), weight.to(torch::kFloat32).t());
  ++operations_;
  return keep(bias.defined() ? y + bias.to(torch::kFloat32) : y);
}

GraphSink::Value TorchEvaluator::softmax(const Value& x) {
  ++operations_;
  return keep(torch::softmax(at(x), 1));
}

}  // namespace facemag::nn
