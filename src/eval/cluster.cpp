#include "facemag/eval/cluster.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <unordered_map>

#include "facemag/error.hpp"

namespace facemag {
namespace {

torch::Tensor cosine_matrix(const torch::Tensor& embeddings) {
  const auto unit = torch::nn::functional::normalize(
      embeddings.to(torch::kFloat64), torch::nn::functional::NormalizeFuncOptions().dim(1));
  return unit.matmul(unit.t());
}

}  // namespace

Dendrogram average_linkage(const torch::Tensor& embeddings) {
  const auto n = static_cast<std::size_t>(embeddings.size(0));
  Dendrogram out;
  out.rows = n;
  if (n < 2) return out;
  // sim[a][b]: mean similarity between the groups in slots a and b (Lance-Williams update).
  auto sim = cosine_matrix(embeddings).contiguous();
  double* s = sim.data_ptr<double>();
  const auto at = [&](std::size_t a, std::size_t b) -> double& { return s[a * n + b]; };
  std::vector<std::size_t> size(n, 1);
  std::vector<bool> alive(n, true);
  std::vector<std::size_t> chain;
  chain.reserve(n);
  std::size_t remaining = n;
  while (remaining > 1) {
    if (chain.empty()) {
      std::size_t first = 0;
      while (!alive[first]) ++first;
      chain.push_back(first);
    }
    const std::size_t a = chain.back();
    // a's nearest neighbour; the previous chain element wins ties, so that chains end.
    const std::size_t previous = chain.size() >= 2 ? chain[chain.size() - 2] : n;
    std::size_t best = previous;
    double best_sim = previous < n ? at(a, previous) : -3.0;
    for (std::size_t k = 0; k < n; ++k) {
      if (!alive[k] || k == a) continue;
      if (at(a, k) > best_sim) {
        best_sim = at(a, k);
        best = k;
      }
    }
    if (best != previous) {
      chain.push_back(best);
      continue;
    }
    // a and previous are each other's nearest: merge them into the lower slot.
    chain.pop_back();
    chain.pop_back();
    const std::size_t keep = std::min(a, previous), gone = std::max(a, previous);
    out.merges.push_back({keep, gone, best_sim});
    const double wk = double(size[keep]), wg = double(size[gone]);
    for (std::size_t k = 0; k < n; ++k) {
      if (!alive[k] || k == keep || k == gone) continue;
      const double merged = (wk * at(keep, k) + wg * at(gone, k)) / (wk + wg);
      at(keep, k) = merged;
      at(k, keep) = merged;
    }
    size[keep] += size[gone];
    alive[gone] = false;
    --remaining;
  }
  std::stable_sort(out.merges.begin(), out.merges.end(),
                   [](const auto& x, const auto& y) { return x.similarity > y.similarity; });
  return out;
}

Clustering Dendrogram::cut(double threshold) const {
  std::vector<std::size_t> parent(rows);
  std::iota(parent.begin(), parent.end(), 0);
  const auto find = [&](std::size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (const auto& m : merges) {
    if (m.similarity < threshold) break;
    const auto ra = find(m.a), rb = find(m.b);
    parent[std::max(ra, rb)] = std::min(ra, rb);  // the root is the group's first row
  }
  std::vector<std::size_t> root(rows);
  for (std::size_t i = 0; i < rows; ++i) root[i] = find(i);
  return clustering_of(root);
}

Clustering clustering_of(const std::vector<std::size_t>& representative) {
  const std::size_t n = representative.size();
  std::unordered_map<std::size_t, std::size_t> slot;  // representative -> first-seen index
  std::vector<std::size_t> members, slot_of(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto [it, added] = slot.try_emplace(representative[i], members.size());
    if (added) members.push_back(0);
    ++members[it->second];
    slot_of[i] = it->second;
  }
  std::vector<std::size_t> order(members.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](auto a, auto b) { return members[a] > members[b]; });
  std::vector<int> number(members.size());
  for (std::size_t r = 0; r < order.size(); ++r) number[order[r]] = static_cast<int>(r);
  Clustering out;
  out.groups = static_cast<int>(members.size());
  out.group.resize(n);
  for (std::size_t i = 0; i < n; ++i) out.group[i] = number[slot_of[i]];
  return out;
}

Clustering cluster_faces(const torch::Tensor& embeddings, double threshold) {
  return average_linkage(embeddings).cut(threshold);
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

Verdict verdict_of(bool alone, double similarity, double next_similarity) {
  if (alone) return Verdict::kAlone;
  return similarity - next_similarity >= kSureMargin ? Verdict::kSure : Verdict::kUnsure;
}

const char* verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kSure:
      return "sure";
    case Verdict::kUnsure:
      return "unsure";
    case Verdict::kAlone:
      break;
  }
  return "alone";
}

std::vector<FaceGroup> place_faces(const torch::Tensor& embeddings, const Clustering& clustering) {
  const auto similarity = similarity_to_groups(embeddings, clustering);
  const auto sim = similarity.accessor<double, 2>();
  std::vector<FaceGroup> groups(static_cast<std::size_t>(clustering.groups));
  for (std::size_t i = 0; i < clustering.group.size(); ++i)
    groups[static_cast<std::size_t>(clustering.group[i])].faces.push_back({.row = i});
  for (int g = 0; g < clustering.groups; ++g) {
    auto& group = groups[static_cast<std::size_t>(g)];
    const auto own = [&](const PlacedFace& f) { return sim[static_cast<std::int64_t>(f.row)][g]; };
    std::stable_sort(group.faces.begin(), group.faces.end(),
                     [&](const auto& a, const auto& b) { return own(a) > own(b); });
    const bool alone = group.faces.size() == 1;
    double sum = 0;
    for (auto& f : group.faces) {
      const auto row = sim[static_cast<std::int64_t>(f.row)];
      sum += row[g];
      for (int h = 0; h < clustering.groups; ++h) {
        if (h != g && (f.next_group < 0 || row[h] > row[f.next_group])) f.next_group = h;
      }
      f.similarity = alone ? 0.0 : row[g];
      f.next_similarity = f.next_group >= 0 ? row[f.next_group] : -1.0;
      f.verdict = verdict_of(alone, f.similarity, f.next_similarity);
    }
    group.mean_similarity = alone ? 0.0 : sum / static_cast<double>(group.faces.size());
  }
  return groups;
}

std::vector<FaceGroup> group_faces(const torch::Tensor& embeddings, double threshold) {
  return place_faces(embeddings, cluster_faces(embeddings, threshold));
}

ClusterScores score_clustering(std::span<const int> predicted, std::span<const int> truth) {
  if (predicted.size() != truth.size())
    throw InvalidInput(std::to_string(predicted.size()) + " group labels for " +
                       std::to_string(truth.size()) + " identity labels");
  ClusterScores out;
  const double n = double(truth.size());
  if (truth.empty()) return out;
  std::map<std::pair<int, int>, double> joint;
  std::map<int, double> group_size, identity_size;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    ++joint[{predicted[i], truth[i]}];
    ++group_size[predicted[i]];
    ++identity_size[truth[i]];
  }
  out.groups = static_cast<int>(group_size.size());
  out.identities = static_cast<int>(identity_size.size());
  const auto pairs = [](double k) { return k * (k - 1) / 2; };
  double together_same = 0, precision_sum = 0, recall_sum = 0, mutual = 0;
  for (const auto& [key, count] : joint) {
    const double g = group_size[key.first], t = identity_size[key.second];
    together_same += pairs(count);
    precision_sum += count * count / g;
    recall_sum += count * count / t;
    mutual += count / n * std::log(n * count / (g * t));
  }
  double together = 0, same = 0, h_group = 0, h_identity = 0;
  for (const auto& [g, size] : group_size) {
    together += pairs(size);
    h_group -= size / n * std::log(size / n);
  }
  for (const auto& [t, size] : identity_size) {
    same += pairs(size);
    h_identity -= size / n * std::log(size / n);
  }
  const auto harmonic = [](double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; };
  out.pairwise_precision = together > 0 ? together_same / together : 1.0;
  out.pairwise_recall = same > 0 ? together_same / same : 1.0;
  out.pairwise_f = harmonic(out.pairwise_precision, out.pairwise_recall);
  out.bcubed_precision = precision_sum / n;
  out.bcubed_recall = recall_sum / n;
  out.bcubed_f = harmonic(out.bcubed_precision, out.bcubed_recall);
  const double mean_entropy = (h_group + h_identity) / 2;
  out.nmi = mean_entropy > 0 ? std::max(0.0, mutual) / mean_entropy : 1.0;
  return out;
}

}  // namespace facemag
