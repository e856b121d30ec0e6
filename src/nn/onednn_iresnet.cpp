#include "facemag/nn/onednn_iresnet.hpp"

#include <torch/torch.h>

#include <stdexcept>

#include "facemag/error.hpp"
#include "facemag/nn/iresnet.hpp"

#if FACEMAG_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <list>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#endif

namespace facemag::nn {

#if FACEMAG_HAVE_ONEDNN

namespace {

using dnnl::memory;
using DataType = memory::data_type;
using Tag = memory::format_tag;

// The buffers of one forward call; a plan refers to them by slot.
enum Slot : int { kInput, kA, kB, kC, kOutput, kSlotCount };

constexpr std::size_t kPlansKept = 3;  // batch sizes whose primitives stay compiled

memory::dims dims_of(const torch::Tensor& t) { return {t.sizes().begin(), t.sizes().end()}; }

// A float32 tensor seen in place by oneDNN (the tensor must outlive the memory object).
memory view(const torch::Tensor& t, const memory::dims& dims, Tag tag, const dnnl::engine& engine) {
  return memory({dims, DataType::f32, tag}, engine, t.data_ptr<float>());
}

// Every primitive takes its scratchpad from the caller's buffer, so concurrent calls never share.
dnnl::primitive_attr attributes(const dnnl::post_ops& ops = dnnl::post_ops()) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(ops);
  return attr;
}

memory::desc blocked(const memory::dims& dims) {
  return memory::desc(dims, DataType::f32, Tag::nChw16c);
}

std::size_t round_up(std::size_t bytes) { return (bytes + 63) / 64 * 64; }

// `source` in `layout`: source itself when it already is, else a reordered copy.
memory in_layout(memory source, const memory::desc& layout, const dnnl::engine& engine) {
  if (source.get_desc() == layout) return source;
  memory target(layout, engine);
  dnnl::stream stream(engine);
  dnnl::reorder(source, target).execute(stream, source, target);
  stream.wait();
  return target;
}

}  // namespace

struct OneDnnIResNet::Impl {
  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, memory> constant_args;
    std::vector<std::tuple<int, Slot, memory::desc>> activation_args;  // DNNL_ARG_*, buffer, layout
  };
  struct Plan {
    std::int64_t batch = 0;
    std::vector<Step> steps;
    std::vector<torch::Tensor> constants;  // what constant_args point into
    std::size_t activation_bytes = 0;      // size of each of kA, kB, kC
    std::size_t scratchpad_bytes = 0;
  };

  explicit Impl(const IResNetImpl& net) : folded(net, torch::kFloat32) {}

  std::shared_ptr<const Plan> plan_for(std::int64_t batch) const;
  std::shared_ptr<const Plan> build(std::int64_t batch) const;  // under `mutex`
  memory weights_in(int conv_index, const torch::Tensor& weight, const memory::desc& layout) const;

  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  FoldedIResNet folded;
  mutable std::mutex mutex;
  mutable std::list<std::shared_ptr<const Plan>> plans;  // most recently used first
  // Each convolution's weights in every layout a plan has asked for (few: oneDNN's Winograd
  // layouts differ between small and large batches only).
  mutable std::map<int, std::vector<memory>> weights;
};

std::shared_ptr<const OneDnnIResNet::Impl::Plan> OneDnnIResNet::Impl::plan_for(
    std::int64_t batch) const {
  std::lock_guard lock(mutex);
  for (auto it = plans.begin(); it != plans.end(); ++it) {
    if ((*it)->batch == batch) {
      plans.splice(plans.begin(), plans, it);
      return plans.front();
    }
  }
  plans.push_front(build(batch));
  if (plans.size() > kPlansKept) plans.pop_back();
  return plans.front();
}

memory OneDnnIResNet::Impl::weights_in(int conv_index, const torch::Tensor& weight,
                                       const memory::desc& layout) const {
  auto& kept = weights[conv_index];
  for (const auto& m : kept) {
    if (m.get_desc() == layout) return m;
  }
  // oneDNN reorders into its Winograd layouts from plain O x I x kh x kw only.
  const auto plain = weight.contiguous();
  kept.push_back(in_layout(view(plain, dims_of(plain), Tag::oihw, engine), layout, engine));
  return kept.back();
}

std::shared_ptr<const OneDnnIResNet::Impl::Plan> OneDnnIResNet::Impl::build(
    std::int64_t batch) const {
  auto plan = std::make_shared<Plan>();
  plan->batch = batch;
  int conv_index = 0;
  auto note_sizes = [&](const auto& pd, const memory::desc& dst) {
    plan->scratchpad_bytes = std::max(plan->scratchpad_bytes, pd.scratchpad_desc().get_size());
    plan->activation_bytes = std::max(plan->activation_bytes, round_up(dst.get_size()));
  };

  // dst = conv(src) + bias (+ dst's previous content when accumulate: the residual addition).
  auto add_conv = [&](const FoldedIResNet::Conv& c, Slot src, const memory::desc& src_md, Slot dst,
                      const memory::desc& dst_md, bool accumulate) {
    const auto weight_dims = dims_of(c.weight);
    const memory::dims strides{c.stride, c.stride}, padding{c.padding, c.padding};
    dnnl::post_ops ops;
    if (accumulate) ops.append_sum(1.0f);
    const memory::desc any_weights(weight_dims, DataType::f32, Tag::any);
    const memory::desc bias_md({weight_dims[0]}, DataType::f32, Tag::a);
    // oneDNN's implementation iterator points into these descriptions: they outlive it.
    auto describe = [&](dnnl::algorithm algorithm) {
      return dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, algorithm, src_md,
                                             any_weights, bias_md, dst_md, strides, padding,
                                             padding);
    };
    const auto winograd = describe(dnnl::algorithm::convolution_winograd);
    const auto direct = describe(dnnl::algorithm::convolution_direct);
    const auto attr = attributes(ops);
    dnnl::convolution_forward::primitive_desc pd;
    if (weight_dims[2] == 3 && c.stride == 1) {
      try {
        pd = dnnl::convolution_forward::primitive_desc(winograd, attr, engine);
      } catch (const dnnl::error&) {  // no Winograd kernel for this CPU or shape
      }
    }
    if (!pd) pd = dnnl::convolution_forward::primitive_desc(direct, attr, engine);
    // Among the implementations, prefer one whose weight layout is already kept (another batch
    // size asked for it): a layout of iResNet100 costs ~1 GB.
    const auto& kept = weights[conv_index];
    auto is_kept = [&](const memory::desc& layout) {
      return std::any_of(kept.begin(), kept.end(),
                         [&](const memory& m) { return m.get_desc() == layout; });
    };
    if (!kept.empty() && !is_kept(pd.weights_desc())) {
      for (auto candidate = pd; candidate.next_impl();) {
        if (is_kept(candidate.weights_desc())) {
          pd = candidate;
          break;
        }
      }
    }
    note_sizes(pd, dst_md);
    Step step{dnnl::convolution_forward(pd),
              {{DNNL_ARG_WEIGHTS, weights_in(conv_index++, c.weight, pd.weights_desc())},
               {DNNL_ARG_BIAS, view(c.bias, {weight_dims[0]}, Tag::a, engine)}},
              {{DNNL_ARG_SRC, src, src_md}, {DNNL_ARG_DST, dst, dst_md}}};
    plan->steps.push_back(std::move(step));
  };

  auto add_prelu = [&](const torch::Tensor& slope, Slot slot, const memory::desc& md) {
    const memory::dims slope_dims{1, slope.size(0), 1, 1};
    const dnnl::prelu_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, md, memory::desc(slope_dims, DataType::f32, Tag::any)},
        attributes(), engine);
    note_sizes(pd, md);
    const auto slopes =
        in_layout(view(slope, slope_dims, Tag::nchw, engine), pd.weights_desc(), engine);
    plan->steps.push_back({dnnl::prelu_forward(pd),
                           {{DNNL_ARG_WEIGHTS, slopes}},
                           {{DNNL_ARG_SRC, slot, md}, {DNNL_ARG_DST, slot, md}}});
  };

  // dst = src * scale + shift per channel, as a BatchNorm with mean 0 and variance 1.
  auto add_affine = [&](const torch::Tensor& scale, const torch::Tensor& shift, Slot src, Slot dst,
                        const memory::desc& md) {
    const auto channels = scale.numel();
    const dnnl::batch_normalization_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, md, 0.0f,
         dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
             dnnl::normalization_flags::use_shift},
        attributes(), engine);
    note_sizes(pd, md);
    const auto zeros = torch::zeros({channels});
    const auto ones = torch::ones({channels});
    plan->constants.insert(plan->constants.end(), {zeros, ones});
    plan->steps.push_back({dnnl::batch_normalization_forward(pd),
                           {{DNNL_ARG_MEAN, view(zeros, {channels}, Tag::a, engine)},
                            {DNNL_ARG_VARIANCE, view(ones, {channels}, Tag::a, engine)},
                            {DNNL_ARG_SCALE, view(scale, {channels}, Tag::a, engine)},
                            {DNNL_ARG_SHIFT, view(shift, {channels}, Tag::a, engine)}},
                           {{DNNL_ARG_SRC, src, md}, {DNNL_ARG_DST, dst, md}}});
  };

  auto output_dims = [&](const memory::dims& in, const FoldedIResNet::Conv& c) {
    const auto kernel = c.weight.size(2);
    return memory::dims{in[0], c.weight.size(0), (in[2] + 2 * c.padding - kernel) / c.stride + 1,
                        (in[3] + 2 * c.padding - kernel) / c.stride + 1};
  };

  const memory::dims input_dims{batch, 3, 112, 112};
  memory::dims dims = output_dims(input_dims, folded.stem);
  add_conv(folded.stem, kInput, memory::desc(input_dims, DataType::f32, Tag::nchw), kA,
           blocked(dims), false);
  add_prelu(folded.stem_prelu, kA, blocked(dims));
  // x lives in one of kA/kB/kC; the other two hold a block's intermediate results.
  Slot x = kA;
  for (const auto& b : folded.blocks) {
    const Slot first = x == kA ? kB : kA;
    const Slot second = static_cast<Slot>(kA + kB + kC - x - first);
    const auto in_md = blocked(dims);
    add_affine(b.pre_scale, b.pre_shift, x, first, in_md);
    const auto mid_dims = output_dims(dims, b.conv1);
    add_conv(b.conv1, first, in_md, second, blocked(mid_dims), false);
    add_prelu(b.prelu, second, blocked(mid_dims));
    const auto out_dims = output_dims(mid_dims, b.conv2);
    if (b.downsample) {
      add_conv(*b.downsample, x, in_md, first, blocked(out_dims), false);
      add_conv(b.conv2, second, blocked(mid_dims), first, blocked(out_dims), true);
      x = first;
    } else {
      add_conv(b.conv2, second, blocked(mid_dims), x, blocked(out_dims), true);
    }
    dims = out_dims;
  }
  // The last activation in plain channels-last order, which FoldedIResNet's fc columns follow.
  const auto last = blocked(dims);
  const memory::desc plain(dims, DataType::f32, Tag::nhwc);
  const dnnl::reorder::primitive_desc pd(engine, last, engine, plain, attributes());
  note_sizes(pd, last);
  plan->steps.push_back(
      {dnnl::reorder(pd), {}, {{DNNL_ARG_FROM, x, last}, {DNNL_ARG_TO, kOutput, plain}}});
  return plan;
}

bool OneDnnIResNet::available() { return true; }

OneDnnIResNet::OneDnnIResNet(const IResNetImpl& net) : impl_(std::make_unique<Impl>(net)) {}

torch::Tensor OneDnnIResNet::forward(const torch::Tensor& x) const {
  if (x.dim() != 4 || x.size(1) != 3 || x.size(2) != 112 || x.size(3) != 112) {
    throw InvalidInput("iResNet input must be N x 3 x 112 x 112, got " +
                       std::string(c10::str(x.sizes())));
  }
  torch::NoGradGuard no_grad;
  const auto batch = x.size(0);
  const auto input = x.to(torch::kFloat32).contiguous();
  const auto plan = impl_->plan_for(batch);
  const auto& fc_weight = impl_->folded.fc_weight;
  auto output = torch::empty({batch, fc_weight.size(1)});
  auto buffer = torch::empty(
      {static_cast<std::int64_t>(3 * plan->activation_bytes + round_up(plan->scratchpad_bytes))},
      torch::kUInt8);
  auto* base = buffer.data_ptr<std::uint8_t>();
  const std::array<void*, kSlotCount> slots{
      input.data_ptr<float>(), base, base + plan->activation_bytes,
      base + 2 * plan->activation_bytes, output.data_ptr<float>()};
  const auto& engine = impl_->engine;
  const memory scratchpad(
      {{static_cast<memory::dim>(plan->scratchpad_bytes)}, DataType::u8, Tag::a}, engine,
      base + 3 * plan->activation_bytes);
  dnnl::stream stream(engine);
  for (const auto& step : plan->steps) {
    auto args = step.constant_args;
    for (const auto& [arg, slot, md] : step.activation_args) {
      args.emplace(arg, memory(md, engine, slots[slot]));
    }
    args.emplace(DNNL_ARG_SCRATCHPAD, scratchpad);
    step.primitive.execute(stream, args);
  }
  stream.wait();
  return torch::addmm(impl_->folded.fc_bias, output, fc_weight.t());
}

#else  // no oneDNN in this build

struct OneDnnIResNet::Impl {};

bool OneDnnIResNet::available() { return false; }

OneDnnIResNet::OneDnnIResNet(const IResNetImpl&) {
  throw std::logic_error("facemag was built without oneDNN (libdnnl-dev): no OneDnnIResNet");
}

torch::Tensor OneDnnIResNet::forward(const torch::Tensor&) const { return {}; }

#endif

OneDnnIResNet::~OneDnnIResNet() = default;

}  // namespace facemag::nn
