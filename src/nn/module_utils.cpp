#include "facemag/nn/module_utils.hpp"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "facemag/error.hpp"

namespace facemag::nn {
namespace {

std::string shape_string(c10::IntArrayRef sizes) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "]";
  return s.str();
}

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

}  // namespace

torch::Tensor prelu(torch::Tensor x, const torch::Tensor& weight) {
  if (x.dim() == 4 && x.is_contiguous(torch::MemoryFormat::ChannelsLast)) {
    // Broadcasting a 1 x C x 1 x 1 weight over a channels-last tensor takes a scalar path in
    // LibTorch 1.13 (20x slower); as the N x H x W x C view it is a plain row broadcast.
    auto nhwc = x.permute({0, 2, 3, 1});
    auto negative = nhwc.clamp_max(0).mul_(weight.view({-1}));
    nhwc.clamp_min_(0).add_(negative);
    return x;
  }
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[1] = weight.numel();
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
                           shape_string(src.sizes()) + ", the architecture expects " +
                           shape_string(target.sizes()));
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

}  // namespace facemag::nn
