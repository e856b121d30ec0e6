// Gallery search latency: one query at a time (as a user asks "who is this?"), over N synthetic
// 512-d people, for the exact index, HNSW, and a plain loop over the templates as the peers do
// it (deepface / CompreFace: one dot product per enrolled vector), measured in the same run.
//
//   build/bench/facemag_gallery_bench [SIZES...] [--hnsw-up-to N] [--queries Q] [--isotropic]
//   (default sizes 1000 10000 100000 1000000; HNSW built up to 100000: its build is the cost)
//
// Prints one JSON line per size and index: median and p99 latency per query in ms, build time,
// and HNSW's recall@10 against exact on queries near enrolled people.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/person_index.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kDim = 512;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * double(v.size() - 1))];
}

// The peer's way: every template's cosine, then the top 10.
std::vector<std::size_t> loop_search(const std::vector<float>& unit, const std::vector<float>& q,
                                     std::size_t k) {
  const std::size_t rows = unit.size() / kDim;
  std::vector<std::pair<float, std::size_t>> scores(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    float dot = 0;
    for (std::size_t d = 0; d < kDim; ++d) dot += unit[r * kDim + d] * q[d];
    scores[r] = {dot, r};
  }
  std::partial_sort(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(k), scores.end(),
                    std::greater<>());
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < k; ++i) out.push_back(scores[i].second);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes;
  std::size_t hnsw_up_to = 100000, queries = 200;
  bool isotropic = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--isotropic") {
      isotropic = true;
    } else if (a == "--hnsw-up-to" && i + 1 < argc) {
      hnsw_up_to = std::stoul(argv[++i]);
    } else if (a == "--queries" && i + 1 < argc) {
      queries = std::stoul(argv[++i]);
    } else {
      sizes.push_back(std::stoul(a));
    }
  }
  if (sizes.empty()) sizes = {1000, 10000, 100000, 1000000};
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (const std::size_t n : sizes) {
    // People: random points of a random 32-d subspace (face embeddings vary along a few dozen
    // directions), or with --isotropic, of all 512 (no structure: the worst case of a graph).
    // Probes: enrolled people moved within that space.
    const std::size_t intrinsic = isotropic ? kDim : 32;
    std::vector<float> basis(kDim * intrinsic);
    for (auto& x : basis) x = normal(rng);
    const auto embed = [&](const std::vector<float>& z, float* out) {
      for (std::size_t d = 0; d < kDim; ++d) {
        float s = 0;
        for (std::size_t j = 0; j < intrinsic; ++j) s += basis[d * intrinsic + j] * z[j];
        out[d] = s;
      }
    };
    std::vector<float> data(n * kDim);
    std::vector<float> z(intrinsic);
    std::vector<std::vector<float>> probes(queries, std::vector<float>(kDim));
    for (std::size_t r = 0; r < n; ++r) {
      for (auto& x : z) x = normal(rng);
      embed(z, &data[r * kDim]);
      if (r < queries) {  // the people are in random order: the first ones are as good as any
        for (auto& x : z) x += 0.5f * normal(rng);
        embed(z, probes[r].data());
      }
    }
    probes.resize(std::min(queries, n));
    queries = probes.size();
    std::vector<float> unit = data;
    for (std::size_t r = 0; r < n; ++r) {
      double s = 0;
      for (std::size_t d = 0; d < kDim; ++d) s += double(unit[r * kDim + d]) * unit[r * kDim + d];
      for (std::size_t d = 0; d < kDim; ++d)
        unit[r * kDim + d] = float(unit[r * kDim + d] / std::sqrt(s));
    }
    std::vector<std::set<std::size_t>> truth(queries);
    std::vector<double> times;
    for (std::size_t q = 0; q < queries; ++q) {
      const auto t0 = Clock::now();
      const auto top = loop_search(unit, probes[q], 10);
      times.push_back(ms_since(t0));
      truth[q] = {top.begin(), top.end()};
    }
    std::cout << nlohmann::json{{"people", n},
                                {"index", "loop (peer)"},
                                {"median_ms", percentile(times, 0.5)},
                                {"p99_ms", percentile(times, 0.99)}}
              << std::endl;
    for (const auto kind :
         {facemag::gallery::IndexKind::kExact, facemag::gallery::IndexKind::kHnsw}) {
      const bool hnsw = kind == facemag::gallery::IndexKind::kHnsw;
      if (hnsw && n > hnsw_up_to) continue;
      facemag::gallery::PersonIndex index;
      auto t0 = Clock::now();
      index.build(data, kDim, kind);
      const double build_s = ms_since(t0) / 1000;
      times.clear();
      std::size_t found = 0;
      for (std::size_t q = 0; q < queries; ++q) {
        t0 = Clock::now();
        const auto hits = index.search(probes[q], 10);
        times.push_back(ms_since(t0));
        for (const auto& h : hits) found += truth[q].count(h.row);
      }
      std::cout << nlohmann::json{{"people", n},
                                  {"index", hnsw ? "hnsw" : "exact"},
                                  {"build_s", build_s},
                                  {"median_ms", percentile(times, 0.5)},
                                  {"p99_ms", percentile(times, 0.99)},
                                  {"recall_at_10", double(found) / double(10 * queries)}}
                << std::endl;
    }
  }
  return 0;
}
