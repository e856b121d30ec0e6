#include "facemag/eval/knn_cluster.hpp"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <queue>
#include <random>
#include <unordered_map>

#include "facemag/error.hpp"

namespace facemag {
namespace {

using FaissId = faiss::Index::idx_t;
constexpr std::size_t kSearchChunk = 16384;  // rows per faiss search call (progress, memory)

void check_unit(const torch::Tensor& unit) {
  if (unit.dim() != 2 || unit.scalar_type() != torch::kFloat32 || !unit.is_contiguous())
    throw InvalidInput("clustering: expected contiguous float32 N x D unit rows (unit_rows())");
}

// Searches every row of `x` in `index` for k + 1 hits and keeps the k that are not the row itself.
void search_all(const faiss::Index& index, const float* x, std::size_t n, int k,
                const KnnGraphOptions& options, KnnGraph& graph) {
  const int hits = k + 1;
  std::vector<float> sim(kSearchChunk * static_cast<std::size_t>(hits));
  std::vector<FaissId> ids(sim.size());
  for (std::size_t begin = 0; begin < n; begin += kSearchChunk) {
    const std::size_t count = std::min(kSearchChunk, n - begin);
    index.search(static_cast<FaissId>(count), x + begin * index.d, hits, sim.data(), ids.data());
    for (std::size_t q = 0; q < count; ++q) {
      const std::size_t row = begin + q;
      std::size_t out = row * static_cast<std::size_t>(k);
      const std::size_t end = out + static_cast<std::size_t>(k);
      for (int h = 0; h < hits && out < end; ++h) {
        const auto id = ids[q * hits + h];
        if (id == static_cast<FaissId>(row)) continue;
        graph.neighbour[out] = id;
        graph.similarity[out] = id < 0 ? -1.f : sim[q * hits + h];
        ++out;
      }
    }
    if (options.progress) options.progress(count);
  }
}

// The sum of each group's unit rows, in double.
std::vector<double> group_sums(const torch::Tensor& unit, const Clustering& clustering) {
  const auto n = static_cast<std::size_t>(unit.size(0));
  const auto d = static_cast<std::size_t>(unit.size(1));
  const float* x = unit.data_ptr<float>();
  std::vector<double> sums(static_cast<std::size_t>(clustering.groups) * d, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    double* s = sums.data() + static_cast<std::size_t>(clustering.group[i]) * d;
    for (std::size_t j = 0; j < d; ++j) s[j] += x[i * d + j];
  }
  return sums;
}

template <class A, class B>
double dot(const A* a, const B* b, std::size_t d) {
  double total = 0;
  for (std::size_t j = 0; j < d; ++j) total += double(a[j]) * double(b[j]);
  return total;
}

// A group's most similar adjacent group (its partner) at their exact average linkage. The value
// stays an upper bound of the group's best while groups around it merge (a merged group's linkage
// is a weighted mean of its parts'), so an entry whose partner has changed is recomputed when it
// reaches the top of the heap, and one whose group has changed is dropped.
struct Candidate {
  double similarity;
  std::uint32_t group, partner, group_version, partner_version;
  // The best linkage to any other adjacent group when this was found: while the partner's new
  // group stays at least this similar, it is still the best (the others can only have fallen).
  double runner_up;
  bool operator<(const Candidate& o) const {  // the heap's top: highest, then lowest pair
    if (similarity != o.similarity) return similarity < o.similarity;
    return std::minmax(group, partner) > std::minmax(o.group, o.partner);
  }
};

// Groups of graph_average_linkage: union-find over rows, a group known by its root row.
class LinkageGroups {
 public:
  LinkageGroups(const torch::Tensor& unit, const KnnGraph& graph)
      : n_(static_cast<std::size_t>(unit.size(0))),
        d_(static_cast<std::size_t>(unit.size(1))),
        x_(unit.data_ptr<float>()),
        parent_(n_),
        size_(n_, 1),
        version_(n_, 0),
        mark_(n_, 0),
        sum_(n_),
        adjacent_(n_) {
    std::iota(parent_.begin(), parent_.end(), 0u);
    for (std::size_t i = 0; i < n_; ++i) {
      for (int h = 0; h < graph.k; ++h) {
        const auto j = graph.neighbour[i * static_cast<std::size_t>(graph.k) + h];
        if (j < 0 || static_cast<std::size_t>(j) == i) continue;
        adjacent_[i].push_back(static_cast<std::uint32_t>(j));
        adjacent_[static_cast<std::size_t>(j)].push_back(static_cast<std::uint32_t>(i));
      }
    }
    for (auto& list : adjacent_) {
      std::sort(list.begin(), list.end());
      list.erase(std::unique(list.begin(), list.end()), list.end());
      list.shrink_to_fit();
    }
  }

  std::uint32_t find(std::uint32_t v) {
    while (parent_[v] != v) v = parent_[v] = parent_[parent_[v]];
    return v;
  }
  bool is_current(std::uint32_t v, std::uint32_t version) const {
    return parent_[v] == v && version_[v] == version;
  }
  // The group of root g's best partner (highest linkage, then lowest root), if any reaches
  // `lowest`. Its adjacency is compacted to the distinct current roots on the way.
  std::optional<Candidate> best_candidate(std::uint32_t g, double lowest) {
    auto& list = adjacent_[g];
    ++stamp_;
    mark_[g] = stamp_;
    std::size_t kept = 0;
    for (const auto v : list) {
      const auto r = find(v);
      if (mark_[r] == stamp_) continue;
      mark_[r] = stamp_;
      list[kept++] = r;
    }
    list.resize(kept);
    std::optional<Candidate> best;
    double runner_up = -std::numeric_limits<double>::infinity();
    for (const auto r : list) {
      const Candidate c{linkage(g, r), g, r, version_[g], version_[r], 0.0};
      if (!best || *best < c) {
        if (best) runner_up = std::max(runner_up, best->similarity);
        best = c;
      } else {
        runner_up = std::max(runner_up, c.similarity);
      }
    }
    if (!best || best->similarity < lowest) return std::nullopt;
    best->runner_up = runner_up;
    return best;
  }
  // An entry whose partner has merged since, renewed without a scan when the partner's new group
  // is still at least as similar as the runner-up (a person's faces joining its growing group
  // would otherwise send every one of them to rescan at each step).
  std::optional<Candidate> renewed(const Candidate& c, double lowest) {
    const auto r = find(c.partner);
    const double s = linkage(c.group, r);
    if (s < c.runner_up || s < lowest) return std::nullopt;
    return Candidate{s, c.group, r, c.group_version, version_[r], c.runner_up};
  }

  // Merges the groups of roots a and b into the lower root; returns it. Its adjacency becomes the
  // other roots next to either.
  std::uint32_t merge(std::uint32_t a, std::uint32_t b) {
    const std::uint32_t root = std::min(a, b), gone = std::max(a, b);
    std::vector<double> sum(d_);
    add_sum(a, sum);
    add_sum(b, sum);
    sum_[gone].clear();
    sum_[gone].shrink_to_fit();
    sum_[root] = std::move(sum);
    parent_[gone] = root;
    size_[root] += size_[gone];
    ++version_[root];
    auto& kept = adjacent_[root];
    const auto& other = adjacent_[gone];
    kept.insert(kept.end(), other.begin(), other.end());  // compacted by best_candidate()
    adjacent_[gone].clear();
    adjacent_[gone].shrink_to_fit();
    return root;
  }

 private:
  double linkage(std::uint32_t a, std::uint32_t b) const {
    const auto& sa = sum_[a];
    const auto& sb = sum_[b];
    const float* xa = x_ + std::size_t{a} * d_;
    const float* xb = x_ + std::size_t{b} * d_;
    const double total =
        sa.empty() ? (sb.empty() ? dot(xa, xb, d_) : dot(xa, sb.data(), d_))
                   : (sb.empty() ? dot(sa.data(), xb, d_) : dot(sa.data(), sb.data(), d_));
    return total / (double(size_[a]) * double(size_[b]));
  }
  void add_sum(std::uint32_t v, std::vector<double>& out) const {
    if (sum_[v].empty()) {
      const float* x = x_ + std::size_t{v} * d_;
      for (std::size_t j = 0; j < d_; ++j) out[j] += x[j];
    } else {
      for (std::size_t j = 0; j < d_; ++j) out[j] += sum_[v][j];
    }
  }

  std::size_t n_, d_;
  const float* x_;
  std::vector<std::uint32_t> parent_, size_, version_, mark_;
  std::uint32_t stamp_ = 0;
  std::vector<std::vector<double>> sum_;  // empty for a single face (its row is its sum)
  std::vector<std::vector<std::uint32_t>> adjacent_;
};

}  // namespace

torch::Tensor unit_rows(const torch::Tensor& embeddings) {
  if (embeddings.dim() != 2)
    throw InvalidInput("clustering: embeddings must be N x D, got " +
                       std::to_string(embeddings.dim()) + " dimension(s)");
  return torch::nn::functional::normalize(embeddings.to(torch::kFloat32),
                                          torch::nn::functional::NormalizeFuncOptions().dim(1))
      .contiguous();
}

KnnGraph knn_graph(const torch::Tensor& unit, const KnnGraphOptions& options) {
  check_unit(unit);
  const auto n = static_cast<std::size_t>(unit.size(0));
  const auto d = static_cast<int>(unit.size(1));
  KnnGraph graph;
  graph.rows = n;
  graph.k = static_cast<int>(
      std::min<std::size_t>(static_cast<std::size_t>(options.k), n > 0 ? n - 1 : 0));
  graph.neighbour.assign(n * static_cast<std::size_t>(graph.k), -1);
  graph.similarity.assign(graph.neighbour.size(), -1.f);
  if (graph.k == 0) return graph;
  const float* x = unit.data_ptr<float>();
  if (n <= options.exact_up_to) {
    faiss::IndexFlatIP index(d);
    index.add(static_cast<FaissId>(n), x);
    search_all(index, x, n, graph.k, options, graph);
    return graph;
  }
  graph.exact = false;
  const auto lists = static_cast<std::size_t>(4 * std::sqrt(double(n)));
  faiss::IndexFlatIP quantizer(d);
  faiss::IndexIVFFlat index(&quantizer, static_cast<std::size_t>(d), lists,
                            faiss::METRIC_INNER_PRODUCT);
  // k-means on a sample of 64 rows per list, evenly spaced through the collection.
  const std::size_t sample = std::min(n, lists * 64);
  std::vector<float> training(sample * static_cast<std::size_t>(d));
  for (std::size_t s = 0; s < sample; ++s) {
    const std::size_t row = s * n / sample;
    std::copy_n(x + row * d, d, training.data() + s * d);
  }
  index.train(static_cast<FaissId>(sample), training.data());
  index.add(static_cast<FaissId>(n), x);
  index.nprobe = static_cast<std::size_t>(std::max(1, options.probes));
  search_all(index, x, n, graph.k, options, graph);
  return graph;
}

Dendrogram graph_average_linkage(const torch::Tensor& unit, const KnnGraph& graph, double lowest) {
  check_unit(unit);
  const auto n = static_cast<std::size_t>(unit.size(0));
  if (graph.rows != n)
    throw InvalidInput("clustering: a k-NN graph of " + std::to_string(graph.rows) + " rows for " +
                       std::to_string(n) + " embeddings");
  Dendrogram out;
  out.rows = n;
  LinkageGroups groups(unit, graph);
  std::priority_queue<Candidate> heap;
  const auto push_best = [&](std::uint32_t g) {
    if (const auto best = groups.best_candidate(g, lowest)) heap.push(*best);
  };
  for (std::uint32_t i = 0; i < n; ++i) push_best(i);
  double previous = std::numeric_limits<double>::infinity();
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!groups.is_current(c.group, c.group_version)) continue;  // superseded
    if (!groups.is_current(c.partner, c.partner_version)) {
      // Its partner has merged since: the merged group, or else a scan, gives its best again.
      if (const auto again = groups.renewed(c, lowest))
        heap.push(*again);
      else
        push_best(c.group);
      continue;
    }
    previous = std::min(previous, c.similarity);
    out.merges.push_back({c.group, c.partner, previous});
    push_best(groups.merge(c.group, c.partner));
  }
  return out;
}

Clustering chinese_whispers(const KnnGraph& graph, double threshold, int iterations,
                            std::uint64_t seed) {
  const std::size_t n = graph.rows;
  const auto k = static_cast<std::size_t>(graph.k);
  // Symmetric weighted adjacency over the edges at or above the threshold.
  std::vector<std::vector<std::pair<std::uint32_t, float>>> edges(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t h = 0; h < k; ++h) {
      const auto j = graph.neighbour[i * k + h];
      const float w = graph.similarity[i * k + h];
      if (j < 0 || w < threshold) continue;
      edges[i].push_back({static_cast<std::uint32_t>(j), w});
      edges[static_cast<std::size_t>(j)].push_back({static_cast<std::uint32_t>(i), w});
    }
  }
  std::vector<std::size_t> label(n);
  std::iota(label.begin(), label.end(), 0);
  std::vector<std::uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 random(seed);
  std::unordered_map<std::size_t, double> weight;
  for (int pass = 0; pass < iterations; ++pass) {
    std::shuffle(order.begin(), order.end(), random);
    bool changed = false;
    for (const auto i : order) {
      if (edges[i].empty()) continue;
      weight.clear();
      for (const auto& [j, w] : edges[i]) weight[label[j]] += w;
      auto best = label[i];
      double best_weight = -1;
      for (const auto& [l, w] : weight) {
        if (w > best_weight || (w == best_weight && l < best)) {
          best = l;
          best_weight = w;
        }
      }
      if (best != label[i]) changed = true;
      label[i] = best;
    }
    if (!changed) break;
  }
  return clustering_of(label);
}

std::vector<FaceGroup> place_faces_on_graph(const torch::Tensor& unit, const Clustering& clustering,
                                            const KnnGraph& graph) {
  check_unit(unit);
  const auto n = static_cast<std::size_t>(unit.size(0));
  const auto d = static_cast<std::size_t>(unit.size(1));
  const auto k = static_cast<std::size_t>(graph.k);
  if (clustering.group.size() != n || graph.rows != n)
    throw InvalidInput("clustering: groups, graph and embeddings disagree on the number of rows");
  const float* x = unit.data_ptr<float>();
  const auto sums = group_sums(unit, clustering);
  std::vector<std::size_t> members(static_cast<std::size_t>(clustering.groups), 0);
  for (const int g : clustering.group) ++members[static_cast<std::size_t>(g)];
  const auto mean_cosine = [&](std::size_t row, std::size_t g) {
    return dot(x + row * d, sums.data() + g * d, d) / double(members[g]);
  };
  std::vector<FaceGroup> out(static_cast<std::size_t>(clustering.groups));
  for (std::size_t i = 0; i < n; ++i) {
    const auto own = static_cast<std::size_t>(clustering.group[i]);
    PlacedFace face;
    face.row = i;
    if (members[own] > 1) {
      // The row itself is left out of its group's sum, as in similarity_to_groups; (sum - row)
      // is exact for a pair, so both faces of a pair get the same similarity (ties stay ties).
      const double* sum = sums.data() + own * d;
      double total = 0;
      for (std::size_t j = 0; j < d; ++j)
        total += double(x[i * d + j]) * (sum[j] - double(x[i * d + j]));
      face.similarity = total / double(members[own] - 1);
    }
    for (std::size_t h = 0; h < k; ++h) {
      const auto j = graph.neighbour[i * k + h];
      if (j < 0) continue;
      const auto g = static_cast<std::size_t>(clustering.group[static_cast<std::size_t>(j)]);
      if (g == own) continue;
      const double s = mean_cosine(i, g);
      if (s > face.next_similarity ||
          (s == face.next_similarity && static_cast<int>(g) < face.next_group)) {
        face.next_similarity = s;
        face.next_group = static_cast<int>(g);
      }
    }
    face.verdict = verdict_of(members[own] == 1, face.similarity, face.next_similarity);
    out[own].faces.push_back(face);
  }
  for (auto& group : out) {
    std::stable_sort(group.faces.begin(), group.faces.end(),
                     [](const auto& a, const auto& b) { return a.similarity > b.similarity; });
    if (group.faces.size() > 1) {
      double total = 0;
      for (const auto& f : group.faces) total += f.similarity;
      group.mean_similarity = total / double(group.faces.size());
    }
  }
  return out;
}

std::size_t exact_linkage_bytes(std::size_t rows) { return 8 * rows * rows; }

ClusterMethod chosen_method(std::size_t rows, const ClusterOptions& options) {
  if (options.method != ClusterMethod::kAuto) return options.method;
  return exact_linkage_bytes(rows) <= options.memory_budget_bytes ? ClusterMethod::kExact
                                                                  : ClusterMethod::kGraph;
}

const char* cluster_method_name(ClusterMethod method) {
  return method == ClusterMethod::kGraph ? "graph" : "exact";
}

LinkageHierarchy::LinkageHierarchy(const torch::Tensor& embeddings, double lowest,
                                   const ClusterOptions& options,
                                   const std::function<void(std::size_t rows_done)>& progress)
    : method_(chosen_method(static_cast<std::size_t>(embeddings.size(0)), options)),
      lowest_(lowest),
      embeddings_(embeddings) {
  if (method_ == ClusterMethod::kExact) {
    dendrogram_ = average_linkage(embeddings);
    return;
  }
  unit_ = unit_rows(embeddings);
  auto graph_options = options.graph;
  if (progress) graph_options.progress = progress;
  graph_ = knn_graph(unit_, graph_options);
  dendrogram_ = graph_average_linkage(unit_, graph_, lowest);
}

Clustering LinkageHierarchy::cut(double threshold) const {
  if (method_ == ClusterMethod::kGraph && threshold < lowest_)
    throw InvalidInput("clustering: cut at " + std::to_string(threshold) +
                       " below the hierarchy's lowest similarity " + std::to_string(lowest_));
  return dendrogram_.cut(threshold);
}

std::vector<FaceGroup> LinkageHierarchy::place(const Clustering& clustering) const {
  return method_ == ClusterMethod::kExact ? place_faces(embeddings_, clustering)
                                          : place_faces_on_graph(unit_, clustering, graph_);
}

GroupedFaces group_faces(const torch::Tensor& embeddings, double threshold,
                         const ClusterOptions& options) {
  const LinkageHierarchy hierarchy(embeddings, threshold, options);
  GroupedFaces out;
  out.method = hierarchy.method();
  out.clustering = hierarchy.cut(threshold);
  out.groups = hierarchy.place(out.clustering);
  return out;
}

}  // namespace facemag
