#include "facemag/eval/analysis.hpp"

#include <torch/torch.h>

#include "facemag/error.hpp"

namespace facemag::eval {

EmbeddingAnalysis analyse_embeddings(const torch::Tensor& raw, const std::vector<int>& group,
                                     const std::vector<std::string>& group_names,
                                     const std::vector<double>& quality) {
  if (raw.dim() != 2 || raw.size(0) != static_cast<std::int64_t>(group.size()))
    throw InvalidInput("analysis: embeddings and group labels disagree in count");
  if (!quality.empty() && quality.size() != group.size())
    throw InvalidInput("analysis: " + std::to_string(quality.size()) + " qualities for " +
                       std::to_string(group.size()) + " embeddings");
  const auto x = raw.to(torch::kFloat64);
  const auto norms = x.norm(2, 1);
  const auto qualities = quality.empty() ? norms : torch::tensor(quality, torch::kFloat64);
  const auto unit = x / norms.unsqueeze(1);
  const auto n = x.size(0);
  EmbeddingAnalysis a;
  a.n = static_cast<std::size_t>(n);
  const auto cosine = unit.matmul(unit.t()).clamp(-1, 1).contiguous();
  // |u - v|^2 = 2 - 2 cos for unit vectors.
  const auto distance = (2 - 2 * cosine).clamp_min(0).sqrt().contiguous();
  a.cosine.assign(cosine.data_ptr<double>(), cosine.data_ptr<double>() + n * n);
  a.distance.assign(distance.data_ptr<double>(), distance.data_ptr<double>() + n * n);

  // PCA of the unit embeddings; each axis's sign fixed so that its largest loading is positive.
  const auto overall = unit.mean(0);
  const auto centred = unit - overall;
  if (n >= 2) {
    const auto [u, s, vh] = torch::linalg_svd(centred, false);
    auto axes = vh.slice(0, 0, std::min<std::int64_t>(2, vh.size(0)));
    const auto idx = axes.abs().argmax(1);
    const auto signs = axes.gather(1, idx.unsqueeze(1)).sign();
    axes = axes * torch::where(signs == 0, torch::ones_like(signs), signs);
    auto proj = centred.matmul(axes.t());
    if (proj.size(1) < 2) proj = torch::cat({proj, torch::zeros({n, 1}, proj.options())}, 1);
    proj = proj.contiguous();
    a.pca.assign(proj.data_ptr<double>(), proj.data_ptr<double>() + n * 2);
    const auto var = s.pow(2);
    const double total = var.sum().item<double>();
    for (int k = 0; k < 2 && k < var.size(0); ++k)
      a.explained[k] = total > 0 ? var[k].item<double>() / total : 0.0;
  } else {
    a.pca.assign(static_cast<std::size_t>(2 * n), 0.0);
  }

  const auto groups = static_cast<std::int64_t>(group_names.size());
  std::vector<torch::Tensor> centroids;
  for (std::int64_t g = 0; g < groups; ++g) {
    std::vector<std::int64_t> members;
    for (std::int64_t i = 0; i < n; ++i) {
      if (group[static_cast<std::size_t>(i)] == g) members.push_back(i);
    }
    GroupSpread spread;
    spread.name = group_names[static_cast<std::size_t>(g)];
    spread.size = members.size();
    if (members.empty()) {
      centroids.push_back(torch::full({x.size(1)}, std::nan(""), x.options()));
      a.groups.push_back(spread);
      continue;
    }
    const auto index = torch::tensor(members, torch::kInt64);
    const auto m = unit.index_select(0, index);
    const auto centroid = m.mean(0);
    centroids.push_back(centroid);
    spread.wss = (m - centroid).pow(2).sum().item<double>();
    spread.mean_quality = qualities.index_select(0, index).mean().item<double>();
    if (members.size() > 1) {
      const double pairs = double(members.size()) * double(members.size() - 1);
      const auto d = distance.index_select(0, index).index_select(1, index);
      const auto c = cosine.index_select(0, index).index_select(1, index);
      spread.mean_pairwise_distance = d.sum().item<double>() / pairs;
      spread.mean_pairwise_similarity =
          (c.sum().item<double>() - c.diagonal().sum().item<double>()) / pairs;
    }
    a.total_wss += spread.wss;
    a.between_ss += double(members.size()) * (centroid - overall).pow(2).sum().item<double>();
    a.groups.push_back(spread);
  }
  for (std::int64_t g = 0; g < groups; ++g) {
    for (std::int64_t h = 0; h < groups; ++h)
      a.centroid_distance.push_back((centroids[g] - centroids[h]).norm().item<double>());
  }
  return a;
}

}  // namespace facemag::eval
