// Margin-based softmax losses of face recognition training, as MagFace writes them
// (models/magface.py: MagLinear + MagLoss; models/parallel_maglinear.py for the cosine
// branch), with the classifier optionally split by columns across processes (MagFace's
// parallel_maglinear/parallel_magloss through torchshard).
//
//   MagFace      cos(theta + m(a)), m adaptive in the magnitude a, plus lambda_g * g(a)
//   Mag-CosFace  cos(theta) - m(a),  plus lambda_g * g(a)
//   ArcFace      cos(theta + m), fixed m (l_margin = u_margin), lambda_g = 0
//   CosFace      cos(theta) - m,  fixed m, lambda_g = 0
// with a = ||x|| clamped to [l_a, u_a], m(a) = (u_m - l_m) / (u_a - l_a) (a - l_a) + l_m and
// g(a) = a / u_a^2 + 1 / a. Logits are scaled by `scale`.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace facemag::train {

class Collective;

enum class MarginKind {
  kAngular,  // cos(theta + m): MagFace, ArcFace
  kCosine,   // cos(theta) - m: Mag-CosFace, CosFace
};

struct MarginLossOptions {
  std::string name = "magface";
  MarginKind kind = MarginKind::kAngular;
  double l_a = 10.0, u_a = 110.0;          // magnitude range
  double l_margin = 0.45, u_margin = 0.8;  // margin at l_a and at u_a (equal: fixed margin)
  double lambda_g = 35.0;                  // weight of the magnitude regulariser g
  double scale = 64.0;
  // Angular margins only: MagFace's easy_margin (the margin only where cos(theta) > 0), else
  // ArcFace's cos(theta) - sin(pi - m) m below cos(pi - m).
  bool easy_margin = true;
};

// "magface" (run/run.sh: l_a 10, u_a 110, l_m 0.45, u_m 0.8, lambda_g 35), "mag-cosface"
// (run/run_dist_cos.sh: l_m 0.35, u_m 0.8, lambda_g 150), "arcface" (m 0.5, with MagLinear's
// easy margin as MagFace runs it; insightface's variant is easy_margin = false), "cosface"
// (m 0.35); scale 64 for all. InvalidInput for other names.
MarginLossOptions margin_loss_preset(const std::string& name);
std::vector<std::string> margin_loss_names();
// InvalidInput naming the field when options are inconsistent (l_a >= u_a, negative values...).
void validate(const MarginLossOptions& options);

// The two logit matrices of MagLinear (already times scale) for embeddings x (B x D, raw) and
// the classifier columns W (D x C_local, in_features x out_features as MagLinear stores it,
// normalised per column here), with x's clamped magnitude and margin (B x 1 each).
struct MarginLogits {
  torch::Tensor cos_theta;    // scale * cos(theta)
  torch::Tensor cos_theta_m;  // scale * (cos(theta) with the margin)
  torch::Tensor x_norm;
  torch::Tensor margin;
};
MarginLogits margin_logits(const torch::Tensor& x, const torch::Tensor& weight,
                           const MarginLossOptions& options);

// mean over the batch of g(a) for a = clamped magnitudes (B x 1); differentiable.
torch::Tensor magnitude_regularizer(const torch::Tensor& x_norm, const MarginLossOptions& options);

// Softmax cross-entropy (mean over `batch_total` samples) of MagLoss's logits
// (one_hot * cos_theta_m + (1 - one_hot) * cos_theta) whose columns are split across the
// processes of `collective`: this process holds classes [class_offset, class_offset + C_local).
// Maxima and sums of exponentials are all-reduced, so every process sees the full loss.
struct ShardedCrossEntropy {
  // Differentiable stand-in whose gradient with respect to this shard's logits is the gradient
  // of the full loss (its value is not the loss).
  torch::Tensor objective;
  double loss = 0;             // the cross-entropy itself
  std::int64_t correct = 0;    // samples whose largest cos_theta logit is their label's
  torch::Tensor target_logit;  // B: each sample's cos_theta logit of its label (scaled)
};
ShardedCrossEntropy sharded_cross_entropy(const MarginLogits& logits, const torch::Tensor& labels,
                                          std::int64_t class_offset, Collective& collective);

}  // namespace facemag::train
