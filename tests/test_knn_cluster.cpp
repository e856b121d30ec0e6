#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "facemag/error.hpp"
#include "facemag/eval/cluster.hpp"
#include "facemag/eval/knn_cluster.hpp"

namespace facemag {
namespace {

// `people` random directions with 1..max_faces noisy faces each (at scales 1..10, as raw
// embeddings are); the noise puts same-person cosines around 0.5-0.8 and others near 0.
struct Faces {
  torch::Tensor embeddings;
  std::vector<int> person;
};
Faces synthetic_faces(int people, int max_faces, int dim, double noise, std::uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> rows;
  Faces out;
  for (int p = 0; p < people; ++p) {
    const auto centre = torch::nn::functional::normalize(
        torch::randn({1, dim}), torch::nn::functional::NormalizeFuncOptions().dim(1));
    const int faces = 1 + (p * 7) % max_faces;
    for (int f = 0; f < faces; ++f) {
      rows.push_back((centre + noise * torch::randn({1, dim}) / std::sqrt(double(dim))) *
                     (1 + (f % 10)));
      out.person.push_back(p);
    }
  }
  out.embeddings = torch::cat(rows);
  return out;
}

KnnGraph complete_graph(const torch::Tensor& unit) {
  KnnGraphOptions options;
  options.k = static_cast<int>(unit.size(0)) - 1;
  return knn_graph(unit, options);
}

TEST(KnnCluster, ExactGraphHoldsEachRowsNearestOthersByCosine) {
  const auto faces = synthetic_faces(20, 9, 16, 0.8, 3);
  const auto unit = unit_rows(faces.embeddings);
  KnnGraphOptions options;
  options.k = 6;
  const auto graph = knn_graph(unit, options);
  ASSERT_TRUE(graph.exact);
  const auto cos = unit.to(torch::kFloat64).matmul(unit.to(torch::kFloat64).t());
  const auto n = static_cast<std::size_t>(unit.size(0));
  for (std::size_t i = 0; i < n; ++i) {
    auto row = cos[static_cast<std::int64_t>(i)].clone();
    row[static_cast<std::int64_t>(i)] = -10;  // a row is not its own neighbour
    const auto top = std::get<0>(row.topk(6));
    for (int h = 0; h < 6; ++h) {
      const auto j = graph.neighbour[i * 6 + h];
      ASSERT_GE(j, 0);
      EXPECT_NE(static_cast<std::size_t>(j), i);
      // Ties could swap two neighbours, so compare the similarities, in order.
      EXPECT_NEAR(graph.similarity[i * 6 + h], top[h].item<double>(), 1e-5);
      EXPECT_NEAR(graph.similarity[i * 6 + h], cos[static_cast<std::int64_t>(i)][j].item<double>(),
                  1e-5);
    }
  }
}

TEST(KnnCluster, GraphAverageLinkageOnACompleteGraphMakesExactlyTheExactMerges) {
  const auto faces = synthetic_faces(40, 12, 32, 1.0, 5);
  const auto unit = unit_rows(faces.embeddings);
  const auto exact = average_linkage(faces.embeddings);
  const auto graph = graph_average_linkage(unit, complete_graph(unit), -1.0);
  ASSERT_EQ(graph.merges.size(), exact.merges.size());
  for (std::size_t m = 0; m < exact.merges.size(); ++m)
    EXPECT_NEAR(graph.merges[m].similarity, exact.merges[m].similarity, 1e-6) << "merge " << m;
  for (const double threshold : {-0.05, 0.1, 0.3, 0.45, 0.6, 0.8}) {
    const auto e = exact.cut(threshold);
    const auto g = graph.cut(threshold);
    EXPECT_EQ(g.groups, e.groups) << "threshold " << threshold;
    EXPECT_EQ(g.group, e.group) << "threshold " << threshold;
  }
}

// Down to `lowest`, pairs of groups below it are set aside until their groups have grown enough
// to reach it: noisy faces (same-person cosines ~0.2-0.6) make many such pairs come back.
TEST(KnnCluster, GraphAverageLinkageDownToALowestMakesTheExactMergesAboveIt) {
  const auto faces = synthetic_faces(30, 16, 32, 1.6, 13);
  const auto unit = unit_rows(faces.embeddings);
  const auto exact = average_linkage(faces.embeddings);
  const auto complete = complete_graph(unit);
  for (const double lowest : {0.15, 0.25, 0.4}) {
    const auto graph = graph_average_linkage(unit, complete, lowest);
    std::vector<double> above;
    for (const auto& m : exact.merges)
      if (m.similarity >= lowest) above.push_back(m.similarity);
    ASSERT_EQ(graph.merges.size(), above.size()) << "lowest " << lowest;
    for (std::size_t m = 0; m < above.size(); ++m)
      EXPECT_NEAR(graph.merges[m].similarity, above[m], 1e-6) << "merge " << m;
    for (const double threshold : {lowest, lowest + 0.05, lowest + 0.15}) {
      EXPECT_EQ(graph.cut(threshold).group, exact.cut(threshold).group)
          << "lowest " << lowest << ", threshold " << threshold;
    }
  }
}

TEST(KnnCluster, GraphAverageLinkageOnAKnnGraphAgreesWithExactWhenPeopleHaveFewerFacesThanK) {
  const auto faces = synthetic_faces(120, 8, 64, 0.9, 7);
  const auto unit = unit_rows(faces.embeddings);
  KnnGraphOptions options;
  options.k = 10;
  const auto graph = knn_graph(unit, options);
  for (const double threshold : {0.3, 0.4, 0.5}) {
    const auto e = cluster_faces(faces.embeddings, threshold);
    const auto g = graph_average_linkage(unit, graph, threshold).cut(threshold);
    EXPECT_EQ(g.group, e.group) << "threshold " << threshold;
  }
}

TEST(KnnCluster, GraphPlacementEqualsDensePlacementOnACompleteGraph) {
  const auto faces = synthetic_faces(15, 7, 16, 1.1, 11);
  const auto unit = unit_rows(faces.embeddings);
  const auto clustering = cluster_faces(faces.embeddings, 0.4);
  const auto dense = place_faces(faces.embeddings, clustering);
  const auto sparse = place_faces_on_graph(unit, clustering, complete_graph(unit));
  ASSERT_EQ(sparse.size(), dense.size());
  for (std::size_t g = 0; g < dense.size(); ++g) {
    EXPECT_NEAR(sparse[g].mean_similarity, dense[g].mean_similarity, 1e-6);
    ASSERT_EQ(sparse[g].faces.size(), dense[g].faces.size());
    for (std::size_t f = 0; f < dense[g].faces.size(); ++f) {
      const auto& s = sparse[g].faces[f];
      const auto& d = dense[g].faces[f];
      EXPECT_EQ(s.row, d.row);
      EXPECT_NEAR(s.similarity, d.similarity, 1e-6);
      EXPECT_EQ(s.next_group, d.next_group);
      EXPECT_NEAR(s.next_similarity, d.next_similarity, 1e-6);
      EXPECT_EQ(s.verdict, d.verdict);
    }
  }
}

TEST(KnnCluster, InvertedFileGraphFindsNearlyAllTheEdgesClusteringUses) {
  const auto faces = synthetic_faces(600, 12, 32, 1.0, 13);
  const auto unit = unit_rows(faces.embeddings);
  KnnGraphOptions options;
  options.k = 10;
  const auto exact = knn_graph(unit, options);
  options.exact_up_to = 100;
  const auto approximate = knn_graph(unit, options);
  ASSERT_FALSE(approximate.exact);
  // Edges of similarity >= 0.3 (about where people are told apart); the others (cosines of
  // unrelated faces, near 0) decide no merge.
  std::size_t strong = 0, found = 0;
  for (std::size_t i = 0; i < exact.rows; ++i) {
    const std::set<std::int64_t> got(approximate.neighbour.begin() + i * 10,
                                     approximate.neighbour.begin() + (i + 1) * 10);
    for (int h = 0; h < 10; ++h) {
      if (exact.similarity[i * 10 + h] < 0.3) continue;
      ++strong;
      found += got.count(exact.neighbour[i * 10 + h]);
    }
  }
  ASSERT_GT(strong, 1000u);
  // Measured: 0.891 (32 of 249 lists searched); an IVF index trades these misses for speed.
  EXPECT_GT(double(found) / double(strong), 0.85) << found << " of " << strong;
}

TEST(KnnCluster, ChineseWhispersSeparatesWellSeparatedPeople) {
  const auto faces = synthetic_faces(30, 9, 64, 0.5, 17);
  const auto unit = unit_rows(faces.embeddings);
  KnnGraphOptions options;
  options.k = 10;
  const auto c = chinese_whispers(knn_graph(unit, options), 0.5);
  const auto scores = score_clustering(c.group, faces.person);
  EXPECT_EQ(scores.bcubed_f, 1.0);
  EXPECT_EQ(c.groups, 30);
}

TEST(KnnCluster, AutoChoosesExactWhileItsMatrixFitsTheBudget) {
  ClusterOptions options;
  options.memory_budget_bytes = exact_linkage_bytes(1000);
  EXPECT_EQ(chosen_method(1000, options), ClusterMethod::kExact);
  EXPECT_EQ(chosen_method(1001, options), ClusterMethod::kGraph);
  options.method = ClusterMethod::kExact;
  EXPECT_EQ(chosen_method(5000, options), ClusterMethod::kExact);
  const auto faces = synthetic_faces(30, 5, 16, 0.5, 19);
  options.method = ClusterMethod::kGraph;
  const auto grouped = group_faces(faces.embeddings, 0.5, options);
  EXPECT_EQ(grouped.method, ClusterMethod::kGraph);
  EXPECT_EQ(grouped.clustering.group, cluster_faces(faces.embeddings, 0.5).group);
}

TEST(KnnCluster, AGraphOfOtherRowsIsRefused) {
  const auto unit = unit_rows(torch::randn({10, 4}));
  const auto graph = knn_graph(unit_rows(torch::randn({12, 4})));
  EXPECT_THROW(graph_average_linkage(unit, graph, 0.3), InvalidInput);
  EXPECT_THROW(knn_graph(torch::randn({10, 4}).to(torch::kFloat64)), InvalidInput);
}

}  // namespace
}  // namespace facemag
