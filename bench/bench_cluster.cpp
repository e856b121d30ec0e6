// Clustering a photo library's faces at 10k / 100k / 1M: wall time, peak memory and quality
// (BCubed F, pairwise F, NMI against the true people) of one method on one synthetic collection.
// One process per method and size, so that peak RSS is that method's (bench/cluster_scale.sh runs
// them all, with scikit-learn's peers on the same embeddings).
//
//   build/bench/facemag_cluster_bench N --method exact|graph|whispers [--dim 128] [--k 30]
//       [--threshold 0.4] [--probes 32] [--exact-up-to 50000] [--write DIR] [--seed 1]
//       [--features F.npy --labels L.npy]   (real embeddings instead; N is ignored)
//
// The collection: N / 10 people ranked r = 1, 2, ... hold max(1, round(N / (H r^0.8))) faces
// each (H = sum of r^-0.8: a Zipf-like law; at 1M the first person has 20k faces, the median
// person a handful, the tail one), filled in rank order until N faces; each face its person's
// random direction plus Gaussian noise of a per-face strength in [0.6, 1.4] (same-person cosines
// 0.34-0.74, others ~N(0, 1/D)), at a magnitude 1-10.
// --write DIR saves DIR/embeddings.npy (N x D float32) and DIR/people.npy (int64) for the peers.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "facemag/eval/cluster.hpp"
#include "facemag/eval/knn_cluster.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/runtime.hpp"

namespace {

struct Collection {
  torch::Tensor embeddings;  // N x D float32
  std::vector<int> person;
};

Collection photo_library(std::size_t n, std::int64_t dim, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::normal_distribution<float> gauss;
  std::uniform_real_distribution<float> strength(0.6f, 1.4f), magnitude(1.f, 10.f);
  Collection out;
  out.embeddings = torch::empty({static_cast<std::int64_t>(n), dim});
  float* x = out.embeddings.data_ptr<float>();
  std::vector<float> centre(static_cast<std::size_t>(dim));
  const auto d = static_cast<std::size_t>(dim);
  const std::size_t people = std::max<std::size_t>(1, n / 10);
  double harmonic = 0;
  for (std::size_t r = 1; r <= people; ++r) harmonic += std::pow(double(r), -0.8);
  std::size_t row = 0;
  for (int rank = 1; row < n; ++rank) {
    double norm = 0;
    for (auto& c : centre) norm += double(c = gauss(random)) * c;
    for (auto& c : centre) c = static_cast<float>(c / std::sqrt(norm));
    const auto faces = std::max<std::size_t>(
        1, static_cast<std::size_t>(std::lround(double(n) / (harmonic * std::pow(rank, 0.8)))));
    for (std::size_t f = 0; f < faces && row < n; ++f, ++row) {
      const float s = strength(random) / std::sqrt(float(dim)), m = magnitude(random);
      for (std::size_t j = 0; j < d; ++j) x[row * d + j] = m * (centre[j] + s * gauss(random));
      out.person.push_back(rank - 1);
    }
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s N --method exact|graph|whispers [options]\n", argv[0]);
    return 2;
  }
  const auto n = static_cast<std::size_t>(std::stoull(argv[1]));
  std::string method = "graph", write, features, labels;
  std::int64_t dim = 128;
  double threshold = 0.4;
  std::uint64_t seed = 1;
  facemag::KnnGraphOptions graph_options;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--method")
      method = value;
    else if (flag == "--dim")
      dim = std::stoll(value);
    else if (flag == "--k")
      graph_options.k = std::stoi(value);
    else if (flag == "--threshold")
      threshold = std::stod(value);
    else if (flag == "--probes")
      graph_options.probes = std::stoi(value);
    else if (flag == "--exact-up-to")
      graph_options.exact_up_to = std::stoull(value);
    else if (flag == "--seed")
      seed = std::stoull(value);
    else if (flag == "--write")
      write = value;
    else if (flag == "--features")
      features = value;
    else if (flag == "--labels")
      labels = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  facemag::configure_runtime();
  Collection library;
  if (features.empty()) {
    library = photo_library(n, dim, seed);
  } else {
    library.embeddings = facemag::io::read_npy(features).to(torch::kFloat32);
    const auto people = facemag::io::read_npy(labels).to(torch::kInt64).contiguous();
    library.person.assign(people.data_ptr<std::int64_t>(),
                          people.data_ptr<std::int64_t>() + people.numel());
  }
  if (!write.empty()) {
    facemag::io::write_npy(write + "/embeddings.npy", library.embeddings);
    facemag::io::write_npy(
        write + "/people.npy",
        torch::tensor(std::vector<std::int64_t>(library.person.begin(), library.person.end())));
  }
  const double rss_before = facemag::current_rss_mb();
  nlohmann::json record{
      {"faces", library.person.size()},
      {"dim", library.embeddings.size(1)},
      {"method", method},
      {"threshold", threshold},
      {"people", *std::max_element(library.person.begin(), library.person.end()) + 1},
      {"data", features.empty() ? "synthetic" : features}};
  const auto t0 = std::chrono::steady_clock::now();
  facemag::Clustering clustering;
  if (method == "exact") {
    clustering = facemag::cluster_faces(library.embeddings, threshold);
  } else {
    const auto unit = facemag::unit_rows(library.embeddings);
    const auto t_graph = std::chrono::steady_clock::now();
    const auto graph = facemag::knn_graph(unit, graph_options);
    record["graph_seconds"] = seconds_since(t_graph);
    record["graph_exact"] = graph.exact;
    record["k"] = graph.k;
    const auto t_link = std::chrono::steady_clock::now();
    clustering = method == "whispers"
                     ? facemag::chinese_whispers(graph, threshold)
                     : facemag::graph_average_linkage(unit, graph, threshold).cut(threshold);
    record["linkage_seconds"] = seconds_since(t_link);
  }
  record["seconds"] = seconds_since(t0);
  const auto scores = facemag::score_clustering(clustering.group, library.person);
  record["groups"] = clustering.groups;
  record["bcubed_f"] = scores.bcubed_f;
  record["pairwise_f"] = scores.pairwise_f;
  record["nmi"] = scores.nmi;
  record["peak_rss_mb"] = facemag::peak_rss_mb();
  record["rss_before_clustering_mb"] = rss_before;
  record["cpu"] = facemag::cpu_model_name();
  std::cout << record.dump() << std::endl;
  return 0;
}
