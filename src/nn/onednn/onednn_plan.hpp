// Networks run straight on oneDNN primitives, in float32 or bfloat16 activations (internal;
// built with FACEMAG_HAVE_ONEDNN only). A network describes itself once per batch size through a
// PlanBuilder; the resulting plan (compiled primitives, weights in the layouts they chose, buffer
// sizes) is kept for the few most recent batch sizes. A call runs a plan in its own buffers, so one
// network serves concurrent calls.
#pragma once

#include <torch/types.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace facemag::nn::onednn {

using dnnl::memory;

// The buffers of one call: the caller's input and output, and activation buffers kA, kA + 1, ...
// (as many as the plan names), each as large as the largest activation of the plan.
using Slot = int;
inline constexpr Slot kInput = 0, kOutput = 1, kA = 2, kB = 3, kC = 4;

// Whether this CPU runs networks in `dtype` on oneDNN: float32 always; bfloat16 with AVX-512
// (oneDNN emulates the bf16 instructions where the CPU lacks them; below AVX-512 it would fall
// to its reference kernels); int8 (kChar) with VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8).
bool runs(torch::ScalarType dtype);

// Whether oneDNN runs `family`'s instructions on this CPU (as limited by ONEDNN_MAX_CPU_ISA).
bool cpu_has(dnnl_cpu_isa_t family);

// kFloat32 -> f32, kBFloat16 -> bf16, kChar -> s8.
memory::data_type data_type(torch::ScalarType dtype);

// The activation layout oneDNN's convolutions prefer on this CPU for `type` (channels-last for
// its brgemm and AMX kernels, 16- or 8-channel blocks for the others; float32 on AVX-512 always
// 16-channel blocks, for Winograd). Asked of oneDNN once per type, not hard-coded. `layout_of`:
// the type whose layout to take when not `type`'s own (a convolution's kernels read and write one
// layout: int8's float32 last value lies in the int8 layout).
memory::desc blocked(const memory::dims& dims, memory::data_type type = memory::data_type::f32,
                     memory::data_type layout_of = memory::data_type::undef);
// The layout of a network's 3-channel input to go with blocked(): NCHW, or NHWC beside
// channels-last activations.
memory::desc input_layout(const memory::dims& dims, memory::data_type type);
memory::dims dims_of(const torch::Tensor& t);
// N x O x H' x W' of a convolution with `weight` (O x I/groups x kh x kw) over `src`
// (N x I x H x W).
memory::dims conv_output_dims(const memory::dims& src, c10::IntArrayRef weight_sizes,
                              const memory::dims& strides, const memory::dims& padding);

struct Plan {
  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, memory> constant_args;
    std::vector<std::tuple<int, Slot, memory::desc>> activation_args;  // DNNL_ARG_*, buffer, layout
    // Run in place of a primitive where facemag has its own kernel (Winograd on AVX2),
    // given the call's buffers (by slot) and its scratchpad.
    std::function<void(const std::vector<void*>& slots, void* scratchpad)> kernel = {};
  };
  std::int64_t batch = 0;
  std::vector<Step> steps;
  std::vector<torch::Tensor> constants;  // what constant_args point into
  std::size_t activation_bytes = 0;      // size of each activation buffer
  int activation_buffers = 0;            // kA .. kA + activation_buffers - 1
  std::size_t scratchpad_bytes = 0;
  std::size_t input_bytes = 0, output_bytes = 0;  // of the whole batch (N outermost)
};

class Network;

// What a convolution does to its result before storing it, fused into the convolution where
// oneDNN has a kernel for the combination, otherwise as a pass of its own.
// int8: the result (s32 accumulator + bias) is first multiplied by output_scales (one per output
// channel), the residual sum reads dst times sum_scale.
struct Epilogue {
  bool accumulate = false;  // dst += result (a residual sum; dst holds the other operand)
  bool relu = false;
  torch::Tensor prelu = {};               // one float32 slope per output channel; undefined: none
  std::vector<float> output_scales = {};  // empty: none
  float sum_scale = 1.0f;
};

// A convolution's weights (O x I x kh x kw, float32 or bfloat16) by their sizes and a way to get
// their values, asked for only where a plan needs them in a layout the network does not keep
// yet: a network then need not hold a plain copy of its weights beside oneDNN's (iResNet100:
// 260 MB). `kept`, if set, is called once the network keeps them in a layout from which every
// later plan gets them without asking `values` again (facemag's Winograd layout, which serves
// every batch size, or one of oneDNN's blocked layouts, another being a reorder away; not one of
// oneDNN's Winograd layouts): the owner may then let go of the values, one convolution at a
// time; a later plan that still asked for them would be a std::logic_error.
struct ConvWeights {
  std::vector<std::int64_t> sizes;
  std::function<torch::Tensor()> values;
  std::function<void()> kept = {};
};

// Whether the weight layouts kept by a network's first plan serve every later plan, so that its
// owner may let go of the values when ConvWeights::kept says so: float32 below AVX-512, where
// oneDNN has no Winograd kernels. On AVX-512 a later batch size may want one of oneDNN's
// Winograd layouts, which it makes from plain weights only (and the first plan's layouts steer
// which kernels later batch sizes get, measured nowhere else).
bool first_plan_serves_every_batch(memory::data_type type);

// Appends primitives to a plan. Convolutions are numbered in the order they are added, which
// must be the same for every batch size (weights are kept per number and layout).
class PlanBuilder {
 public:
  // dst = epilogue(conv(src) + bias). Weights (O x I x kh x kw, float32 or bfloat16) are kept
  // in the data type of src (bfloat16 activations: bfloat16 weights, float32 accumulation and
  // bias); the bias, slopes and scales may come in either type and are used as float32.
  // float32 3x3 stride-1 convolutions use oneDNN's Winograd kernels where it has them for this
  // CPU and shape, even where that costs a separate PReLU pass (the Winograd kernels take no
  // PReLU post-op); where it has none (AVX2: 8-channel blocks), facemag's Winograd F(4x4) or
  // F(2x2) for layers where that pays off (winograd::forward_tile), its epilogue in the output
  // transform.
  // Grouped (depthwise) convolutions take groups > 1.
  void conv(const ConvWeights& weights, const torch::Tensor& bias, const memory::dims& strides,
            const memory::dims& padding, std::int64_t groups, Slot src, const memory::desc& src_md,
            Slot dst, const memory::desc& dst_md, const Epilogue& epilogue = {});
  void conv(const torch::Tensor& weight, const torch::Tensor& bias, const memory::dims& strides,
            const memory::dims& padding, std::int64_t groups, Slot src, const memory::desc& src_md,
            Slot dst, const memory::desc& dst_md, const Epilogue& epilogue = {}) {
    conv(ConvWeights{weight.sizes().vec(), [weight] { return weight; }}, bias, strides, padding,
         groups, src, src_md, dst, dst_md, epilogue);
  }
  // PReLU in place, one slope per channel.
  void prelu(const torch::Tensor& slope, Slot slot, const memory::desc& md);
  // dst = src * scale + shift per channel (a BatchNorm with mean 0 and variance 1); scale and
  // shift float32 whatever the activations' type.
  void affine(const torch::Tensor& scale, const torch::Tensor& shift, Slot src, Slot dst,
              const memory::desc& md);
  // Max pooling without padding (floor mode).
  void max_pool(std::int64_t kernel, std::int64_t stride, Slot src, const memory::desc& src_md,
                Slot dst, const memory::desc& dst_md);
  // Pooling in general: max, or the mean over the window; padding_r > 0 gives PyTorch's ceil mode.
  void pool(dnnl::algorithm algorithm, const memory::dims& kernel, const memory::dims& strides,
            const memory::dims& padding_r, Slot src, const memory::desc& src_md, Slot dst,
            const memory::desc& dst_md);
  // dst = the sources one after the other along the channels.
  void concat(const std::vector<std::pair<Slot, memory::desc>>& sources, Slot dst,
              const memory::desc& dst_md);
  // dst = a + b (elementwise, same dims).
  void add(Slot a, Slot b, Slot dst, const memory::desc& md);
  // dst = src * scale, converted to dst's type and layout (int8: rounded and saturated).
  void reorder(Slot src, const memory::desc& src_md, Slot dst, const memory::desc& dst_md,
               float scale = 1.0f);

 private:
  friend class Network;
  PlanBuilder(const Network& network, Plan& plan) : network_(network), plan_(plan) {}
  template <class PrimitiveDesc>
  void note_sizes(const PrimitiveDesc& pd, const memory::desc& dst);
  // A small float32 copy of `t` kept by the plan (biases, scales, slopes in any dtype).
  memory float32(const torch::Tensor& t, const memory::dims& dims, memory::format_tag tag);
  // The convolution as facemag's Winograd, where it applies (returns whether it did).
  bool winograd_conv(int index, const ConvWeights& weights, const torch::Tensor& bias,
                     const memory::dims& strides, const memory::dims& padding, std::int64_t groups,
                     Slot src, const memory::desc& src_md, Slot dst, const memory::desc& dst_md,
                     const Epilogue& epilogue);

  const Network& network_;
  Plan& plan_;
  int conv_index_ = 0;
};

class Network {
 public:
  // Appends the network's primitives for one batch size.
  using Describe = std::function<void(PlanBuilder& builder, std::int64_t batch)>;
  explicit Network(Describe describe) : describe_(std::move(describe)) {}

  // Runs `batch` samples: reads `input`, writes `output` (slots kInput and kOutput, in the
  // layouts the description gave them, batch outermost). Batches go through plans for powers of
  // two only (13 = 8 + 4 + 1): a server's batches come in every size, and compiling primitives
  // for each new size cost more than the batch itself (iResNet100 at 8 concurrent requests
  // fell below one request at a time).
  void run(std::int64_t batch, const float* input, float* output) const;

  const dnnl::engine& engine() const { return engine_; }

  // Builds the plan for `batch` now (run() would on its first call with that size).
  void prepare(std::int64_t batch) const;

 private:
  friend class PlanBuilder;
  std::shared_ptr<const Plan> plan_for(std::int64_t batch) const;
  memory weights_in(int conv_index, const ConvWeights& weights, const memory::desc& layout) const;
  bool has_weights(int conv_index, const memory::desc& layout) const;

  void run_plan(const Plan& plan, const float* input, float* output) const;

  static constexpr std::int64_t kLargestChunk = 64;
  static constexpr std::size_t kPlansKept = 7;  // batch sizes 1, 2, 4, ..., 64
  Describe describe_;
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  mutable std::mutex mutex_;
  mutable std::list<std::shared_ptr<const Plan>> plans_;  // most recently used first
  // Each convolution's weights in every layout a plan has asked for (few: oneDNN's Winograd
  // layouts differ between small and large batches only).
  mutable std::map<int, std::vector<memory>> weights_;
  mutable std::set<int> let_go_;  // convolutions whose ConvWeights::kept was called
};

}  // namespace facemag::nn::onednn
