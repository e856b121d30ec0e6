#include "facemag/nn/onednn/onednn_graph.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "facemag/error.hpp"
#include "facemag/nn/graph.hpp"

#if FACEMAG_HAVE_ONEDNN
#include "onednn_plan.hpp"
#endif

namespace facemag::nn {

#if FACEMAG_HAVE_ONEDNN

namespace {

using onednn::memory;
using onednn::Slot;

// One operation of a recorded network. Values are node indices; -1 is the network's input.
struct Node {
  enum class Kind {
    kConv,
    kScaleShift,
    kPrelu,
    kRelu,
    kAdd,
    kConcat,
    kMaxPool,
    kGlobalAveragePool,
    kFlatten,
    kLinear,
    kSoftmax
  };
  Kind kind;
  std::vector<int> inputs;
  torch::Tensor weight = {}, bias = {};  // conv, linear; scale_shift: scale, shift; prelu: slopes
  // conv: the weight's sizes, which stay where the weight itself is dropped once oneDNN keeps it
  // (OneDnnGraph::Impl).
  std::vector<std::int64_t> weight_sizes = {};
  GraphSink::Pair stride{1, 1}, padding{0, 0}, kernel{1, 1};
  std::int64_t groups = 1;
  bool flag = false;  // max_pool: ceil mode; flatten: Caffe's order
};
using Kind = Node::Kind;

constexpr int kNetworkInput = -1;

// GraphSink that keeps the operations (convolution weights in the plan's dtype: the bfloat16
// network keeps half the source weights; everything else float32).
class Recorder : public GraphSink {
 public:
  explicit Recorder(torch::ScalarType weight_dtype) : weight_dtype_(weight_dtype) {}

  std::vector<Node> nodes;

  static std::string input_name() { return "input"; }
  int index(const Value& v) const {
    if (v == input_name()) return kNetworkInput;
    return std::stoi(v.substr(1));
  }

  Value conv(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias, Pair stride,
             Pair padding, std::int64_t groups) override {
    Node n{Kind::kConv, {index(x)}};
    n.weight = weight.detach().to(weight_dtype_).contiguous();
    n.weight_sizes = weight.sizes().vec();
    n.bias = bias.defined() ? float32(bias) : torch::zeros({weight.size(0)});
    n.stride = stride;
    n.padding = padding;
    n.groups = groups;
    return push(std::move(n));
  }
  Value scale_shift(const Value& x, const torch::Tensor& scale,
                    const torch::Tensor& shift) override {
    Node n{Kind::kScaleShift, {index(x)}};
    n.weight = float32(scale).flatten();
    n.bias = float32(shift).flatten();
    return push(std::move(n));
  }
  Value prelu(const Value& x, const torch::Tensor& slope) override {
    Node n{Kind::kPrelu, {index(x)}};
    n.weight = float32(slope).flatten();
    return push(std::move(n));
  }
  Value relu(const Value& x) override { return push({Kind::kRelu, {index(x)}}); }
  Value add(const Value& a, const Value& b) override {
    return push({Kind::kAdd, {index(a), index(b)}});
  }
  Value concat(const std::vector<Value>& values) override {
    Node n{Kind::kConcat, {}};
    for (const auto& v : values) n.inputs.push_back(index(v));
    return push(std::move(n));
  }
  Value max_pool(const Value& x, Pair kernel, Pair stride, bool ceil_mode) override {
    Node n{Kind::kMaxPool, {index(x)}};
    n.kernel = kernel;
    n.stride = stride;
    n.flag = ceil_mode;
    return push(std::move(n));
  }
  Value global_average_pool(const Value& x) override {
    return push({Kind::kGlobalAveragePool, {index(x)}});
  }
  Value flatten(const Value& x, bool caffe_order) override {
    Node n{Kind::kFlatten, {index(x)}};
    n.flag = caffe_order;
    return push(std::move(n));
  }
  Value linear(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias) override {
    Node n{Kind::kLinear, {index(x)}};
    n.weight = float32(weight);
    if (bias.defined()) n.bias = float32(bias);
    return push(std::move(n));
  }
  Value softmax(const Value& x) override { return push({Kind::kSoftmax, {index(x)}}); }

 private:
  static torch::Tensor float32(const torch::Tensor& t) {
    return t.detach().to(torch::kFloat32).contiguous();
  }
  Value push(Node n) {
    nodes.push_back(std::move(n));
    auto name = std::to_string(nodes.size() - 1);
    name.insert(name.begin(), '%');
    return name;
  }
  torch::ScalarType weight_dtype_;
};

bool is_spatial(Kind k) { return k != Kind::kFlatten && k != Kind::kLinear && k != Kind::kSoftmax; }

// The recorded network, split at its flatten: nodes [0, split) run on oneDNN and end in
// `boundary` (a 4-D value); the rest run on LibTorch.
struct Graph {
  std::vector<Node> nodes;
  int output = 0, split = 0, boundary = 0;
  std::array<std::int64_t, 3> input_chw{};
  std::vector<memory::dims> shapes = {};  // of nodes [0, split), batch 1
  // The nodes that read each value before the flatten, in order, by at(v); the boundary's end
  // with the flatten (split).
  std::vector<std::vector<int>> readers = {};

  // Index of a value before the flatten in per-value tables: the network input at [split].
  int at(int v) const { return v == kNetworkInput ? split : v; }
  // The last node that reads v (the flatten for the boundary), -1 when none does.
  int last_reader(int v) const {
    const auto& r = readers[at(v)];
    return r.empty() ? -1 : r.back();
  }
  // The node that reads v when exactly one node before the flatten does and nothing else, else -1.
  int sole_reader(int v) const {
    const auto& r = readers[at(v)];
    return r.size() == 1 && r.front() < split ? r.front() : -1;
  }
};

memory::dims pool_padding_r(const Node& node, const memory::dims& in, const memory::dims& out) {
  if (node.kind != Kind::kMaxPool) return {0, 0};
  return {(out[2] - 1) * node.stride[0] + node.kernel[0] - in[2],
          (out[3] - 1) * node.stride[1] + node.kernel[1] - in[3]};
}

// The shape of node's value from its inputs' shapes.
memory::dims output_shape(const Node& node, const std::vector<memory::dims>& in) {
  switch (node.kind) {
    case Kind::kConv:
      return onednn::conv_output_dims(in[0], node.weight_sizes, {node.stride[0], node.stride[1]},
                                      {node.padding[0], node.padding[1]});
    case Kind::kConcat: {
      auto d = in[0];
      d[1] = 0;
      for (const auto& x : in) d[1] += x[1];
      return d;
    }
    case Kind::kGlobalAveragePool:
      return {in[0][0], in[0][1], 1, 1};
    case Kind::kMaxPool: {
      auto out = in[0];
      for (int d = 0; d < 2; ++d) {
        const auto span = in[0][2 + d] - node.kernel[d], stride = node.stride[d];
        auto o = (node.flag ? (span + stride - 1) / stride : span / stride) + 1;
        if (node.flag && (o - 1) * stride >= in[0][2 + d]) --o;  // PyTorch's ceil-mode rule
        out[2 + d] = o;
      }
      return out;
    }
    default:  // elementwise
      return in[0];
  }
}

Graph record(const OneDnnGraph::Describe& describe, std::array<std::int64_t, 3> input_chw,
             torch::ScalarType weight_dtype) {
  torch::NoGradGuard no_grad;
  Recorder recorder(weight_dtype);
  const auto output = describe(recorder, Recorder::input_name());
  Graph g{std::move(recorder.nodes), recorder.index(output), 0, 0, input_chw};
  const int n = static_cast<int>(g.nodes.size());
  g.split = n;
  for (int i = 0; i < n; ++i) {
    if (g.nodes[i].kind == Kind::kFlatten) {
      g.split = i;
      break;
    }
  }
  if (g.split == n || g.output < g.split)
    throw std::logic_error("OneDnnGraph: the network has no flatten before its output");
  g.boundary = g.nodes[g.split].inputs.front();
  for (int i = g.split; i < n; ++i) {
    const auto& node = g.nodes[i];
    if (is_spatial(node.kind) && node.kind != Kind::kRelu)
      throw std::logic_error("OneDnnGraph: a 4-D operation after the flatten");
    for (const int input : node.inputs) {
      if (input < g.split && !(i == g.split && input == g.boundary))
        throw std::logic_error("OneDnnGraph: a value from before the flatten used after it");
    }
  }
  if (g.boundary == kNetworkInput)
    throw std::logic_error("OneDnnGraph: nothing before the flatten");
  const memory::dims input{1, input_chw[0], input_chw[1], input_chw[2]};
  for (int i = 0; i < g.split; ++i) {
    std::vector<memory::dims> in;
    for (const int v : g.nodes[i].inputs) in.push_back(v == kNetworkInput ? input : g.shapes[v]);
    g.shapes.push_back(output_shape(g.nodes[i], in));
  }
  g.readers.resize(g.split + 1);
  for (int i = 0; i < g.split; ++i) {
    for (const int v : g.nodes[i].inputs) g.readers[g.at(v)].push_back(i);
  }
  g.readers[g.at(g.boundary)].push_back(g.split);  // the flatten
  return g;
}

// The plan of one batch size: shapes, fusions and buffers decided while walking the nodes.
class PlanWriter {
 public:
  // int8 (type s8) reads each value's scale from `calibration`. `kept`, if set, is called with
  // a convolution's node once oneDNN keeps its weights in a layout that serves every later plan
  // (onednn::ConvWeights::kept).
  PlanWriter(const Graph& g, memory::data_type type, const Int8Calibration* calibration,
             onednn::PlanBuilder& plan, std::int64_t batch,
             const std::function<void(int node)>& kept = {})
      : g_(g), type_(type), calibration_(calibration), plan_(plan), kept_(kept) {
    const int n = g.split;
    for (auto d : g.shapes) {
      d[0] = batch;
      dims_.push_back(d);
    }
    slot_.assign(n, -1);
    released_.assign(n + 1, false);
    fused_.assign(n, false);
    float_.assign(n, false);
    scale_.assign(n + 1, 1.0f);
    input_dims_ = {batch, g.input_chw[0], g.input_chw[1], g.input_chw[2]};
  }

  void write() {
    // The input: float32 NCHW in the caller's buffer; bfloat16 networks read a converted copy.
    const memory::desc given(input_dims_, memory::data_type::f32, memory::format_tag::nchw);
    input_md_ = given;
    input_slot_ = onednn::kInput;
    if (type_ != memory::data_type::f32) {
      input_md_ = onednn::input_layout(input_dims_, type_);
      input_slot_ = take();
      ++refs_[input_slot_];
      if (int8()) scale_[at(kNetworkInput)] = quantum(calibration_->input);
      plan_.reorder(onednn::kInput, given, input_slot_, input_md_,
                    1.0f / scale_[at(kNetworkInput)]);
    }
    for (int i = 0; i < g_.split; ++i) {
      if (fused_[i]) continue;
      const int last = emit(i);
      release_dead(last);
    }
    const auto& out = dims(g_.boundary);
    plan_.reorder(slot(g_.boundary), md(g_.boundary), onednn::kOutput,
                  memory::desc(out, memory::data_type::f32, memory::format_tag::nchw),
                  scale_[at(g_.boundary)]);
  }

 private:
  int at(int v) const { return g_.at(v); }
  bool int8() const { return type_ == memory::data_type::s8; }
  // The real value of one int8 step for values up to max_abs.
  static float quantum(float max_abs) { return max_abs > 0 ? max_abs / 127.0f : 1.0f; }
  const memory::dims& dims(int v) const { return v == kNetworkInput ? input_dims_ : dims_[v]; }
  memory::desc md(int v) const {
    if (v == kNetworkInput) return input_md_;
    return float_[v] ? onednn::blocked(dims_[v], memory::data_type::f32, type_)
                     : onednn::blocked(dims_[v], type_);
  }
  Slot slot(int v) const { return v == kNetworkInput ? input_slot_ : slot_[v]; }

  Slot take() {
    if (!free_.empty()) {
      const Slot s = free_.back();
      free_.pop_back();
      return s;
    }
    return onednn::kA + buffers_++;
  }
  void assign(int v, Slot s) {
    slot_[v] = s;
    ++refs_[s];
  }
  // Gives back the buffers of values whose last reader ran at or before node `done`.
  void release_dead(int done) {
    for (int v = kNetworkInput; v < g_.split; ++v) {
      const Slot s = slot(v);
      if (s < onednn::kA || released_[at(v)] || g_.last_reader(v) > done) continue;
      released_[at(v)] = true;
      if (--refs_[s] == 0) free_.push_back(s);
    }
  }

  // Emits node i (and what is fused into it); returns the last node index it covers.
  int emit(int i) {
    const Node& node = g_.nodes[i];
    const int x = node.inputs.front();
    switch (node.kind) {
      case Kind::kConv:
        return emit_conv(i, node.weight, node.bias, node.groups);
      case Kind::kScaleShift: {
        if (int8()) {  // a depthwise 1x1 convolution, so that it can requantise
          const auto channels = node.weight.numel();
          return emit_conv(i, node.weight.view({channels, 1, 1, 1}), node.bias, channels);
        }
        const Slot dst = take();
        plan_.affine(node.weight, node.bias, slot(x), dst, md(i));
        assign(i, dst);
        return i;
      }
      case Kind::kPrelu:
      case Kind::kRelu: {
        // In place when nothing reads x afterwards, else on a copy.
        Slot dst = slot(x);
        if (g_.last_reader(x) != i || dst < onednn::kA) {
          dst = take();
          plan_.reorder(slot(x), md(x), dst, md(i));
        }
        const auto slopes =
            node.kind == Kind::kPrelu ? node.weight : torch::zeros({dims_[i][1]});  // ReLU
        plan_.prelu(slopes, dst, md(i));
        assign(i, dst);
        scale_[i] = scale_[at(x)];  // PReLU keeps the int8 scale
        return i;
      }
      case Kind::kAdd: {
        if (int8()) throw std::logic_error("OneDnnGraph: int8 has no unfused residual sum");
        const Slot dst = take();
        plan_.add(slot(node.inputs[0]), slot(node.inputs[1]), dst, md(i));
        assign(i, dst);
        return i;
      }
      case Kind::kConcat: {
        // int8: the result has one scale, the concatenation's own; the convolutions that only it
        // reads already store at that scale (emit_conv), any other source is requantised into a
        // buffer of its own first (a pooled value keeps its input's scale).
        const float scale = int8() ? quantum(calibration_->values.at(i)) : 1.0f;
        std::vector<std::pair<Slot, memory::desc>> sources;
        std::vector<Slot> requantised;
        for (const int v : node.inputs) {
          Slot source = slot(v);
          if (int8() && scale_[at(v)] != scale) {
            source = take();
            requantised.push_back(source);
            plan_.reorder(slot(v), md(v), source, md(v), scale_[at(v)] / scale);
          }
          sources.emplace_back(source, md(v));
        }
        const Slot dst = take();
        plan_.concat(sources, dst, md(i));
        free_.insert(free_.end(), requantised.begin(), requantised.end());
        assign(i, dst);
        scale_[i] = scale;
        return i;
      }
      case Kind::kMaxPool:
      case Kind::kGlobalAveragePool: {
        const auto& in = dims(x);
        const bool global = node.kind == Kind::kGlobalAveragePool;
        const Slot dst = take();
        plan_.pool(
            global ? dnnl::algorithm::pooling_avg_exclude_padding : dnnl::algorithm::pooling_max,
            global ? memory::dims{in[2], in[3]} : memory::dims{node.kernel[0], node.kernel[1]},
            global ? memory::dims{1, 1} : memory::dims{node.stride[0], node.stride[1]},
            pool_padding_r(node, in, dims_[i]), slot(x), md(x), dst, md(i));
        assign(i, dst);
        scale_[i] = scale_[at(x)];  // pooling keeps the int8 scale
        return i;
      }
      default:
        throw std::logic_error("OneDnnGraph: unexpected operation before the flatten");
    }
  }

  // A convolution with what follows it fused: a residual sum (the other operand's buffer becomes
  // the destination when nothing reads that operand afterwards), then a ReLU or PReLU.
  // weight, bias, groups: the node's own, or those of an affine run as a depthwise convolution.
  int emit_conv(int i, torch::Tensor weight, torch::Tensor bias, std::int64_t groups) {
    const Node& node = g_.nodes[i];
    const int x = node.inputs.front();
    onednn::Epilogue epilogue;
    std::vector<int> chain{i};  // values that end up in the destination
    int last = i, summand = -1;
    Slot dst = -1;
    if (const int k = g_.sole_reader(i); k >= 0 && g_.nodes[k].kind == Kind::kAdd) {
      const auto& in = g_.nodes[k].inputs;
      const int other = in[0] == i ? in[1] : in[0];
      if (other != i && other != kNetworkInput && other < i && g_.last_reader(other) == k &&
          slot(other) != slot(x) && dims(other) == dims_[i]) {
        epilogue.accumulate = true;
        summand = other;
        dst = slot(other);
        chain.push_back(k);
        last = k;
      }
    }
    if (const int k = g_.sole_reader(last); k >= 0) {
      const Node& next = g_.nodes[k];
      if (next.kind == Kind::kRelu) {
        epilogue.relu = true;
        chain.push_back(k);
        last = k;
      } else if (next.kind == Kind::kPrelu) {
        epilogue.prelu = next.weight;
        chain.push_back(k);
        last = k;
      }
    }
    if (dst < 0) dst = take();
    float dst_scale = 1.0f;
    // int8: the network's last value straight out of the accumulator in float32 (no rounding of
    // the embedding itself), unless it is a residual sum into an int8 buffer.
    const bool to_float = int8() && !epilogue.accumulate &&
                          std::find(chain.begin(), chain.end(), g_.boundary) != chain.end();
    if (to_float) {
      for (const int v : chain) float_[v] = true;
    }
    if (int8()) {
      // One scale for what the destination holds: the largest of the chain's values (an unfused
      // PReLU reads the value before it from the same buffer); the concatenation's when only a
      // concatenation reads the result, so that it copies the values as they are.
      float max_abs = 0;
      for (const int v : chain) max_abs = std::max(max_abs, calibration_->values.at(v));
      if (const int k = g_.sole_reader(last); k >= 0 && g_.nodes[k].kind == Kind::kConcat)
        max_abs = calibration_->values.at(k);
      dst_scale = to_float ? 1.0f : quantum(max_abs);
      const float input_scale = scale_[at(x)];
      const auto weight_scale =
          (weight.abs().amax({1, 2, 3}) / 127.0f).clamp_min(1e-30f).to(torch::kFloat32);
      weight = (weight / weight_scale.view({-1, 1, 1, 1})).round().to(torch::kChar);
      bias = bias / (weight_scale * input_scale);  // added to the int32 accumulator
      const auto scales = (weight_scale * (input_scale / dst_scale)).contiguous();
      epilogue.output_scales.assign(scales.data_ptr<float>(),
                                    scales.data_ptr<float>() + scales.numel());
      if (summand >= 0) epilogue.sum_scale = scale_[at(summand)] / dst_scale;
    }
    // A dropped weight is undefined: the network refuses to ask for it (ConvWeights::kept).
    onednn::ConvWeights weights{weight.defined() ? weight.sizes().vec() : node.weight_sizes,
                                [weight] { return weight; }};
    if (kept_ && node.kind == Kind::kConv) weights.kept = [this, i] { kept_(i); };
    plan_.conv(weights, bias, {node.stride[0], node.stride[1]}, {node.padding[0], node.padding[1]},
               groups, slot(x), md(x), dst, md(i), epilogue);
    for (const int v : chain) {
      fused_[v] = v != i;
      assign(v, dst);
      scale_[v] = dst_scale;
    }
    return last;
  }

  const Graph& g_;
  memory::data_type type_;
  const Int8Calibration* calibration_;
  onednn::PlanBuilder& plan_;
  const std::function<void(int node)>& kept_;
  std::vector<float> scale_;  // int8: the real value of one step of each value, by at(v)
  std::vector<bool> float_;   // int8: values kept in float32 (the last one)
  memory::dims input_dims_;
  memory::desc input_md_;
  Slot input_slot_ = onednn::kInput;
  std::vector<memory::dims> dims_;
  std::vector<Slot> slot_;
  std::vector<bool> fused_, released_;  // released_: indexed by at(v)
  std::map<Slot, int> refs_;
  std::vector<Slot> free_;
  int buffers_ = 0;
};

}  // namespace

struct OneDnnGraph::Impl {
  // Where the first plan's weight layouts serve every later plan, it is built here and each
  // convolution's recorded weights dropped as soon as oneDNN keeps them: one copy of the weights
  // stays (InceptionResnetV1: 94 MB), not two.
  Impl(Graph g, memory::data_type type, std::optional<Int8Calibration> int8)
      : graph(std::move(g)),
        calibration(std::move(int8)),
        network([this, type](onednn::PlanBuilder& plan, std::int64_t batch) {
          PlanWriter(graph, type, calibration ? &*calibration : nullptr, plan, batch, drop).write();
        }) {
    if (!onednn::first_plan_serves_every_batch(type)) return;
    drop = [this](int node) { graph.nodes[node].weight = torch::Tensor(); };
    network.prepare(1);
  }

  Graph graph;  // conv weights dropped only while a plan is built, under the network's lock
  std::optional<Int8Calibration> calibration;
  std::function<void(int node)> drop;  // empty: the recorded weights are kept
  onednn::Network network;
};

// Records, for every stored value, the `percentile` of its magnitudes in each batch (the largest
// for 100), keeping the largest over the batches. Each value is freed after its last reader in
// `g` (keeping them all, calibrating iResNet100 on batches of 16 peaked at 2.9 GB; now 1.6 GB).
class RangeRecorder : public TorchEvaluator {
 public:
  RangeRecorder(Int8Calibration& out, double percentile, const Graph& g)
      : out_(out), percentile_(percentile), g_(g) {}

 protected:
  torch::Tensor stored(const torch::Tensor& value, int node) override {
    const auto magnitudes = value.abs().flatten();
    const auto n = magnitudes.numel();
    const auto k = std::clamp<std::int64_t>(
        static_cast<std::int64_t>(std::ceil(percentile_ / 100.0 * static_cast<double>(n))), 1, n);
    const float m =
        k == n ? magnitudes.max().item<float>() : std::get<0>(magnitudes.kthvalue(k)).item<float>();
    if (node < 0) {
      out_.input = std::max(out_.input, m);
    } else {
      if (out_.values.size() <= static_cast<std::size_t>(node)) out_.values.resize(node + 1, 0.0f);
      out_.values[node] = std::max(out_.values[node], m);
      for (const int v : g_.nodes[node].inputs) {
        if (g_.last_reader(v) == node) forget(v);
      }
    }
    return value;
  }

 private:
  Int8Calibration& out_;
  double percentile_;
  const Graph& g_;
};

bool OneDnnGraph::available(torch::ScalarType dtype) { return onednn::runs(dtype); }

OneDnnGraph::OneDnnGraph(Describe describe, std::array<std::int64_t, 3> input_chw,
                         torch::ScalarType dtype) {
  require(dtype);
  auto graph = record(describe, input_chw, dtype);
  describe = nullptr;  // before the first plan's weights are made
  impl_ = std::make_unique<Impl>(std::move(graph), onednn::data_type(dtype), std::nullopt);
}

OneDnnGraph::OneDnnGraph(Describe describe, std::array<std::int64_t, 3> input_chw,
                         const Int8Calibration& calibration) {
  require(torch::kChar);
  auto graph = record(describe, input_chw, torch::kFloat32);
  describe = nullptr;
  if (calibration.values.size() < static_cast<std::size_t>(graph.split) || calibration.input <= 0)
    throw InvalidInput("an int8 calibration of " + std::to_string(calibration.values.size()) +
                       " values does not fit this network (" + std::to_string(graph.split) +
                       " operations before its flatten)");
  impl_ = std::make_unique<Impl>(std::move(graph), memory::data_type::s8, calibration);
}

Int8Calibration OneDnnGraph::calibrate(const Describe& describe,
                                       const std::vector<torch::Tensor>& batches,
                                       double percentile) {
  if (!(percentile > 0 && percentile <= 100))
    throw InvalidInput("int8 calibration percentile must be in (0, 100], not " +
                       std::to_string(percentile));
  if (batches.empty()) throw InvalidInput("int8 calibration needs at least one batch");
  if (batches.front().dim() != 4)
    throw InvalidInput("int8 calibration batches must be N x C x H x W, got " +
                       std::string(c10::str(batches.front().sizes())));
  torch::NoGradGuard no_grad;
  const auto& shape = batches.front().sizes();
  auto graph = record(describe, {shape[1], shape[2], shape[3]}, torch::kFloat32);
  for (auto& node : graph.nodes) node.weight = node.bias = torch::Tensor();  // structure only
  Int8Calibration out;
  out.percentile = percentile;
  for (const auto& batch : batches) {
    RangeRecorder recorder(out, percentile, graph);
    describe(recorder, recorder.input(batch));
    out.faces += batch.size(0);
  }
  // A value that only a concatenation reads is stored at the concatenation's scale (see
  // Int8Calibration): its range becomes the concatenation's.
  for (int i = 0; i < graph.split; ++i) {
    if (graph.nodes[i].kind != Kind::kConcat) continue;
    for (const int v : graph.nodes[i].inputs) {
      if (v != kNetworkInput && graph.sole_reader(v) == i) out.values[v] = out.values[i];
    }
  }
  return out;
}

torch::Tensor OneDnnGraph::forward(const torch::Tensor& x) const {
  const auto& g = impl_->graph;
  const auto& chw = g.input_chw;
  if (x.dim() != 4 || x.size(1) != chw[0] || x.size(2) != chw[1] || x.size(3) != chw[2]) {
    throw InvalidInput("network input must be N x " + std::to_string(chw[0]) + " x " +
                       std::to_string(chw[1]) + " x " + std::to_string(chw[2]) + ", got " +
                       std::string(c10::str(x.sizes())));
  }
  torch::NoGradGuard no_grad;
  const auto batch = x.size(0);
  const auto input = x.to(torch::kFloat32).contiguous();
  const auto& out_dims = g.shapes[g.boundary];
  auto boundary = torch::empty({batch, out_dims[1], out_dims[2], out_dims[3]});
  impl_->network.run(batch, input.data_ptr<float>(), boundary.data_ptr<float>());
  // The LibTorch tail: flatten, Linear layers, softmax, ReLU.
  std::map<int, torch::Tensor> values{{g.boundary, boundary}};
  for (int i = g.split; i < static_cast<int>(g.nodes.size()); ++i) {
    const Node& node = g.nodes[i];
    const auto& in = values.at(node.inputs.front());
    switch (node.kind) {
      case Kind::kFlatten:
        values[i] =
            node.flag ? in.permute({0, 3, 2, 1}).reshape({batch, -1}) : in.reshape({batch, -1});
        break;
      case Kind::kLinear:
        values[i] = node.bias.defined() ? torch::addmm(node.bias, in, node.weight.t())
                                        : torch::mm(in, node.weight.t());
        break;
      case Kind::kSoftmax:
        values[i] = torch::softmax(in, 1);
        break;
      case Kind::kRelu:
        values[i] = torch::relu(in);
        break;
      default:
        throw std::logic_error("OneDnnGraph: unexpected operation after the flatten");
    }
  }
  return values.at(g.output);
}

#else  // no oneDNN in this build

struct OneDnnGraph::Impl {};

bool OneDnnGraph::available(torch::ScalarType) { return false; }

OneDnnGraph::OneDnnGraph(Describe, std::array<std::int64_t, 3>, torch::ScalarType) {
  throw std::logic_error("facemag was built without oneDNN (libdnnl-dev): no OneDnnGraph");
}

OneDnnGraph::OneDnnGraph(Describe, std::array<std::int64_t, 3>, const Int8Calibration&) {
  throw std::logic_error("facemag was built without oneDNN (libdnnl-dev): no OneDnnGraph");
}

Int8Calibration OneDnnGraph::calibrate(const Describe&, const std::vector<torch::Tensor>&, double) {
  throw std::logic_error("facemag was built without oneDNN (libdnnl-dev): no OneDnnGraph");
}

torch::Tensor OneDnnGraph::forward(const torch::Tensor&) const { return {}; }

#endif

void OneDnnGraph::require(torch::ScalarType dtype) {
  if (available(dtype)) return;
  const bool build = available(torch::kFloat32);  // false: no oneDNN in this build
  const std::string lacking = build ? "this CPU lacks" : "this build lacks (no libdnnl-dev)";
  if (dtype == torch::kBFloat16)
    throw InvalidInput("--precision bf16 runs on oneDNN with AVX-512, which " + lacking +
                       ": use fp32");
  if (dtype == torch::kChar) {
    throw InvalidInput(
        std::string(build ? "--precision int8 needs a CPU with VNNI (AVX512-VNNI, AVX-VNNI or "
                            "AMX-INT8), which this one lacks"
                          : "--precision int8 runs on oneDNN, which " + lacking) +
        ": use " + (available(torch::kBFloat16) ? "bf16 or fp32" : "fp32"));
  }
  throw InvalidInput(std::string("networks on oneDNN in ") + c10::toString(dtype) +
                     " are not available: " + lacking + " oneDNN");
}

void OneDnnGraph::require_of_this_cpu(torch::ScalarType dtype) {
  if (available(torch::kFloat32)) require(dtype);
}

OneDnnGraph::~OneDnnGraph() = default;

}  // namespace facemag::nn
