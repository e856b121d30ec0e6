#include "facemag/eval/cluster.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

namespace facemag {
namespace {

torch::Tensor cosine_matrix(const torch::Tensor& embeddings) {
  const auto unit = torch::nn::functional::normalize(
      embeddings.to(torch::kFloat64), torch::nn::functional::NormalizeFuncOptions().dim(1));
  return unit.matmul(unit.t());
}

}  // namespace

Clustering cluster_faces(const torch::Tensor& embeddings, double threshold) {
  const std::int64_t n = embeddings.size(0);
  Clustering out;
  out.group.resize(static_cast<std::size_t>(n));
  if (n == 0) return out;
  const auto cos = cosine_matrix(embeddings).contiguous();
  // sum[a][b]: sum of pairwise similarities between clusters a and b; members[a]: their sizes.
  std::vector<std::vector<double>> sum(static_cast<std::size_t>(n),
                                       std::vector<double>(static_cast<std::size_t>(n)));
  const auto c = cos.accessor<double, 2>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) sum[i][j] = c[i][j];
  }
  std::vector<std::int64_t> size(static_cast<std::size_t>(n), 1);
  std::vector<std::int64_t> owner(static_cast<std::size_t>(n));
  std::iota(owner.begin(), owner.end(), 0);
  std::vector<bool> alive(static_cast<std::size_t>(n), true);
  while (true) {
    double best = -2;
    std::int64_t ba = -1, bb = -1;
    for (std::int64_t a = 0; a < n; ++a) {
      if (!alive[a]) continue;
      for (std::int64_t b = a + 1; b < n; ++b) {
        if (!alive[b]) continue;
        const double mean = sum[a][b] / static_cast<double>(size[a] * size[b]);
        if (mean > best) {
          best = mean;
          ba = a;
          bb = b;
        }
      }
    }
    if (ba < 0 || best < threshold) break;
    for (std::int64_t k = 0; k < n; ++k) {
      sum[ba][k] += sum[bb][k];
      sum[k][ba] = sum[ba][k];
    }
    size[ba] += size[bb];
    alive[bb] = false;
    for (auto& o : owner) o = o == bb ? ba : o;
  }
  // Number groups by size, largest first (ties: first member first).
  std::vector<std::int64_t> roots;
  for (std::int64_t a = 0; a < n; ++a) {
    if (alive[a]) roots.push_back(a);
  }
  std::stable_sort(roots.begin(), roots.end(), [&](auto x, auto y) { return size[x] > size[y]; });
  std::vector<int> number(static_cast<std::size_t>(n), -1);
  for (std::size_t r = 0; r < roots.size(); ++r) number[roots[r]] = static_cast<int>(r);
  for (std::int64_t i = 0; i < n; ++i) out.group[i] = number[owner[i]];
  out.groups = static_cast<int>(roots.size());
  return out;
}

torch::Tensor similarity_to_groups(const torch::Tensor& embeddings, const Clustering& clustering) {
  const auto cos = cosine_matrix(embeddings);
  const std::int64_t n = cos.size(0);
  auto out = torch::zeros({n, clustering.groups}, torch::kFloat64);
  auto o = out.accessor<double, 2>();
  const auto c = cos.accessor<double, 2>();
  std::vector<std::int64_t> members(static_cast<std::size_t>(clustering.groups), 0);
  for (int g : clustering.group) ++members[g];
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (i != j) o[i][clustering.group[j]] += c[i][j];
    }
    for (int g = 0; g < clustering.groups; ++g) {
      const std::int64_t others = members[g] - (clustering.group[i] == g ? 1 : 0);
      o[i][g] = others > 0 ? o[i][g] / static_cast<double>(others) : 0.0;
    }
  }
  return out;
}

}  // namespace facemag
