#include "facemag/train/margin_loss.hpp"

#include <torch/torch.h>

#include <cmath>

#include "facemag/error.hpp"
#include "facemag/train/collective.hpp"

namespace facemag::train {

MarginLossOptions margin_loss_preset(const std::string& name) {
  MarginLossOptions o;
  o.name = name;
  if (name == "magface") return o;
  if (name == "mag-cosface") {
    o.kind = MarginKind::kCosine;
    o.l_margin = 0.35;
    o.lambda_g = 150.0;
    return o;
  }
  if (name == "arcface" || name == "cosface") {
    o.kind = name == "arcface" ? MarginKind::kAngular : MarginKind::kCosine;
    o.l_margin = o.u_margin = name == "arcface" ? 0.5 : 0.35;
    o.lambda_g = 0.0;
    return o;
  }
  throw InvalidInput("unknown loss '" + name +
                     "' (expected magface, mag-cosface, arcface or cosface)");
}

std::vector<std::string> margin_loss_names() {
  return {"magface", "mag-cosface", "arcface", "cosface"};
}

void validate(const MarginLossOptions& o) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw InvalidInput("loss options: " + what);
  };
  require(o.l_a > 0 && o.l_a < o.u_a, "need 0 < l_a < u_a, got l_a " + std::to_string(o.l_a) +
                                          ", u_a " + std::to_string(o.u_a));
  require(o.l_margin >= 0 && o.u_margin >= 0 && o.u_margin < M_PI / 2,
          "margins must lie in [0, pi/2), got " + std::to_string(o.l_margin) + " and " +
              std::to_string(o.u_margin));
  require(o.lambda_g >= 0, "lambda_g must be >= 0, got " + std::to_string(o.lambda_g));
  require(o.scale > 0, "scale must be > 0, got " + std::to_string(o.scale));
}

MarginLogits margin_logits(const torch::Tensor& x, const torch::Tensor& weight,
                           const MarginLossOptions& o) {
  namespace F = torch::nn::functional;
  MarginLogits out;
  out.x_norm = x.norm(2, 1, true).clamp(o.l_a, o.u_a);
  // SoftmaxBuilder._margin, in MagFace's order of operations (a Python float times a tensor).
  out.margin = (o.u_margin - o.l_margin) / (o.u_a - o.l_a) * (out.x_norm - o.l_a) + o.l_margin;
  auto cos_theta = torch::mm(F::normalize(x, F::NormalizeFuncOptions().dim(1)),
                             F::normalize(weight, F::NormalizeFuncOptions().dim(0)));
  torch::Tensor cos_theta_m;
  if (o.kind == MarginKind::kCosine) {
    cos_theta_m = cos_theta - out.margin;  // parallel_maglinear's cosine branch: no clamp
  } else {
    cos_theta = cos_theta.clamp(-1, 1);
    const auto sin_theta = torch::sqrt(1.0 - torch::pow(cos_theta, 2));
    cos_theta_m = cos_theta * torch::cos(out.margin) - sin_theta * torch::sin(out.margin);
    if (o.easy_margin) {
      cos_theta_m = torch::where(cos_theta > 0, cos_theta_m, cos_theta);
    } else {
      const auto mm = torch::sin(M_PI - out.margin) * out.margin;
      const auto threshold = torch::cos(M_PI - out.margin);
      cos_theta_m = torch::where(cos_theta > threshold, cos_theta_m, cos_theta - mm);
    }
  }
  out.cos_theta = o.scale * cos_theta;
  out.cos_theta_m = o.scale * cos_theta_m;
  return out;
}

torch::Tensor magnitude_regularizer(const torch::Tensor& x_norm, const MarginLossOptions& o) {
  return torch::mean(1.0 / (o.u_a * o.u_a) * x_norm + 1.0 / x_norm);
}

ShardedCrossEntropy sharded_cross_entropy(const MarginLogits& logits, const torch::Tensor& labels,
                                          std::int64_t class_offset, Collective& collective) {
  const std::int64_t classes = logits.cos_theta.size(1);
  const auto local = labels - class_offset;
  const auto here = (local >= 0) & (local < classes);
  const auto one_hot = torch::zeros_like(logits.cos_theta)
                           .scatter_(1, local.clamp(0, classes - 1).view({-1, 1}),
                                     here.to(logits.cos_theta.scalar_type()).view({-1, 1}));
  // MagLoss's output: the margin logit for the label, the plain one for every other class.
  const auto output = one_hot * logits.cos_theta_m + (1.0 - one_hot) * logits.cos_theta;

  torch::NoGradGuard no_grad;
  auto row_max = std::get<0>(output.max(1)).contiguous();
  collective.all_reduce_max(row_max);
  // Softmax pieces against the global maximum; their gradient flows only through `exps`.
  torch::Tensor exps;
  {
    torch::AutoGradMode grad(true);
    exps = torch::exp(output - row_max.view({-1, 1}));
  }
  auto row_sum = exps.detach().sum(1);
  auto target = (output.detach() * one_hot).sum(1);
  auto cos_max = std::get<0>(logits.cos_theta.detach().max(1)).contiguous();
  auto cos_target = (logits.cos_theta.detach() * one_hot).sum(1);
  auto sums = torch::stack({row_sum, target, cos_target});
  collective.all_reduce_sum(sums);
  collective.all_reduce_max(cos_max);

  ShardedCrossEntropy out;
  const double rows = static_cast<double>(output.size(0));
  out.loss = (torch::log(sums[0]) + row_max - sums[1]).to(torch::kFloat64).mean().item<double>();
  out.correct = (sums[2] >= cos_max).sum().item<std::int64_t>();
  out.target_logit = sums[2].clone();
  {
    torch::AutoGradMode grad(true);
    // d/dz_ij: exp(z_ij - M_i) / S_i - one_hot_ij, over `rows`: the cross-entropy's gradient.
    out.objective = ((exps / sums[0].view({-1, 1})).sum() - (output * one_hot).sum()) / rows;
  }
  return out;
}

}  // namespace facemag::train
