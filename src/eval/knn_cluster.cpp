#include "facemag/eval/knn_cluster.hpp"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <queue>
#include <random>
#include <span>
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

// An inverted file over the rows: each row in the cell of its most similar centroid, and the
// rows that search each cell (those with the cell among their `probes` most similar centroids).
struct Cells {
  std::vector<std::vector<std::int64_t>> members, searchers;
};

Cells cells_of(const torch::Tensor& unit, const torch::Tensor& centroids, int probes) {
  const auto n = unit.size(0), lists = centroids.size(0);
  const auto p = std::clamp<std::int64_t>(probes, 1, lists);
  Cells cells;
  cells.members.resize(static_cast<std::size_t>(lists));
  cells.searchers.resize(static_cast<std::size_t>(lists));
  for (std::int64_t begin = 0; begin < n; begin += static_cast<std::int64_t>(kSearchChunk)) {
    const auto end = std::min<std::int64_t>(n, begin + static_cast<std::int64_t>(kSearchChunk));
    const auto nearest =
        std::get<1>(torch::mm(unit.slice(0, begin, end), centroids.t()).topk(p, 1));
    const auto a = nearest.accessor<std::int64_t, 2>();
    for (std::int64_t q = 0; q < end - begin; ++q) {
      cells.members[static_cast<std::size_t>(a[q][0])].push_back(begin + q);
      for (std::int64_t h = 0; h < p; ++h)
        cells.searchers[static_cast<std::size_t>(a[q][h])].push_back(begin + q);
    }
  }
  return cells;
}

// Each row's k best candidates so far, kept as a min-heap (the worst at the front) in the graph's
// own arrays; finish() sorts them, most similar first.
class NearestSoFar {
 public:
  explicit NearestSoFar(KnnGraph& graph)
      : graph_(graph), k_(static_cast<std::size_t>(graph.k)), filled_(graph.rows, 0) {}
  // Thread-safe for distinct rows.
  void offer(std::size_t row, float similarity, std::int64_t id) {
    float* s = graph_.similarity.data() + row * k_;
    std::int64_t* v = graph_.neighbour.data() + row * k_;
    auto& filled = filled_[row];
    if (filled < k_) {
      std::size_t i = filled++;  // sift up
      while (i > 0 && worse(similarity, id, s[(i - 1) / 2], v[(i - 1) / 2])) {
        s[i] = s[(i - 1) / 2];
        v[i] = v[(i - 1) / 2];
        i = (i - 1) / 2;
      }
      s[i] = similarity;
      v[i] = id;
      return;
    }
    if (!worse(s[0], v[0], similarity, id)) return;  // not better than the worst kept
    std::size_t i = 0;                               // sift down from the front
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= k_) break;
      if (child + 1 < k_ && worse(s[child + 1], v[child + 1], s[child], v[child])) ++child;
      if (!worse(s[child], v[child], similarity, id)) break;
      s[i] = s[child];
      v[i] = v[child];
      i = child;
    }
    s[i] = similarity;
    v[i] = id;
  }
  void finish() {
    at::parallel_for(0, static_cast<std::int64_t>(graph_.rows), 1024, [&](auto begin, auto end) {
      std::vector<std::pair<float, std::int64_t>> row;
      for (auto r = static_cast<std::size_t>(begin); r < static_cast<std::size_t>(end); ++r) {
        row.clear();
        for (std::size_t h = 0; h < filled_[r]; ++h)
          row.emplace_back(graph_.similarity[r * k_ + h], graph_.neighbour[r * k_ + h]);
        std::sort(row.begin(), row.end(), [](const auto& a, const auto& b) {
          return worse(b.first, b.second, a.first, a.second);
        });
        for (std::size_t h = 0; h < k_; ++h) {
          graph_.similarity[r * k_ + h] = h < row.size() ? row[h].first : -1.f;
          graph_.neighbour[r * k_ + h] = h < row.size() ? row[h].second : -1;
        }
      }
    });
  }

 private:
  // Lower similarity, then higher id: the order that makes results independent of visiting order.
  static bool worse(float sa, std::int64_t a, float sb, std::int64_t b) {
    return sa < sb || (sa == sb && a > b);
  }
  KnnGraph& graph_;
  std::size_t k_;
  std::vector<std::size_t> filled_;
};

torch::Tensor row_index(std::span<const std::int64_t> rows) {
  return torch::from_blob(const_cast<std::int64_t*>(rows.data()),
                          {static_cast<std::int64_t>(rows.size())}, torch::kInt64);
}

// Rows searching one cell compared with its members in one matrix product.
void search_cell(const torch::Tensor& unit, std::span<const std::int64_t> searchers,
                 std::span<const std::int64_t> members, NearestSoFar& nearest) {
  const auto similarity = torch::mm(unit.index_select(0, row_index(searchers)),
                                    unit.index_select(0, row_index(members)).t())
                              .contiguous();
  const float* sim = similarity.data_ptr<float>();
  const std::size_t m = members.size();
  for (std::size_t q = 0; q < searchers.size(); ++q) {
    const auto row = searchers[q];
    for (std::size_t j = 0; j < m; ++j) {
      if (members[j] != row)
        nearest.offer(static_cast<std::size_t>(row), sim[q * m + j], members[j]);
    }
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

// In four running sums: independent additions the compiler can vectorise (one sum in order
// cannot be, under strict floating point), the linkages' main cost at 1M faces.
template <class A, class B>
double dot(const A* a, const B* b, std::size_t d) {
  double part[4] = {0, 0, 0, 0};
  std::size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    for (std::size_t l = 0; l < 4; ++l) part[l] += double(a[j + l]) * double(b[j + l]);
  }
  for (; j < d; ++j) part[0] += double(a[j]) * double(b[j]);
  return (part[0] + part[1]) + (part[2] + part[3]);
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
//
// Every graph edge becomes a pair of adjacent groups, known by one member row of each. A pair
// whose linkage is at least `lowest` is *awake*: it sits in both groups' lists, and a group's
// best partner is found by scanning its list. A pair found below `lowest` *sleeps*: it keeps the
// groups' sizes g0, c0 and linkage L0 of that moment and leaves the lists. Whatever the groups
// take in later, each new pair of members has a cosine of at most 1, so the linkage of groups of
// sizes g >= g0, c >= c0 is at most 1 - (g0 c0 / (g c)) (1 - L0): below `lowest` while
// g c < R g0 c0 with R = (1 - L0) / (1 - lowest). So the pair is looked at again only when one of
// its groups has grown by sqrt(R) (a per-group heap of wake-up sizes). A large group next to many
// groups it will never join (a person of 20k faces next to 600k strangers' faces) would otherwise
// scan them all at each of its merges.
class LinkageGroups {
 public:
  LinkageGroups(const torch::Tensor& unit, const KnnGraph& graph, double lowest)
      : n_(static_cast<std::size_t>(unit.size(0))),
        d_(static_cast<std::size_t>(unit.size(1))),
        x_(unit.data_ptr<float>()),
        lowest_(lowest),
        parent_(n_),
        size_(n_, 1),
        version_(n_, 0),
        mark_(n_, 0),
        sum_(n_),
        awake_(n_),
        wake_(n_) {
    std::iota(parent_.begin(), parent_.end(), 0u);
    std::vector<std::pair<std::uint32_t, std::uint32_t>> edges;
    edges.reserve(n_ * static_cast<std::size_t>(graph.k));
    for (std::size_t i = 0; i < n_; ++i) {
      for (int h = 0; h < graph.k; ++h) {
        const auto j = graph.neighbour[i * static_cast<std::size_t>(graph.k) + h];
        if (j < 0 || static_cast<std::size_t>(j) == i) continue;
        edges.push_back(std::minmax(static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j)));
      }
    }
    std::sort(edges.begin(), edges.end());
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    pairs_.reserve(edges.size());
    for (const auto& [a, b] : edges) {
      const auto id = static_cast<std::uint32_t>(pairs_.size());
      pairs_.push_back({a, b, 0, true});
      const double s = linkage(a, b);
      if (s >= lowest_) {
        awake_[a].push_back(id);
        awake_[b].push_back(id);
      } else {
        sleep(id, a, b, s);
      }
    }
    edges.clear();
    edges.shrink_to_fit();
    for (auto& list : awake_) list.shrink_to_fit();
  }

  std::uint32_t find(std::uint32_t v) {
    while (parent_[v] != v) v = parent_[v] = parent_[parent_[v]];
    return v;
  }
  bool is_current(std::uint32_t v, std::uint32_t version) const {
    return parent_[v] == v && version_[v] == version;
  }
  // The group of root g's best partner (highest linkage, then lowest root), if any reaches
  // `lowest`. Its list is compacted to one awake pair per adjacent group on the way; pairs that
  // fell below `lowest` go to sleep.
  std::optional<Candidate> best_candidate(std::uint32_t g) {
    auto& list = awake_[g];
    ++stamp_;
    mark_[g] = stamp_;
    std::size_t kept = 0;
    std::optional<Candidate> best;
    double runner_up = -std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < list.size(); ++i) {
      const auto id = list[i];
      const Pair& p = pairs_[id];
      if (!p.awake) continue;  // asleep since, through its other group
      const auto ra = find(p.a), rb = find(p.b);
      const auto r = ra == g ? rb : ra;
      if (mark_[r] == stamp_) continue;  // its own group, or a group already in the list
      mark_[r] = stamp_;
      const double s = linkage(g, r);
      if (s < lowest_) {
        sleep(id, g, r, s);
        continue;
      }
      list[kept++] = id;
      const Candidate c{s, g, r, version_[g], version_[r], 0.0};
      if (!best || *best < c) {
        if (best) runner_up = std::max(runner_up, best->similarity);
        best = c;
      } else {
        runner_up = std::max(runner_up, c.similarity);
      }
    }
    list.resize(kept);
    if (!best) return std::nullopt;
    best->runner_up = runner_up;
    return best;
  }
  // An entry whose partner has merged since, renewed without a scan when the partner's new group
  // is still at least as similar as the runner-up (a person's faces joining its growing group
  // would otherwise send every one of them to rescan at each step).
  std::optional<Candidate> renewed(const Candidate& c) {
    const auto r = find(c.partner);
    const double s = linkage(c.group, r);
    if (s < c.runner_up || s < lowest_) return std::nullopt;
    return Candidate{s, c.group, r, c.group_version, version_[r], c.runner_up};
  }

  // Merges the groups of roots a and b into the lower root; returns it. Its list becomes the
  // awake pairs of either; sleeping pairs whose wake-up size it reached are looked at again, and
  // those back at `lowest` or above give their other group a candidate in `woken`.
  std::uint32_t merge(std::uint32_t a, std::uint32_t b, std::vector<Candidate>& woken) {
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
    // The smaller lists move into the larger (each entry moves O(log N) times in all).
    if (awake_[root].size() < awake_[gone].size()) std::swap(awake_[root], awake_[gone]);
    awake_[root].insert(awake_[root].end(), awake_[gone].begin(), awake_[gone].end());
    release(awake_[gone]);
    if (wake_[root].size() < wake_[gone].size()) std::swap(wake_[root], wake_[gone]);
    for (const auto& w : wake_[gone]) {
      wake_[root].push_back(w);
      std::push_heap(wake_[root].begin(), wake_[root].end(), later);
    }
    release(wake_[gone]);
    wake_due(root, woken);
    return root;
  }

 private:
  struct Pair {
    std::uint32_t a, b;     // a member row of each group
    std::uint32_t version;  // changes each time it goes to sleep (older wake-ups are void)
    bool awake;
  };
  struct WakeUp {
    std::uint32_t size;  // look at the pair again once this group reaches this size
    std::uint32_t pair, version;
  };
  static bool later(const WakeUp& x, const WakeUp& y) { return x.size > y.size; }
  template <class T>
  static void release(std::vector<T>& v) {
    v.clear();
    v.shrink_to_fit();
  }

  // Puts pair `id` of current roots ga and gb (linkage s < lowest) to sleep.
  void sleep(std::uint32_t id, std::uint32_t ga, std::uint32_t gb, double s) {
    Pair& p = pairs_[id];
    p.awake = false;
    ++p.version;
    // Each group may grow by sqrt(R) before the pair could reach `lowest` (a hair less, for the
    // rounding of s).
    const double growth = lowest_ >= 1 ? std::numeric_limits<double>::infinity()
                                       : std::sqrt((1 - s) / (1 - lowest_)) * (1 - 1e-9);
    for (const auto g : {ga, gb}) {
      const auto size = size_[g];
      const double at = std::ceil(double(size) * growth);
      const auto due = at >= double(std::numeric_limits<std::uint32_t>::max())
                           ? std::numeric_limits<std::uint32_t>::max()
                           : std::max(size + 1, static_cast<std::uint32_t>(at));
      wake_[g].push_back({due, id, p.version});
      std::push_heap(wake_[g].begin(), wake_[g].end(), later);
    }
  }
  void wake_due(std::uint32_t root, std::vector<Candidate>& woken) {
    auto& heap = wake_[root];
    while (!heap.empty() && heap.front().size <= size_[root]) {
      const WakeUp w = heap.front();
      std::pop_heap(heap.begin(), heap.end(), later);
      heap.pop_back();
      const Pair& p = pairs_[w.pair];
      if (p.awake || p.version != w.version) continue;  // void: awake, or asleep again since
      const auto ra = find(p.a), rb = find(p.b);
      if (ra == rb) continue;  // one group now
      const double s = linkage(ra, rb);
      if (s < lowest_) {
        sleep(w.pair, ra, rb, s);  // pushes onto `heap` too, at a size it has not reached
        continue;
      }
      pairs_[w.pair].awake = true;
      awake_[ra].push_back(w.pair);
      awake_[rb].push_back(w.pair);
      const auto other = ra == root ? rb : ra;
      woken.push_back({s, other, root, version_[other], version_[root],
                       std::numeric_limits<double>::infinity()});
    }
  }
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
  double lowest_;
  std::vector<std::uint32_t> parent_, size_, version_, mark_;
  std::uint32_t stamp_ = 0;
  std::vector<std::vector<double>> sum_;  // empty for a single face (its row is its sum)
  std::vector<Pair> pairs_;
  std::vector<std::vector<std::uint32_t>> awake_;  // a group's awake pairs (ids into pairs_)
  std::vector<std::vector<WakeUp>> wake_;          // a group's sleeping pairs, soonest first
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
  {
    // k-means (faiss, as its IVF index trains) on a sample of 64 rows per list, evenly spaced
    // through the collection.
    faiss::IndexIVFFlat index(&quantizer, static_cast<std::size_t>(d), lists,
                              faiss::METRIC_INNER_PRODUCT);
    const std::size_t sample = std::min(n, lists * 64);
    std::vector<float> training(sample * static_cast<std::size_t>(d));
    for (std::size_t s = 0; s < sample; ++s) {
      const std::size_t row = s * n / sample;
      std::copy_n(x + row * d, d, training.data() + s * d);
    }
    index.train(static_cast<FaissId>(sample), training.data());
  }
  // Unit centroids, so that a row's cells go by cosine, not by the centroids' norms (tight
  // cells have longer mean vectors).
  const auto centroids =
      unit_rows(torch::from_blob(const_cast<float*>(quantizer.get_xb()),
                                 {static_cast<std::int64_t>(lists), static_cast<std::int64_t>(d)})
                    .clone());
  const auto cells = cells_of(unit, centroids, options.probes);
  // One parallel region: each thread takes the searching rows of its own range in every
  // cell, so no row is offered candidates by two threads (many small regions spin-wait on a
  // busy machine).
  NearestSoFar nearest(graph);
  const auto parts = static_cast<std::int64_t>(std::max(1, at::get_num_threads()));
  at::parallel_for(0, parts, 1, [&](std::int64_t first, std::int64_t last) {
    for (auto part = first; part < last; ++part) {
      const auto from = static_cast<std::int64_t>(n) * part / parts;
      const auto to = static_cast<std::int64_t>(n) * (part + 1) / parts;
      for (std::size_t list = 0; list < lists; ++list) {
        const auto& all = cells.searchers[list];
        const auto begin = std::lower_bound(all.begin(), all.end(), from);
        const auto end = std::lower_bound(begin, all.end(), to);
        if (begin != end && !cells.members[list].empty())
          search_cell(unit, {&*begin, static_cast<std::size_t>(end - begin)}, cells.members[list],
                      nearest);
        // Progress from one thread only: the first walks every cell as well.
        if (part == 0 && options.progress) options.progress(cells.members[list].size());
      }
    }
  });
  nearest.finish();
  return graph;
}

Dendrogram graph_average_linkage(const torch::Tensor& unit, const KnnGraph& graph, double lowest,
                                 const std::function<void(std::size_t per_mille)>& progress) {
  check_unit(unit);
  const auto n = static_cast<std::size_t>(unit.size(0));
  if (graph.rows != n)
    throw InvalidInput("clustering: a k-NN graph of " + std::to_string(graph.rows) + " rows for " +
                       std::to_string(n) + " embeddings");
  Dendrogram out;
  out.rows = n;
  LinkageGroups groups(unit, graph, lowest);
  std::priority_queue<Candidate> heap;
  const auto push_best = [&](std::uint32_t g) {
    if (const auto best = groups.best_candidate(g)) heap.push(*best);
  };
  for (std::uint32_t i = 0; i < n; ++i) push_best(i);
  double previous = std::numeric_limits<double>::infinity();
  std::size_t reported = 0;
  std::vector<Candidate> woken;
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!groups.is_current(c.group, c.group_version)) continue;  // superseded
    if (!groups.is_current(c.partner, c.partner_version)) {
      // Its partner has merged since: the merged group, or else a scan, gives its best again.
      if (const auto again = groups.renewed(c))
        heap.push(*again);
      else
        push_best(c.group);
      continue;
    }
    previous = std::min(previous, c.similarity);
    out.merges.push_back({c.group, c.partner, previous});
    if (progress && lowest < 1) {
      const auto at =
          static_cast<std::size_t>(std::clamp((1 - previous) / (1 - lowest), 0.0, 1.0) * 1000);
      if (at > reported) progress(reported = at);
    }
    woken.clear();
    push_best(groups.merge(c.group, c.partner, woken));
    for (const auto& w : woken) heap.push(w);
  }
  if (progress && reported < 1000) progress(1000);
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
                                   const ClusterOptions& options)
    : method_(chosen_method(static_cast<std::size_t>(embeddings.size(0)), options)),
      lowest_(lowest),
      embeddings_(embeddings) {
  if (method_ == ClusterMethod::kExact) {
    dendrogram_ = average_linkage(embeddings);
    return;
  }
  unit_ = unit_rows(embeddings);
  auto graph_options = options.graph;
  std::function<void(std::size_t)> linkage_progress;
  if (const auto& progress = options.progress) {
    const auto rows = static_cast<std::size_t>(unit_.size(0));
    graph_options.progress = [progress, rows, done = std::size_t{0}](std::size_t more) mutable {
      progress("neighbours", done += more, rows);
    };
    linkage_progress = [progress](std::size_t per_mille) { progress("linkage", per_mille, 1000); };
  }
  graph_ = knn_graph(unit_, graph_options);
  dendrogram_ = graph_average_linkage(unit_, graph_, lowest, linkage_progress);
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
