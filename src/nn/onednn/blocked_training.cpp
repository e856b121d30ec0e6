#include "facemag/nn/onednn/blocked_training.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "../kernels.hpp"
#include "facemag/error.hpp"

#if FACEMAG_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include "onednn_plan.hpp"
#include "winograd.hpp"
#endif

namespace facemag::nn::blocked {
namespace {

// "[N, C, H, W]" (LibTorch prints sizes so).
std::string shape_of(const torch::Tensor& t) { return c10::str(t.sizes()); }

void require_blocked(const torch::Tensor& x, const char* what) {
  const auto width = block_width();
  if (x.dim() != 5 || x.size(4) != width || !x.is_contiguous() ||
      x.scalar_type() != torch::kFloat32 || !x.device().is_cpu())
    throw InvalidInput(std::string(what) + ": expected a contiguous float32 CPU tensor N x C/" +
                       std::to_string(width) + " x H x W x " + std::to_string(width) + ", got " +
                       shape_of(x));
}

// Calls run(lanes) with the block width as a compile-time constant (std::integral_constant), so
// that the loops over a block's lanes below compile to whole vectors.
template <class Run>
void with_lanes(std::int64_t width, Run run) {
  if (width == 16) {
    run(std::integral_constant<std::int64_t, 16>{});
  } else {
    run(std::integral_constant<std::int64_t, 8>{});
  }
}

}  // namespace

torch::Tensor from_nchw(const torch::Tensor& x) {
  const auto width = block_width();
  if (x.dim() != 4 || x.size(1) % width != 0)
    throw InvalidInput("blocked layout: expected N x C x H x W with C a multiple of " +
                       std::to_string(width) + ", got " + shape_of(x));
  return x.view({x.size(0), x.size(1) / width, width, x.size(2), x.size(3)})
      .permute({0, 1, 3, 4, 2})
      .contiguous();
}

torch::Tensor to_nchw(const torch::Tensor& x) {
  require_blocked(x, "blocked layout");
  return x.permute({0, 1, 4, 2, 3})
      .reshape({x.size(0), x.size(1) * x.size(4), x.size(2), x.size(3)});
}

namespace {

// BatchNorm's sums are taken in double (LibTorch sums each sample's plane in float first; double
// sums are closer to float64, test_blocked_training measures it). Parallel over channel blocks:
// visit(block, begin, end) for each sample's run of the block's values (a block's lanes per
// pixel).
template <class Visit>
void for_each_block(const torch::Tensor& x, Visit visit) {
  const std::int64_t batch = x.size(0), blocks = x.size(1), run = x.size(2) * x.size(3) * x.size(4);
  at::parallel_for(0, blocks, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t block = begin; block < end; ++block) {
      for (std::int64_t n = 0; n < batch; ++n) {
        const std::int64_t first = (n * blocks + block) * run;
        visit(block, first, first + run);
      }
    }
  });
}

// Sums over `pixels` runs of L channels into L double sums (each channel's in pixel order, so
// the same for either block width); where a product is added, it is exact in double, so the
// v3/v4 clones' fused multiply-adds round as the baseline does.
template <std::int64_t L>
FACEMAG_VECTOR_CLONES void sum_runs(const float* __restrict x, std::int64_t pixels,
                                    double* __restrict sums) {
  double local[L] = {};
  for (std::int64_t p = 0; p < pixels; ++p)
    for (std::int64_t l = 0; l < L; ++l) local[l] += x[p * L + l];
  for (std::int64_t l = 0; l < L; ++l) sums[l] += local[l];
}

// Deviations in double: the variance feeds every gradient of the layers below through 1/sqrt(var),
// and float differences (as LibTorch takes) made iResNet-18's first-stage gradients 5-13x
// further from float64. Not cloned: a fused d * d + sum would round differently per CPU.
template <std::int64_t L>
void sum_squared_deviations(const float* __restrict x, std::int64_t pixels,
                            const float* __restrict mean, double* __restrict sums) {
  double local[L] = {};
  for (std::int64_t p = 0; p < pixels; ++p)
    for (std::int64_t l = 0; l < L; ++l) {
      const double d = static_cast<double>(x[p * L + l]) - mean[l];
      local[l] += d * d;
    }
  for (std::int64_t l = 0; l < L; ++l) sums[l] += local[l];
}

// sum dy and sum dy (x - mean), each product of two floats exact in double. Four lanes at a
// time (one AVX2 register of doubles: GCC spills wider generic vectors in the v3 clone).
template <std::int64_t L>
FACEMAG_VECTOR_CLONES void sum_gradient_runs(const float* __restrict dy, const float* __restrict x,
                                             std::int64_t pixels, const float* __restrict mean,
                                             double* __restrict sum_dy, double* __restrict dot) {
  constexpr std::int64_t kLanes = 4, kGroups = L / kLanes;
  using Sums = DoubleVec<kLanes>;
  Sums s[kGroups] = {}, d[kGroups] = {};
  for (std::int64_t p = 0; p < pixels; ++p)
    for (std::int64_t k = 0; k < kGroups; ++k) {
      const std::int64_t i = p * L + k * kLanes;
      const Sums g = __builtin_convertvector(load_floats<kLanes>(dy + i), Sums);
      const auto centred = load_floats<kLanes>(x + i) - load_floats<kLanes>(mean + k * kLanes);
      s[k] += g;
      d[k] += g * __builtin_convertvector(centred, Sums);
    }
  for (std::int64_t l = 0; l < L; ++l) {
    sum_dy[l] += s[l / kLanes][l % kLanes];
    dot[l] += d[l / kLanes][l % kLanes];
  }
}

struct Statistics {
  torch::Tensor mean, variance;  // per channel, float64; the variance biased
};

template <std::int64_t L>
Statistics batch_statistics(const torch::Tensor& x) {
  const std::int64_t channels = x.size(1) * L;
  const double count = static_cast<double>(x.numel() / channels);
  auto mean = torch::zeros({channels}, torch::kFloat64);
  auto variance = torch::zeros({channels}, torch::kFloat64);
  const float* xd = x.data_ptr<float>();
  double* m = mean.data_ptr<double>();
  double* v = variance.data_ptr<double>();
  // Two passes (mean, then squared deviations) as LibTorch does, not sum and sum of squares.
  for_each_block(x, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    sum_runs<L>(xd + begin, (end - begin) / L, m + block * L);
  });
  mean /= count;
  // The variance pass subtracts the mean rounded to float32, as LibTorch's does.
  mean = mean.to(torch::kFloat32).to(torch::kFloat64);
  const auto mean32 = mean.to(torch::kFloat32);
  for_each_block(x, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    sum_squared_deviations<L>(xd + begin, (end - begin) / L, mean32.data_ptr<float>() + block * L,
                              v + block * L);
  });
  variance /= count;
  return {mean, variance};
}

// out = x * scale + shift per channel (float32 coefficients), in parallel over planes.
template <std::int64_t L>
torch::Tensor scale_shift(const torch::Tensor& x, const torch::Tensor& scale,
                          const torch::Tensor& shift) {
  auto out = torch::empty_like(x);
  const std::int64_t blocks = x.size(1), plane = x.size(2) * x.size(3) * L;
  const float* xd = x.data_ptr<float>();
  float* od = out.data_ptr<float>();
  const float* a = scale.data_ptr<float>();
  const float* b = shift.data_ptr<float>();
  at::parallel_for(0, x.size(0) * blocks, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t p = begin; p < end; ++p) {
      const float* pa = a + (p % blocks) * L;
      const float* pb = b + (p % blocks) * L;
      for (std::int64_t i = p * plane; i < (p + 1) * plane; i += L)
        for (std::int64_t l = 0; l < L; ++l) od[i + l] = xd[i + l] * pa[l] + pb[l];
    }
  });
  return out;
}

// Training-mode BatchNorm: the batch's mean and biased variance, scale and shift.
class BatchNorm : public torch::autograd::Function<BatchNorm> {
 public:
  // Returns the normalised x, and the batch's mean and biased variance (float64, no gradient).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const torch::Tensor& x, const torch::Tensor& weight,
                                                const torch::Tensor& bias, double eps) {
    Statistics stats;
    with_lanes(x.size(4), [&](auto lanes) { stats = batch_statistics<lanes()>(x); });
    const auto invstd = (stats.variance + eps).rsqrt();
    const auto scale = invstd * weight.to(torch::kFloat64);
    const auto shift = bias.to(torch::kFloat64) - stats.mean * scale;
    torch::Tensor y;
    with_lanes(x.size(4), [&](auto lanes) {
      y = scale_shift<lanes()>(x, scale.to(torch::kFloat32), shift.to(torch::kFloat32));
    });
    ctx->save_for_backward({x, weight, stats.mean, invstd});
    ctx->mark_non_differentiable({stats.mean, stats.variance});
    return {y, stats.mean, stats.variance};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const auto dy = grads[0].contiguous();
    const std::int64_t channels = weight.numel();
    const double count = static_cast<double>(x.numel() / channels);
    // Per channel, in double: sum dy and sum dy (x - mean).
    auto sum_dy = torch::zeros({channels}, torch::kFloat64);
    auto dot = torch::zeros({channels}, torch::kFloat64);
    const auto mean32 = mean.to(torch::kFloat32);
    with_lanes(x.size(4), [&](auto lanes) { gradient_sums<lanes()>(dy, x, mean32, sum_dy, dot); });
    // dx = (dy - sum_dy / n - (x - mean) invstd^2 dot / n) invstd weight, in float32 with the
    // coefficients rounded once, as LibTorch computes it.
    const auto to_float = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
    const InputGradient coefficients{to_float(invstd * weight.to(torch::kFloat64)),
                                     to_float(dot * invstd * invstd / count),
                                     to_float(sum_dy / count), mean32};
    torch::Tensor dx;
    with_lanes(x.size(4), [&](auto lanes) { dx = input_gradient<lanes()>(dy, x, coefficients); });
    return {dx, (dot * invstd).to(weight.scalar_type()), sum_dy.to(weight.scalar_type()),
            torch::Tensor()};
  }

 private:
  // Adds each channel's sum dy and sum dy (x - mean) to `sum_dy` and `dot` (float64).
  template <std::int64_t L>
  static void gradient_sums(const torch::Tensor& dy, const torch::Tensor& x,
                            const torch::Tensor& mean32, torch::Tensor& sum_dy,
                            torch::Tensor& dot) {
    const float* xd = x.data_ptr<float>();
    const float* gd = dy.data_ptr<float>();
    const float* mu = mean32.data_ptr<float>();
    double* s = sum_dy.data_ptr<double>();
    double* d = dot.data_ptr<double>();
    for_each_block(x, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
      const std::int64_t c = block * L;
      sum_gradient_runs<L>(gd + begin, xd + begin, (end - begin) / L, mu + c, s + c, d + c);
    });
  }

  // Per channel, float32: dx = (dy - mean_gradient - (x - mean) projection) scale.
  struct InputGradient {
    torch::Tensor scale, projection, mean_gradient, mean;
  };

  template <std::int64_t L>
  static torch::Tensor input_gradient(const torch::Tensor& dy, const torch::Tensor& x,
                                      const InputGradient& k) {
    auto dx = torch::empty_like(x);
    const std::int64_t blocks = x.size(1), plane = x.size(2) * x.size(3) * L;
    const float* xd = x.data_ptr<float>();
    const float* gd = dy.data_ptr<float>();
    float* dd = dx.data_ptr<float>();
    at::parallel_for(0, x.size(0) * blocks, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t p = begin; p < end; ++p) {
        const std::int64_t c = (p % blocks) * L;
        const float* scale = k.scale.data_ptr<float>() + c;
        const float* proj = k.projection.data_ptr<float>() + c;
        const float* g = k.mean_gradient.data_ptr<float>() + c;
        const float* m = k.mean.data_ptr<float>() + c;
        for (std::int64_t i = p * plane; i < (p + 1) * plane; i += L)
          for (std::int64_t l = 0; l < L; ++l)
            dd[i + l] = (gd[i + l] - g[l] - (xd[i + l] - m[l]) * proj[l]) * scale[l];
      }
    });
    return dx;
  }
};

// PReLU: a (sample, channel block) plane is `rows` pixels of L channels sharing the block's L
// slopes. In place ...
template <std::int64_t L>
FACEMAG_VECTOR_CLONES void prelu_blocked_plane(float* __restrict data,
                                               const float* __restrict slope, std::int64_t rows) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t l = 0; l < L; ++l) data[r * L + l] = prelu_value(data[r * L + l], slope[l]);
}

// ... and backward: the input's gradient, each slope's gradient added to `slope_grad`. Both
// products are taken for every value and the sign picks one, without a branch (signs are random)
// so that the loop vectorises; the values are those of x > 0 ? g : slope * g and
// x > 0 ? 0 : g * x, each product rounded once (the select keeps the sum's add from fusing).
template <std::int64_t L>
FACEMAG_VECTOR_CLONES void prelu_backward_blocked_plane(
    const float* __restrict x, const float* __restrict g, const float* __restrict slope,
    float* __restrict gx, float* __restrict slope_grad, std::int64_t rows) {
  using Lanes = FloatVec<L>;
  const Lanes zero{}, slopes = load_floats<L>(slope);
  Lanes sums{};
  for (std::int64_t r = 0; r < rows; ++r) {
    const Lanes xs = load_floats<L>(x + r * L), gs = load_floats<L>(g + r * L);
    const auto positive = zero < xs;
    const Lanes scaled = slopes * gs, product = gs * xs;
    store_floats<L>(gx + r * L, positive ? gs : scaled);
    sums += positive ? zero : product;
  }
  for (std::int64_t l = 0; l < L; ++l) slope_grad[l] += sums[l];
}

class BlockedPRelu : public torch::autograd::Function<BlockedPRelu> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    auto y = x.clone();
    float* yd = y.data_ptr<float>();
    with_lanes(x.size(4), [&](auto lanes) {
      for_each_plane(x, weight,
                     [&](std::int64_t offset, const float* slope, std::int64_t rows, float*) {
                       prelu_blocked_plane<lanes()>(yd + offset, slope, rows);
                     });
    });
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto g = grads[0].contiguous();
    auto gx = torch::empty_like(x);
    const float* xd = x.data_ptr<float>();
    const float* gd = g.data_ptr<float>();
    float* gxd = gx.data_ptr<float>();
    torch::Tensor partial;
    with_lanes(x.size(4), [&](auto lanes) {
      partial = for_each_plane(
          x, weight, [&](std::int64_t offset, const float* slope, std::int64_t rows, float* mine) {
            prelu_backward_blocked_plane<lanes()>(xd + offset, gd + offset, slope, gxd + offset,
                                                  mine, rows);
          });
    });
    return {gx, partial.sum(0).view(weight.sizes())};
  }

 private:
  // Calls plane(offset of the plane, its block's slopes, its pixel count, this thread's
  // slope-gradient sums for the block) for every plane, in parallel; returns the per-thread sums
  // (threads x C).
  template <class Plane>
  static torch::Tensor for_each_plane(const torch::Tensor& x, const torch::Tensor& weight,
                                      Plane plane) {
    const std::int64_t blocks = x.size(1), rows = x.size(2) * x.size(3), width = x.size(4);
    auto partial = torch::zeros({at::get_num_threads(), blocks * width}, torch::kFloat32);
    const float* slope = weight.data_ptr<float>();
    at::parallel_for(0, x.size(0) * blocks, 1, [&](std::int64_t begin, std::int64_t end) {
      float* mine = partial.data_ptr<float>() + at::get_thread_num() * partial.size(1);
      for (std::int64_t p = begin; p < end; ++p) {
        const std::int64_t channel = (p % blocks) * width;
        plane(p * rows * width, slope + channel, rows, mine + channel);
      }
    });
    return partial;
  }
};

}  // namespace

torch::Tensor prelu(const torch::Tensor& x, const torch::Tensor& weight) {
  require_blocked(x, "blocked PReLU");
  if (x.size(1) * x.size(4) != weight.numel())
    throw InvalidInput("blocked PReLU: " + std::to_string(weight.numel()) + " slopes for " +
                       std::to_string(x.size(1) * x.size(4)) + " channels");
  return BlockedPRelu::apply(x, weight.contiguous());
}

torch::Tensor batch_norm(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn) {
  require_blocked(x, "blocked BatchNorm");
  const auto& o = bn.options;
  const auto per_channel = [&](const torch::Tensor& v) {
    return v.view({1, x.size(1), 1, 1, x.size(4)});
  };
  if (!bn.is_training()) {
    // The running statistics: an affine map whose scale and shift still train.
    const auto scale = bn.weight / (bn.running_var + o.eps()).sqrt();
    const auto shift = bn.bias - bn.running_mean * scale;
    return x * per_channel(scale) + per_channel(shift);
  }
  if (!o.momentum() || !o.affine() || !o.track_running_stats())
    throw InvalidInput("blocked BatchNorm: needs an affine BatchNorm with momentum");
  const auto out = BatchNorm::apply(x, bn.weight, bn.bias, o.eps());
  // As LibTorch's BatchNorm: running = momentum * batch + (1 - momentum) * running, the
  // variance unbiased (n / (n - 1)), in double.
  const torch::NoGradGuard no_grad;
  const double momentum = *o.momentum();
  const double n = static_cast<double>(x.numel() / bn.weight.numel());
  const auto update = [&](torch::Tensor& running, const torch::Tensor& batch, double factor) {
    running.copy_(batch.to(torch::kFloat64) * (momentum * factor) +
                  running.to(torch::kFloat64) * (1 - momentum));
  };
  update(bn.running_mean, out[1], 1.0);
  update(bn.running_var, out[2], n / std::max(n - 1, 1.0));
  bn.num_batches_tracked += 1;
  return out[0];
}

#if FACEMAG_HAVE_ONEDNN
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

const dnnl::engine& engine() {
  static const dnnl::engine cpu(dnnl::engine::kind::cpu, 0);
  return cpu;
}

memory::dims logical_dims(const torch::Tensor& x) {
  if (x.dim() == 4) return {x.size(0), x.size(1), x.size(2), x.size(3)};
  return {x.size(0), x.size(1) * x.size(4), x.size(2), x.size(3)};
}

memory::desc activation(const memory::dims& dims) {
  return {dims, kF32, block_width() == 16 ? Tag::nChw16c : Tag::nChw8c};
}

memory view(const torch::Tensor& t, const memory::desc& md) {
  return memory(md, engine(), t.data_ptr());
}

// `t` (plain OIHW float32) in `layout`: t itself, or a reordered copy kept alive by `storage`.
memory weights_in(const torch::Tensor& t, const memory::desc& layout, torch::Tensor& storage,
                  dnnl::stream& stream) {
  memory plain = view(t, {logical_dims(t), kF32, Tag::oihw});
  if (plain.get_desc() == layout) return plain;
  storage =
      torch::empty({static_cast<std::int64_t>(layout.get_size() / sizeof(float))}, torch::kFloat32);
  memory target = view(storage, layout);
  dnnl::reorder(plain, target).execute(stream, plain, target);
  return target;
}

struct ConvShape {
  memory::dims src, weight;
  std::int64_t stride, padding;
  bool operator<(const ConvShape& o) const {
    return std::tie(src, weight, stride, padding) < std::tie(o.src, o.weight, o.stride, o.padding);
  }
  memory::dims dst() const {
    const auto out = [&](std::int64_t in) { return (in + 2 * padding - weight[2]) / stride + 1; };
    return {src[0], weight[0], out(src[2]), out(src[3])};
  }
  // A network's image input (fewer channels than a block) stays plain NCHW and gets no gradient.
  bool image_input() const { return src[1] % block_width() != 0; }
  memory::desc src_md() const {
    return image_input() ? memory::desc(src, kF32, Tag::nchw) : activation(src);
  }
};

// The primitives of one convolution shape, all with one algorithm.
struct ConvPrimitives {
  dnnl::algorithm algorithm;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_backward_data::primitive_desc data_pd;  // empty for an image input
  dnnl::convolution_backward_weights::primitive_desc weights_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data data;
  dnnl::convolution_backward_weights weights;

  ConvPrimitives(const ConvShape& shape, dnnl::algorithm algorithm) : algorithm(algorithm) {
    const auto weights_md = memory::desc(shape.weight, kF32, Tag::any);
    const auto dst_md = activation(shape.dst());
    const memory::dims strides{shape.stride, shape.stride}, pads{shape.padding, shape.padding};
    forward_pd = {{dnnl::prop_kind::forward_training, algorithm, shape.src_md(), weights_md, dst_md,
                   strides, pads, pads},
                  engine()};
    if (!shape.image_input()) {
      data_pd = {{algorithm, shape.src_md(), weights_md, dst_md, strides, pads, pads},
                 engine(),
                 forward_pd};
      data = dnnl::convolution_backward_data(data_pd);
    }
    weights_pd = {
        {algorithm, shape.src_md(), weights_md, dst_md, strides, pads, pads}, engine(), forward_pd};
    forward = dnnl::convolution_forward(forward_pd);
    weights = dnnl::convolution_backward_weights(weights_pd);
  }
};

class ConvCache {
 public:
  const ConvPrimitives& get(const ConvShape& shape) {
    const std::lock_guard lock(mutex_);
    auto it = cache_.find(shape);
    if (it != cache_.end()) return it->second;
    // Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions where oneDNN has it for this CPU in
    // all three directions (1.2-2.3x direct's speed, about 3x its float rounding), else direct.
    if (shape.stride == 1 && shape.weight[2] == 3 && !shape.image_input()) {
      try {
        return cache_.try_emplace(shape, shape, dnnl::algorithm::convolution_winograd)
            .first->second;
      } catch (const dnnl::error&) {
        // no Winograd kernels on this CPU or for this shape
      }
    }
    return cache_.try_emplace(shape, shape, dnnl::algorithm::convolution_direct).first->second;
  }

 private:
  std::mutex mutex_;
  std::map<ConvShape, ConvPrimitives> cache_;  // a training run has a few dozen shapes
};

ConvCache& conv_cache() {
  static ConvCache cache;
  return cache;
}

torch::Tensor blocked_like(const memory::dims& dims) {
  const auto width = block_width();
  return torch::empty({dims[0], dims[1] / width, dims[2], dims[3], width}, torch::kFloat32);
}

// Winograd F(2x2, 3x3) on 8-channel blocks, for CPUs where oneDNN has no Winograd (AVX2): each
// 2x2 output tile comes from a 4x4 input tile with 16 products per pair of channels instead of
// 36, as 16 matrix products (oneDNN's sgemm, one per point of the transformed tile) between
// transforms that run on whole blocks. The transforms only add and subtract (and halve the
// weights, exactly), so it rounds close to direct convolution (test_blocked_training measures it).
// Standalone on a Zen 3 (batch 64, 2 threads, ms, oneDNN's direct kernel against F(2x2)):
// 256 channels at 14x14 forward 107 / 62, data gradient 88 / 63, weight gradient 145 / 70;
// 512 at 7x7 132 / 78, 90 / 67, 183 / 96; 128 at 28x28 83 / 70, 79 / 69, 115 / 77. At 64
// channels the products are too narrow (56x56 forward 88 against 143), so those stay direct.
// Facemag's Winograd F(2x2, 3x3) (winograd.hpp) where oneDNN has none: 8-channel blocks.
bool winograd_applies(const ConvShape& shape) {
  return block_width() == winograd::kLanes && !shape.image_input() &&
         winograd::applies(shape.src[1], shape.weight[0], shape.weight[2], shape.stride,
                           shape.padding);
}

winograd::Blocked blocked_view(const torch::Tensor& x) {
  const auto dims = logical_dims(x);
  return {x.data_ptr<float>(), dims[0], dims[1], dims[2], dims[3]};
}

torch::Tensor winograd_workspace(const winograd::Blocked& x, std::int64_t outs) {
  return torch::empty({winograd::workspace_floats(x, outs)}, torch::kFloat32);
}

// The stride-1 padding-1 convolution of blocked x with transformed weights into blocked y.
void winograd_convolve(const torch::Tensor& x, const torch::Tensor& transformed, torch::Tensor& y) {
  const auto input = blocked_view(x);
  const auto outs = logical_dims(y)[1];
  auto workspace = winograd_workspace(input, outs);
  winograd::convolve(input, transformed.data_ptr<float>(), outs, y.data_ptr<float>(), {},
                     workspace.data_ptr<float>());
}

class Conv : public torch::autograd::Function<Conv> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, std::int64_t stride,
                               std::int64_t padding) {
    const auto w = weight.contiguous();
    const ConvShape shape{logical_dims(x), logical_dims(w), stride, padding};
    ctx->save_for_backward({x, w});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    auto y = blocked_like(shape.dst());
    if (winograd_applies(shape)) {
      winograd_convolve(x, winograd::transform_weights(w, false), y);
      return y;
    }
    const auto& p = conv_cache().get(shape);
    dnnl::stream stream(engine());
    torch::Tensor storage;
    const auto wm = weights_in(w, p.forward_pd.weights_desc(), storage, stream);
    p.forward.execute(stream, {{DNNL_ARG_SRC, view(x, shape.src_md())},
                               {DNNL_ARG_WEIGHTS, wm},
                               {DNNL_ARG_DST, view(y, p.forward_pd.dst_desc())}});
    stream.wait();
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const ConvShape shape{logical_dims(x), logical_dims(w), ctx->saved_data["stride"].toInt(),
                          ctx->saved_data["padding"].toInt()};
    const auto g = grads[0].contiguous();
    if (winograd_applies(shape)) {
      torch::Tensor dx, dw;
      if (ctx->needs_input_grad(0)) {
        dx = torch::empty_like(x);
        winograd_convolve(g, winograd::transform_weights(w, true), dx);
      }
      if (ctx->needs_input_grad(1)) {
        const auto input = blocked_view(x);
        auto workspace = winograd_workspace(input, shape.weight[0]);
        dw = winograd::weight_gradient(input, g.data_ptr<float>(), shape.weight[0],
                                       workspace.data_ptr<float>());
      }
      return {dx, dw, torch::Tensor(), torch::Tensor()};
    }
    const auto& p = conv_cache().get(shape);
    const auto diff_dst = view(g, activation(shape.dst()));
    dnnl::stream stream(engine());
    torch::Tensor dx, storage;
    if (ctx->needs_input_grad(0)) {
      if (shape.image_input())
        throw InvalidInput("blocked convolution: no gradient for an image input");
      dx = torch::empty_like(x);
      const auto wm = weights_in(w, p.data_pd.weights_desc(), storage, stream);
      p.data.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                              {DNNL_ARG_WEIGHTS, wm},
                              {DNNL_ARG_DIFF_SRC, view(dx, p.data_pd.diff_src_desc())}});
    }
    torch::Tensor dw;
    if (ctx->needs_input_grad(1)) {
      dw = torch::empty_like(w);
      memory plain = view(dw, {shape.weight, kF32, Tag::oihw});
      const auto layout = p.weights_pd.diff_weights_desc();
      torch::Tensor scratch;
      memory target = plain;
      if (layout != plain.get_desc()) {
        scratch = torch::empty({static_cast<std::int64_t>(layout.get_size() / sizeof(float))},
                               torch::kFloat32);
        target = view(scratch, layout);
      }
      p.weights.execute(stream, {{DNNL_ARG_SRC, view(x, shape.src_md())},
                                 {DNNL_ARG_DIFF_DST, diff_dst},
                                 {DNNL_ARG_DIFF_WEIGHTS, target}});
      if (target.get_data_handle() != plain.get_data_handle())
        dnnl::reorder(target, plain).execute(stream, target, plain);
    }
    stream.wait();
    return {dx, dw, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool available() { return onednn::cpu_has(dnnl_cpu_isa_avx2); }

StrideOneAlgorithm stride_one_algorithm(std::int64_t in, std::int64_t out) {
  if (!available()) return StrideOneAlgorithm::kDirect;
  const ConvShape shape{{8, in, 14, 14}, {out, in, 3, 3}, 1, 1};
  if (winograd_applies(shape)) return StrideOneAlgorithm::kWinograd2x2;
  return conv_cache().get(shape).algorithm == dnnl::algorithm::convolution_winograd
             ? StrideOneAlgorithm::kWinograd4x4
             : StrideOneAlgorithm::kDirect;
}

std::int64_t block_width() {
  static const std::int64_t width = onednn::cpu_has(dnnl_cpu_isa_avx512_core) ? 16 : 8;
  return width;
}

torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, std::int64_t stride,
                     std::int64_t padding) {
  const bool image = x.dim() == 4 && x.size(1) < block_width() && x.is_contiguous() &&
                     x.scalar_type() == torch::kFloat32;
  if (!image) require_blocked(x, "blocked convolution");
  if (weight.dim() != 4 || weight.size(0) % block_width() != 0 ||
      weight.size(2) != weight.size(3) || weight.size(1) != logical_dims(x)[1] ||
      weight.scalar_type() != torch::kFloat32)
    throw InvalidInput("blocked convolution: weight " + shape_of(weight) + " does not fit input " +
                       shape_of(x));
  return Conv::apply(x, weight, stride, padding);
}

#else  // without oneDNN: never available

bool available() { return false; }

StrideOneAlgorithm stride_one_algorithm(std::int64_t, std::int64_t) {
  return StrideOneAlgorithm::kDirect;
}

std::int64_t block_width() { return 16; }

torch::Tensor conv2d(const torch::Tensor&, const torch::Tensor&, std::int64_t, std::int64_t) {
  throw InvalidInput("blocked training needs oneDNN (this build has none)");
}

#endif

}  // namespace facemag::nn::blocked
