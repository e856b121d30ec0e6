#include <gtest/gtest.h>
#include <torch/torch.h>

#include "facemag/eval/cluster.hpp"

namespace facemag {
namespace {

TEST(Cluster, GroupsNearbyDirectionsAndKeepsOutliersApart) {
  // Three tight bundles around orthogonal axes (5, 3 and 1 members), at different scales:
  // clustering is on direction only.
  std::vector<torch::Tensor> rows;
  const auto axis = [](int k) { return torch::one_hot(torch::tensor(k), 8).to(torch::kFloat32); };
  for (int i = 0; i < 5; ++i) rows.push_back((axis(0) + 0.1 * axis(3 + i % 3)) * (1 + i));
  for (int i = 0; i < 3; ++i) rows.push_back(axis(1) * 10 + 0.05 * axis(6));
  rows.push_back(axis(2));
  const auto embeddings = torch::stack(rows);
  const auto before = embeddings.clone();
  const Clustering c = cluster_faces(embeddings, 0.5);
  EXPECT_TRUE(torch::equal(embeddings, before));  // the caller's vectors are untouched
  ASSERT_EQ(c.groups, 3);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.group[i], 0);
  for (int i = 5; i < 8; ++i) EXPECT_EQ(c.group[i], 1);
  EXPECT_EQ(c.group[8], 2);
  const auto sim = similarity_to_groups(embeddings, c);
  EXPECT_GT(sim[0][0].item<double>(), 0.98);
  EXPECT_NEAR(sim[0][1].item<double>(), 0.0, 1e-9);
  EXPECT_EQ(sim[8][2].item<double>(), 0.0);  // alone: no other member
  // A threshold above every similarity leaves each face alone; -1 merges everything.
  EXPECT_EQ(cluster_faces(embeddings, 1.01).groups, 9);
  EXPECT_EQ(cluster_faces(embeddings, -1.0).groups, 1);
  EXPECT_EQ(cluster_faces(torch::zeros({0, 8}), 0.5).groups, 0);
}

}  // namespace
}  // namespace facemag
