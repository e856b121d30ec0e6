#include "facemag/nn/module_utils.hpp"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <set>

#include "facemag/error.hpp"
#include "kernels.hpp"

namespace facemag::nn {
namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::uint64_t fnv1a64(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fills a float tensor with f(u(name, i)) computed in double, rounded once to float32.
template <class F>
void fill(torch::Tensor& t, const std::string& name, F f) {
  torch::NoGradGuard no_grad;
  auto cpu = torch::empty(t.sizes(), torch::kFloat32);
  float* out = cpu.data_ptr<float>();
  const std::uint64_t h = fnv1a64(name);
  for (std::int64_t i = 0; i < cpu.numel(); ++i) {
    const std::uint64_t x = h + static_cast<std::uint64_t>(i + 1) * 0x9e3779b97f4a7c15ull;
    const double u = static_cast<double>(mix(x) >> 11) * 0x1p-53 * 2.0 - 1.0;
    out[i] = static_cast<float>(f(u));
  }
  t.copy_(cpu);
}

// PReLU in place on `count` values with one slope each (a channels-last row) ...
template <class T>
FACEMAG_VECTOR_CLONES void prelu_per_value(T* __restrict data, const float* __restrict slope,
                                           std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i)
    data[i] = static_cast<T>(prelu_value(static_cast<float>(data[i]), slope[i]));
}

// ... or on `count` values sharing one slope (an NCHW plane).
template <class T>
FACEMAG_VECTOR_CLONES void prelu_shared_slope(T* __restrict data, float slope, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i)
    data[i] = static_cast<T>(prelu_value(static_cast<float>(data[i]), slope));
}

// In place, `rows` runs of `channels` values (channel fastest: channels-last or N x C).
template <class T>
void prelu_rows(T* data, std::int64_t rows, std::int64_t channels, const T* slope) {
  const std::vector<float> a(slope, slope + channels);
  at::parallel_for(0, rows, std::max<std::int64_t>(1, 16384 / channels),
                   [&](std::int64_t begin, std::int64_t end) {
                     for (std::int64_t r = begin; r < end; ++r)
                       prelu_per_value(data + r * channels, a.data(), channels);
                   });
}

// In place, `planes` of `plane` values sharing one slope (NCHW).
template <class T>
void prelu_planes(T* data, std::int64_t planes, std::int64_t channels, std::int64_t plane,
                  const T* slope) {
  at::parallel_for(0, planes, std::max<std::int64_t>(1, 16384 / plane),
                   [&](std::int64_t begin, std::int64_t end) {
                     for (std::int64_t p = begin; p < end; ++p)
                       prelu_shared_slope(data + p * plane, static_cast<float>(slope[p % channels]),
                                          plane);
                   });
}

// PReLU's backward on `count` values with one slope each (a channels-last row): the input's
// gradient, and each slope's gradient added to `slope_grad`.
FACEMAG_VECTOR_CLONES void prelu_backward_per_value(
    const float* __restrict x, const float* __restrict g, const float* __restrict slope,
    float* __restrict gx, float* __restrict slope_grad, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    const bool positive = x[i] > 0;
    gx[i] = positive ? g[i] : slope[i] * g[i];
    slope_grad[i] += positive ? 0.0f : g[i] * x[i];
  }
}

// ... on `count` values sharing one slope (an NCHW plane); returns the slope's gradient.
FACEMAG_VECTOR_CLONES float prelu_backward_shared_slope(const float* __restrict x,
                                                        const float* __restrict g, float slope,
                                                        float* __restrict gx, std::int64_t count) {
  float slope_grad = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    const bool positive = x[i] > 0;
    gx[i] = positive ? g[i] : slope * g[i];
    slope_grad += positive ? 0.0f : g[i] * x[i];
  }
  return slope_grad;
}

bool fast_prelu_layout(const torch::Tensor& x, const torch::Tensor& weight) {
  return (x.dim() == 2 || x.dim() == 4) && x.size(1) == weight.numel() &&
         (x.is_contiguous() ||
          (x.dim() == 4 && x.is_contiguous(torch::MemoryFormat::ChannelsLast))) &&
         weight.is_contiguous() && x.scalar_type() == torch::kFloat32 &&
         weight.scalar_type() == torch::kFloat32;
}

// PReLU for training: forward and backward through the hand-written passes (LibTorch 1.13's
// prelu_backward takes a third of an iResNet training step on channels-last activations).
class TrainablePRelu : public torch::autograd::Function<TrainablePRelu> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    // Autograd does not record inside forward: this takes the in-place pass on a copy (which
    // keeps x's memory format).
    return nn::prelu(x.clone(), weight);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const bool channels_last = x.dim() == 4 && !x.is_contiguous();
    const auto g = grads[0].contiguous(channels_last ? torch::MemoryFormat::ChannelsLast
                                                     : torch::MemoryFormat::Contiguous);
    auto gx = torch::empty_like(x);
    const std::int64_t channels = weight.numel();
    const float* xd = x.data_ptr<float>();
    const float* gd = g.data_ptr<float>();
    float* gxd = gx.data_ptr<float>();
    const float* slope = weight.data_ptr<float>();
    torch::Tensor gw;
    if (x.dim() == 2 || channels_last) {
      // Rows of channels: one partial slope gradient per thread, added up at the end.
      const std::int64_t rows = x.numel() / channels;
      const int threads = at::get_num_threads();
      auto partial = torch::zeros({threads, channels}, torch::kFloat32);
      float* pd = partial.data_ptr<float>();
      at::parallel_for(0, rows, std::max<std::int64_t>(1, 16384 / channels),
                       [&](std::int64_t begin, std::int64_t end) {
                         float* mine = pd + at::get_thread_num() * channels;
                         for (std::int64_t r = begin; r < end; ++r)
                           prelu_backward_per_value(xd + r * channels, gd + r * channels, slope,
                                                    gxd + r * channels, mine, channels);
                       });
      gw = partial.sum(0);
    } else {
      const std::int64_t planes = x.size(0) * channels, plane = x.numel() / planes;
      auto per_plane = torch::empty({x.size(0), channels}, torch::kFloat32);
      float* pp = per_plane.data_ptr<float>();
      at::parallel_for(0, planes, std::max<std::int64_t>(1, 16384 / plane),
                       [&](std::int64_t begin, std::int64_t end) {
                         for (std::int64_t p = begin; p < end; ++p)
                           pp[p] = prelu_backward_shared_slope(xd + p * plane, gd + p * plane,
                                                               slope[p % channels], gxd + p * plane,
                                                               plane);
                       });
      gw = per_plane.sum(0);
    }
    return {gx, gw.view(weight.sizes())};
  }
};

}  // namespace

torch::Tensor prelu(torch::Tensor x, const torch::Tensor& weight) {
  // Training: the in-place pass writes through data pointers, invisible to autograd.
  if (torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())) {
    return fast_prelu_layout(x, weight) ? TrainablePRelu::apply(x, weight)
                                        : torch::prelu(x, weight);
  }
  const auto channels = weight.numel();
  const bool channels_last = x.dim() == 4 && x.is_contiguous(torch::MemoryFormat::ChannelsLast);
  const bool plain = x.is_contiguous();
  if ((x.dim() == 2 || x.dim() == 4) && x.size(1) == channels && (channels_last || plain) &&
      weight.is_contiguous() && weight.scalar_type() == x.scalar_type() &&
      (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16)) {
    AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, x.scalar_type(), "prelu", [&] {
      auto* data = x.data_ptr<scalar_t>();
      const auto* slope = weight.data_ptr<scalar_t>();
      if (x.dim() == 2 || (channels_last && !plain)) {
        prelu_rows(data, x.numel() / channels, channels, slope);
      } else {
        prelu_planes(data, x.size(0) * channels, channels, x.numel() / (x.size(0) * channels),
                     slope);
      }
    });
    return x;
  }
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[1] = channels;
  auto negative = x.clamp_max(0).mul_(weight.view(shape));
  return x.clamp_min_(0).add_(negative);
}

double formula_uniform(const std::string& name, std::uint64_t index) {
  const std::uint64_t x = fnv1a64(name) + (index + 1) * 0x9e3779b97f4a7c15ull;
  return static_cast<double>(mix(x) >> 11) * 0x1p-53 * 2.0 - 1.0;
}

io::NamedTensors state_dict(const torch::nn::Module& module) {
  io::NamedTensors out;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    const auto& m = *item.value();
    for (const auto& p : m.named_parameters(/*recurse=*/false)) {
      out.emplace_back(join(item.key(), p.key()), p.value());
    }
    for (const auto& b : m.named_buffers(/*recurse=*/false)) {
      out.emplace_back(join(item.key(), b.key()), b.value());
    }
  }
  return out;
}

void load_state_dict_strict(torch::nn::Module& module, const io::NamedTensors& tensors,
                            const std::string& source) {
  std::map<std::string, torch::Tensor> given;
  for (const auto& [name, t] : tensors) {
    if (!given.emplace(name, t).second) {
      throw ModelLoadError(source + ": tensor '" + name + "' appears twice");
    }
  }
  const io::NamedTensors expected = state_dict(module);
  std::vector<std::string> missing;
  for (const auto& [name, target] : expected) {
    if (!given.count(name)) missing.push_back(name);
  }
  std::set<std::string> expected_names;
  for (const auto& e : expected) expected_names.insert(e.first);
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : given) {
    if (!expected_names.count(name)) unexpected.push_back(name);
  }
  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", '" : "'") + names[i] + "'";
    if (names.size() > 5) s += " and " + std::to_string(names.size() - 5) + " more";
    return s;
  };
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = source + ": checkpoint does not fit the architecture:";
    if (!missing.empty())
      msg += " missing " + std::to_string(missing.size()) + " tensor(s) " + list(missing) + ";";
    if (!unexpected.empty()) {
      msg += " unexpected " + std::to_string(unexpected.size()) + " tensor(s) " + list(unexpected) +
             ";";
    }
    msg += " (wrong --arch, or weights of another model?)";
    throw ModelLoadError(msg);
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : expected) {
    const torch::Tensor& src = given.at(name);
    if (src.sizes() != target.sizes()) {
      throw ModelLoadError(source + ": tensor '" + name + "' has shape " +
                           std::string(c10::str(src.sizes())) + ", the architecture expects " +
                           std::string(c10::str(target.sizes())));
    }
    if (src.is_floating_point() != target.is_floating_point()) {
      throw ModelLoadError(source + ": tensor '" + name + "' has dtype " +
                           io::dtype_name(src.scalar_type()) + ", the architecture expects " +
                           io::dtype_name(target.scalar_type()));
    }
    target.copy_(src);
  }
}

void fill_formula_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    auto& m = *item.value();
    const std::string& prefix = item.key();
    auto name_of = [&](const char* leaf) { return join(prefix, leaf); };
    if (auto* conv = m.as<torch::nn::Conv2d>()) {
      const double fan_in = static_cast<double>(conv->weight[0].numel());
      fill(conv->weight, name_of("weight"), [&](double u) { return u * std::sqrt(3.0 / fan_in); });
      if (conv->bias.defined())
        fill(conv->bias, name_of("bias"), [](double u) { return 0.01 * u; });
    } else if (auto* linear = m.as<torch::nn::Linear>()) {
      const double fan_in = static_cast<double>(linear->weight.size(1));
      fill(linear->weight, name_of("weight"),
           [&](double u) { return u * std::sqrt(3.0 / fan_in); });
      if (linear->bias.defined())
        fill(linear->bias, name_of("bias"), [](double u) { return 0.01 * u; });
    } else if (m.as<torch::nn::BatchNorm2d>() || m.as<torch::nn::BatchNorm1d>()) {
      for (auto& p : m.named_parameters(false)) {
        const bool weight = p.key() == "weight";
        fill(p.value(), name_of(p.key().c_str()),
             [&](double u) { return weight ? 1.0 + 0.1 * u : 0.1 * u; });
      }
      for (auto& b : m.named_buffers(false)) {
        if (b.key() == "running_mean")
          fill(b.value(), name_of("running_mean"), [](double u) { return 0.1 * u; });
        if (b.key() == "running_var")
          fill(b.value(), name_of("running_var"), [](double u) { return 1.25 + 0.25 * u; });
        if (b.key() == "num_batches_tracked") b.value().zero_();
      }
    } else if (auto* prelu = m.as<torch::nn::PReLU>()) {
      fill(prelu->weight, name_of("weight"), [](double u) { return 0.25 + 0.05 * u; });
    } else if (!m.named_parameters(false).is_empty() || !m.named_buffers(false).is_empty()) {
      throw Error("fill_formula_weights: module '" + prefix + "' (" + m.name() +
                  ") has tensors but no formula");
    }
  }
}

torch::Tensor scale_output_channels(const torch::Tensor& conv_weight, const torch::Tensor& scale,
                                    torch::ScalarType dtype) {
  constexpr std::int64_t kChannelsAtATime = 32;
  auto out =
      torch::empty(conv_weight.sizes(),
                   torch::TensorOptions(dtype).memory_format(torch::MemoryFormat::ChannelsLast));
  for (std::int64_t first = 0; first < out.size(0); first += kChannelsAtATime) {
    const auto n = std::min(kChannelsAtATime, out.size(0) - first);
    // copy_ rounds to nearest, as .to(dtype) does.
    out.narrow(0, first, n)
        .copy_(conv_weight.narrow(0, first, n).to(torch::kFloat64) *
               scale.narrow(0, first, n).view({-1, 1, 1, 1}));
  }
  return out;
}

}  // namespace facemag::nn
