// Compiled only where CMake found oneDNN (FACEMAG_HAVE_ONEDNN).
#if FACEMAG_HAVE_ONEDNN
#include "onednn_plan.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "facemag/nn/onednn/blocked_training.hpp"
#include "winograd.hpp"

namespace facemag::nn::onednn {
namespace {

using DataType = memory::data_type;
using Tag = memory::format_tag;

DataType data_type_of(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat32) return DataType::f32;
  if (t.scalar_type() == torch::kBFloat16) return DataType::bf16;
  if (t.scalar_type() == torch::kChar) return DataType::s8;
  throw std::invalid_argument(std::string("oneDNN plan: no tensors of ") +
                              c10::toString(t.scalar_type()));
}

// A float32 or bfloat16 tensor seen in place by oneDNN (the tensor must outlive the memory).
memory view(const torch::Tensor& t, const memory::dims& dims, Tag tag, const dnnl::engine& engine) {
  return memory({dims, data_type_of(t), tag}, engine, t.data_ptr());
}

// Every primitive takes its scratchpad from the caller's buffer, so concurrent calls never share.
dnnl::primitive_attr attributes(const dnnl::post_ops& ops = dnnl::post_ops()) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(ops);
  return attr;
}

std::size_t round_up(std::size_t bytes) { return (bytes + 63) / 64 * 64; }

// Where facemag's Winograd keeps a convolution's weights: [point][in][out] float32, a layout no
// oneDNN convolution asks for (the number of points tells the tile).
memory::desc winograd_weights(std::int64_t ins, std::int64_t outs, winograd::Tile tile) {
  return {{winograd::points(tile), ins, outs}, DataType::f32, Tag::abc};
}

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

bool cpu_has(dnnl_cpu_isa_t family) {
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  return (isa & static_cast<unsigned>(family)) == static_cast<unsigned>(family);
}

bool runs(torch::ScalarType dtype) {
  if (dtype == torch::kFloat32) return true;
  if (dtype == torch::kBFloat16) return cpu_has(dnnl_cpu_isa_avx512_core);
  if (dtype == torch::kChar)
    return cpu_has(dnnl_cpu_isa_avx512_core_vnni) || cpu_has(dnnl_cpu_isa_avx2_vnni);
  return false;
}

memory::data_type data_type(torch::ScalarType dtype) {
  if (dtype == torch::kChar) return DataType::s8;
  return dtype == torch::kBFloat16 ? DataType::bf16 : DataType::f32;
}

// The activation layout oneDNN's convolutions in `type` pick on this CPU for a typical 3x3
// convolution of iResNet left free: channels-last, 16- or 8-channel blocks.
Tag preferred_tag(DataType type) {
  const memory::dims src{1, 64, 56, 56}, weights{64, 64, 3, 3}, bias{64};
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  try {
    const dnnl::convolution_forward::primitive_desc pd({dnnl::prop_kind::forward_inference,
                                                        dnnl::algorithm::convolution_direct,
                                                        memory::desc(src, type, Tag::any),
                                                        memory::desc(weights, type, Tag::any),
                                                        memory::desc(bias, DataType::f32, Tag::a),
                                                        memory::desc(src, type, Tag::any),
                                                        {1, 1},
                                                        {1, 1},
                                                        {1, 1}},
                                                       engine);
    for (const Tag tag : {Tag::nhwc, Tag::nChw16c, Tag::nChw8c}) {
      if (pd.dst_desc() == memory::desc(src, type, tag)) return tag;
    }
  } catch (const dnnl::error&) {
  }
  return Tag::nChw16c;
}

Tag activation_tag(DataType type) {
  // bfloat16: oneDNN picks channels-last for its brgemm kernels, right with AMX; with AVX512-BF16
  // but no AMX its direct kernels on 16-channel blocks are faster (Zen 5, batch 16: MobileFaceNet
  // 1447 against 1255 img/s, InceptionResnetV1 +3 %, iResNet50 even; InceptionResnetV1 at batch 1
  // -7 %; README "Performance notes").
  static const Tag bf16 =
      cpu_has(dnnl_cpu_isa_avx512_core_bf16) && !cpu_has(dnnl_cpu_isa_avx512_core_amx)
          ? Tag::nChw16c
          : preferred_tag(DataType::bf16);
  static const Tag s8 = preferred_tag(DataType::s8);
  // float32 keeps the 16-channel blocks its AVX-512 Winograd kernels need; below AVX-512, what
  // the direct kernels there want (8-channel blocks on AVX2).
  static const Tag f32 = runs(torch::kBFloat16) ? Tag::nChw16c : preferred_tag(DataType::f32);
  if (type == DataType::bf16) return bf16;
  if (type == DataType::s8) return s8;
  return f32;
}

memory::desc blocked(const memory::dims& dims, memory::data_type type,
                     memory::data_type layout_of) {
  return memory::desc(dims, type, activation_tag(layout_of == DataType::undef ? type : layout_of));
}

memory::desc input_layout(const memory::dims& dims, memory::data_type type) {
  return memory::desc(dims, type, activation_tag(type) == Tag::nhwc ? Tag::nhwc : Tag::nchw);
}

memory::dims dims_of(const torch::Tensor& t) { return {t.sizes().begin(), t.sizes().end()}; }

memory::dims conv_output_dims(const memory::dims& src, c10::IntArrayRef weight_sizes,
                              const memory::dims& strides, const memory::dims& padding) {
  return {src[0], weight_sizes[0], (src[2] + 2 * padding[0] - weight_sizes[2]) / strides[0] + 1,
          (src[3] + 2 * padding[1] - weight_sizes[3]) / strides[1] + 1};
}

memory PlanBuilder::float32(const torch::Tensor& t, const memory::dims& dims,
                            memory::format_tag tag) {
  const auto converted = t.to(torch::kFloat32).contiguous();
  plan_.constants.push_back(converted);
  return view(converted, dims, tag, network_.engine());
}

template <class PrimitiveDesc>
void PlanBuilder::note_sizes(const PrimitiveDesc& pd, const memory::desc& dst) {
  plan_.scratchpad_bytes = std::max(plan_.scratchpad_bytes, pd.scratchpad_desc().get_size());
  plan_.activation_bytes = std::max(plan_.activation_bytes, round_up(dst.get_size()));
}

// ~100 lines kept together: the primitive descriptor, the weights layout it asks for (kept,
// reordered or made by Winograd), the epilogue's post-ops and the step recorded must agree, and
// reading them in one place is how that agreement is checked.
void PlanBuilder::conv(const ConvWeights& weights, const torch::Tensor& bias,
                       const memory::dims& strides, const memory::dims& padding,
                       std::int64_t groups, Slot src, const memory::desc& src_md, Slot dst,
                       const memory::desc& dst_md, const Epilogue& epilogue) {
  const auto& engine = network_.engine();
  const int index = conv_index_++;
  if (winograd_conv(index, weights, bias, strides, padding, groups, src, src_md, dst, dst_md,
                    epilogue))
    return;
  auto weight_dims = weights.sizes;
  const auto out_channels = weight_dims[0];
  if (groups > 1) {  // oneDNN's grouped weights: G x O/G x I/G x kh x kw
    weight_dims[0] /= groups;
    weight_dims.insert(weight_dims.begin(), groups);
  }
  const memory::desc any_weights(weight_dims, src_md.data_type(), Tag::any);
  const memory::desc bias_md({out_channels}, DataType::f32, Tag::a);
  const bool has_prelu = epilogue.prelu.defined();
  const auto post_ops = [&](bool fuse_prelu) {
    dnnl::post_ops ops;
    if (epilogue.accumulate) ops.append_sum(epilogue.sum_scale);
    if (epilogue.relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    if (fuse_prelu) ops.append_prelu(1 << 1);  // one slope per channel (dimension 1)
    return ops;
  };
  // oneDNN's implementation iterator points into these descriptions: they outlive it.
  auto describe = [&](dnnl::algorithm algorithm) {
    return dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, algorithm, src_md,
                                           any_weights, bias_md, dst_md, strides, padding, padding);
  };
  const auto winograd = describe(dnnl::algorithm::convolution_winograd);
  const auto direct = describe(dnnl::algorithm::convolution_direct);
  // Candidates, best first; a reference (unoptimised C++) implementation only as a last resort.
  struct Candidate {
    const dnnl::convolution_forward::desc* desc;
    bool fuse_prelu;
  };
  std::vector<Candidate> candidates;
  if (groups == 1 && weight_dims[2] == 3 && weight_dims[3] == 3 && strides[0] == 1 &&
      strides[1] == 1 && src_md.data_type() == DataType::f32) {
    candidates.push_back({&winograd, has_prelu});
    if (has_prelu) candidates.push_back({&winograd, false});
  }
  candidates.push_back({&direct, has_prelu});
  if (has_prelu) candidates.push_back({&direct, false});
  dnnl::convolution_forward::primitive_desc pd, fallback;
  bool prelu_fused = false, fallback_fused = false;
  for (const auto& candidate : candidates) {
    try {
      auto attr = attributes(post_ops(candidate.fuse_prelu));
      if (!epilogue.output_scales.empty()) attr.set_output_scales(1 << 1, epilogue.output_scales);
      dnnl::convolution_forward::primitive_desc found(*candidate.desc, attr, engine);
      if (!std::string_view(found.impl_info_str()).starts_with("ref")) {
        pd = found;
        prelu_fused = candidate.fuse_prelu;
        break;
      }
      if (!fallback) {
        fallback = found;
        fallback_fused = candidate.fuse_prelu;
      }
    } catch (const dnnl::error&) {  // no kernel for this CPU, shape and epilogue
    }
  }
  if (!pd) {
    if (!fallback) {
      throw std::runtime_error("oneDNN has no convolution for weights " +
                               c10::str(c10::IntArrayRef(weights.sizes)) + " on this CPU");
    }
    pd = fallback;
    prelu_fused = fallback_fused;
  }
  // Among the implementations, prefer one whose weight layout is already kept (another batch
  // size asked for it): a layout of iResNet100 costs ~1 GB.
  if (network_.weights_.count(index) && !network_.has_weights(index, pd.weights_desc())) {
    for (auto candidate = pd; candidate.next_impl();) {
      if (network_.has_weights(index, candidate.weights_desc())) {
        pd = candidate;
        break;
      }
    }
  }
  note_sizes(pd, dst_md);
  Plan::Step step{dnnl::convolution_forward(pd),
                  {{DNNL_ARG_WEIGHTS, network_.weights_in(index, weights, pd.weights_desc())},
                   {DNNL_ARG_BIAS, float32(bias, {out_channels}, Tag::a)}},
                  {{DNNL_ARG_SRC, src, src_md}, {DNNL_ARG_DST, dst, dst_md}}};
  if (prelu_fused) {
    const int position = int{epilogue.accumulate} + int{epilogue.relu};  // prelu comes last
    step.constant_args.emplace(
        DNNL_ARG_ATTR_MULTIPLE_POST_OP(position) | DNNL_ARG_WEIGHTS,
        float32(epilogue.prelu, {1, epilogue.prelu.numel(), 1, 1}, Tag::nchw));
  }
  plan_.steps.push_back(std::move(step));
  if (has_prelu && !prelu_fused) prelu(epilogue.prelu, dst, dst_md);
}

bool PlanBuilder::winograd_conv(int index, const ConvWeights& weights, const torch::Tensor& bias,
                                const memory::dims& strides, const memory::dims& padding,
                                std::int64_t groups, Slot src, const memory::desc& src_md, Slot dst,
                                const memory::desc& dst_md, const Epilogue& epilogue) {
  const auto& w = weights.sizes;
  const auto blocks_of_8 = [](const memory::desc& md) {
    return md == memory::desc(md.dims(), DataType::f32, Tag::nChw8c);
  };
  if (groups != 1 || w[2] != w[3] || strides[0] != strides[1] || padding[0] != padding[1] ||
      !blocks_of_8(src_md) || !blocks_of_8(dst_md) || !epilogue.output_scales.empty())
    return false;
  const auto chosen = winograd::forward_tile(w[1], w[0], w[2], strides[0], padding[0]);
  if (!chosen) return false;
  const winograd::Tile tile = *chosen;
  const auto dims = src_md.dims();
  const winograd::Blocked shape{nullptr, dims[0], dims[1], dims[2], dims[3]};
  const std::int64_t outs = w[0];
  const auto transformed = network_.weights_in(index, weights, winograd_weights(w[1], outs, tile));
  const auto bias_values = float32(bias, {outs}, Tag::a);
  winograd::OutputEpilogue out{.bias = static_cast<const float*>(bias_values.get_data_handle()),
                               .accumulate = epilogue.accumulate,
                               .relu = epilogue.relu};
  if (epilogue.prelu.defined()) {
    out.prelu = static_cast<const float*>(
        float32(epilogue.prelu, {epilogue.prelu.numel()}, Tag::a).get_data_handle());
  }
  plan_.scratchpad_bytes =
      std::max(plan_.scratchpad_bytes,
               static_cast<std::size_t>(winograd::workspace_floats(shape, outs, tile, padding[0])) *
                   sizeof(float));
  plan_.activation_bytes = std::max(plan_.activation_bytes, round_up(dst_md.get_size()));
  Plan::Step step{{}, {}, {{DNNL_ARG_SRC, src, src_md}, {DNNL_ARG_DST, dst, dst_md}}};
  step.kernel = [shape, transformed, out, outs, src, dst, tile, pad = padding[0]](
                    const std::vector<void*>& slots, void* scratchpad) {
    auto input = shape;
    input.data = static_cast<const float*>(slots[src]);
    winograd::convolve(input, static_cast<const float*>(transformed.get_data_handle()), outs,
                       static_cast<float*>(slots[dst]), out, static_cast<float*>(scratchpad), tile,
                       pad);
  };
  plan_.steps.push_back(std::move(step));
  return true;
}

void PlanBuilder::prelu(const torch::Tensor& slope, Slot slot, const memory::desc& md) {
  const auto& engine = network_.engine();
  const memory::dims slope_dims{1, slope.size(0), 1, 1};
  const dnnl::prelu_forward::primitive_desc pd(
      {dnnl::prop_kind::forward_inference, md, memory::desc(slope_dims, DataType::f32, Tag::any)},
      attributes(), engine);
  note_sizes(pd, md);
  const auto slopes = in_layout(float32(slope, slope_dims, Tag::nchw), pd.weights_desc(), engine);
  plan_.steps.push_back({dnnl::prelu_forward(pd),
                         {{DNNL_ARG_WEIGHTS, slopes}},
                         {{DNNL_ARG_SRC, slot, md}, {DNNL_ARG_DST, slot, md}}});
}

void PlanBuilder::affine(const torch::Tensor& scale, const torch::Tensor& shift, Slot src, Slot dst,
                         const memory::desc& md) {
  const auto& engine = network_.engine();
  const auto channels = scale.numel();
  const dnnl::batch_normalization_forward::primitive_desc pd(
      {dnnl::prop_kind::forward_inference, md, 0.0f,
       dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
           dnnl::normalization_flags::use_shift},
      attributes(), engine);
  note_sizes(pd, md);
  const auto zeros = torch::zeros({channels});
  const auto ones = torch::ones({channels});
  plan_.constants.insert(plan_.constants.end(), {zeros, ones});
  plan_.steps.push_back({dnnl::batch_normalization_forward(pd),
                         {{DNNL_ARG_MEAN, view(zeros, {channels}, Tag::a, engine)},
                          {DNNL_ARG_VARIANCE, view(ones, {channels}, Tag::a, engine)},
                          {DNNL_ARG_SCALE, float32(scale, {channels}, Tag::a)},
                          {DNNL_ARG_SHIFT, float32(shift, {channels}, Tag::a)}},
                         {{DNNL_ARG_SRC, src, md}, {DNNL_ARG_DST, dst, md}}});
}

void PlanBuilder::max_pool(std::int64_t kernel, std::int64_t stride, Slot src,
                           const memory::desc& src_md, Slot dst, const memory::desc& dst_md) {
  pool(dnnl::algorithm::pooling_max, {kernel, kernel}, {stride, stride}, {0, 0}, src, src_md, dst,
       dst_md);
}

void PlanBuilder::pool(dnnl::algorithm algorithm, const memory::dims& kernel,
                       const memory::dims& strides, const memory::dims& padding_r, Slot src,
                       const memory::desc& src_md, Slot dst, const memory::desc& dst_md) {
  const dnnl::pooling_forward::primitive_desc pd({dnnl::prop_kind::forward_inference,
                                                  algorithm,
                                                  src_md,
                                                  dst_md,
                                                  strides,
                                                  kernel,
                                                  {0, 0},
                                                  padding_r},
                                                 attributes(), network_.engine());
  note_sizes(pd, dst_md);
  plan_.steps.push_back(
      {dnnl::pooling_forward(pd), {}, {{DNNL_ARG_SRC, src, src_md}, {DNNL_ARG_DST, dst, dst_md}}});
}

void PlanBuilder::concat(const std::vector<std::pair<Slot, memory::desc>>& sources, Slot dst,
                         const memory::desc& dst_md) {
  std::vector<memory::desc> mds;
  for (const auto& source : sources) mds.push_back(source.second);
  const dnnl::concat::primitive_desc pd(dst_md, 1, mds, network_.engine(), attributes());
  note_sizes(pd, dst_md);
  Plan::Step step{dnnl::concat(pd), {}, {{DNNL_ARG_DST, dst, dst_md}}};
  for (std::size_t i = 0; i < sources.size(); ++i) {
    step.activation_args.emplace_back(DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), sources[i].first,
                                      sources[i].second);
  }
  plan_.steps.push_back(std::move(step));
}

void PlanBuilder::add(Slot a, Slot b, Slot dst, const memory::desc& md) {
  const dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_add, md, md, md}, attributes(),
                                        network_.engine());
  note_sizes(pd, md);
  plan_.steps.push_back(
      {dnnl::binary(pd),
       {},
       {{DNNL_ARG_SRC_0, a, md}, {DNNL_ARG_SRC_1, b, md}, {DNNL_ARG_DST, dst, md}}});
}

void PlanBuilder::reorder(Slot src, const memory::desc& src_md, Slot dst,
                          const memory::desc& dst_md, float scale) {
  const auto& engine = network_.engine();
  auto attr = attributes();
  if (scale != 1.0f) attr.set_output_scales(0, {scale});
  const dnnl::reorder::primitive_desc pd(engine, src_md, engine, dst_md, attr);
  note_sizes(pd, src_md);
  plan_.steps.push_back(
      {dnnl::reorder(pd), {}, {{DNNL_ARG_FROM, src, src_md}, {DNNL_ARG_TO, dst, dst_md}}});
}

bool Network::has_weights(int conv_index, const memory::desc& layout) const {
  const auto it = weights_.find(conv_index);
  return it != weights_.end() &&
         std::any_of(it->second.begin(), it->second.end(),
                     [&](const memory& m) { return m.get_desc() == layout; });
}

namespace {

// Whether every later plan gets a convolution's weights from `kept` without asking for their
// values: facemag's Winograd layout (one for every batch size) or one of oneDNN's blocked layouts,
// which oneDNN reorders from (its Winograd layouts are reorder targets only).
bool serves_later_plans(const memory& kept) {
  return kept.get_desc().data.format_kind == dnnl_blocked;
}

// Whether `kept` holds a convolution's weights in a layout oneDNN reorders from into `layout`
// (blocked to blocked: it makes its Winograd layouts from plain weights only).
bool reorderable_to(const memory& kept, const memory::desc& layout) {
  const auto& desc = kept.get_desc();
  return serves_later_plans(kept) && layout.data.format_kind == dnnl_blocked &&
         desc.dims() == layout.dims() && desc.data_type() == layout.data_type();
}

}  // namespace

bool first_plan_serves_every_batch(memory::data_type type) {
  return type == memory::data_type::f32 && nn::blocked::stride_one_algorithm(128, 128) !=
                                               nn::blocked::StrideOneAlgorithm::kWinograd4x4;
}

memory Network::weights_in(int conv_index, const ConvWeights& weights,
                           const memory::desc& layout) const {
  auto& kept = weights_[conv_index];
  for (const auto& m : kept) {
    if (m.get_desc() == layout) return m;
  }
  memory target(layout, engine_);
  const auto keep = [&] {
    kept.push_back(target);
    if (weights.kept && serves_later_plans(target)) {
      weights.kept();
      let_go_.insert(conv_index);
    }
    return target;
  };
  const auto values = [&] {
    if (let_go_.count(conv_index)) {
      throw std::logic_error("oneDNN plan: convolution " + std::to_string(conv_index) +
                             " asks for weights its owner let go of, in a layout no kept one "
                             "reorders to");
    }
    return weights.values();
  };
  for (const auto tile : {winograd::Tile::k2x2, winograd::Tile::k4x4}) {
    if (layout == winograd_weights(weights.sizes[1], weights.sizes[0], tile)) {
      winograd::transform_weights(values(), tile, static_cast<float*>(target.get_data_handle()));
      return keep();
    }
  }
  dnnl::stream stream(engine_);
  // Another layout of the same weights: a permutation, exact, and no need of the network's own.
  for (auto m : kept) {  // a handle
    if (reorderable_to(m, layout)) {
      dnnl::reorder(m, target).execute(stream, m, target);
      stream.wait();
      kept.push_back(target);
      return target;
    }
  }
  // oneDNN reorders into its Winograd layouts from plain O x I x kh x kw only (float32 or
  // bfloat16: the reorder converts). Always a copy: `plain` may be a temporary.
  const auto plain = values().contiguous();
  const auto grouped = layout.dims().size() == 5;  // G x O/G x I/G x kh x kw, same order
  auto source = view(plain, grouped ? layout.dims() : dims_of(plain),
                     grouped ? Tag::goihw : Tag::oihw, engine_);
  dnnl::reorder(source, target).execute(stream, source, target);
  stream.wait();
  return keep();
}

void Network::prepare(std::int64_t batch) const { plan_for(batch); }

std::shared_ptr<const Plan> Network::plan_for(std::int64_t batch) const {
  std::lock_guard lock(mutex_);
  for (auto it = plans_.begin(); it != plans_.end(); ++it) {
    if ((*it)->batch == batch) {
      plans_.splice(plans_.begin(), plans_, it);
      return plans_.front();
    }
  }
  auto plan = std::make_shared<Plan>();
  plan->batch = batch;
  PlanBuilder builder(*this, *plan);
  describe_(builder, batch);
  for (const auto& step : plan->steps) {
    for (const auto& [arg, slot, md] : step.activation_args) {
      if (slot == kInput) plan->input_bytes = std::max(plan->input_bytes, md.get_size());
      if (slot == kOutput) plan->output_bytes = std::max(plan->output_bytes, md.get_size());
      plan->activation_buffers = std::max(plan->activation_buffers, slot - kA + 1);
    }
  }
  plans_.push_front(std::move(plan));
  if (plans_.size() > kPlansKept) plans_.pop_back();
  return plans_.front();
}

void Network::run(std::int64_t batch, const float* input, float* output) const {
  for (std::int64_t done = 0; done < batch;) {
    const auto chunk = static_cast<std::int64_t>(
        std::bit_floor(static_cast<std::uint64_t>(std::min(batch - done, kLargestChunk))));
    const auto plan = plan_for(chunk);
    const auto in_floats = plan->input_bytes / sizeof(float) / static_cast<std::size_t>(chunk);
    const auto out_floats = plan->output_bytes / sizeof(float) / static_cast<std::size_t>(chunk);
    run_plan(*plan, input + static_cast<std::size_t>(done) * in_floats,
             output + static_cast<std::size_t>(done) * out_floats);
    done += chunk;
  }
}

void Network::run_plan(const Plan& plan, const float* input, float* output) const {
  // The calling thread's buffers, kept for its next call. Allocated per call they cost a server
  // thread 55 ms per iResNet100 face (122 ms instead of 67): glibc serves large blocks of a
  // non-main thread's arena from fresh mappings, and every page faults in again.
  thread_local torch::Tensor workspace;
  const auto buffers = static_cast<std::size_t>(plan.activation_buffers);
  const auto bytes =
      static_cast<std::int64_t>(buffers * plan.activation_bytes + round_up(plan.scratchpad_bytes));
  if (!workspace.defined() || workspace.numel() < bytes)
    workspace = torch::empty({bytes}, torch::kUInt8);
  auto* base = workspace.data_ptr<std::uint8_t>();
  std::vector<void*> slots{const_cast<float*>(input), output};
  for (std::size_t i = 0; i < buffers; ++i) slots.push_back(base + i * plan.activation_bytes);
  const memory scratchpad({{static_cast<memory::dim>(plan.scratchpad_bytes)}, DataType::u8, Tag::a},
                          engine_, base + buffers * plan.activation_bytes);
  dnnl::stream stream(engine_);
  for (const auto& step : plan.steps) {
    if (step.kernel) {
      stream.wait();  // the primitives before it have written its input
      step.kernel(slots, scratchpad.get_data_handle());
      continue;
    }
    auto args = step.constant_args;
    for (const auto& [arg, slot, md] : step.activation_args) {
      args.emplace(arg, memory(md, engine_, slots[slot]));
    }
    args.emplace(DNNL_ARG_SCRATCHPAD, scratchpad);
    step.primitive.execute(stream, args);
  }
  stream.wait();
}

}  // namespace facemag::nn::onednn

#endif  // FACEMAG_HAVE_ONEDNN
