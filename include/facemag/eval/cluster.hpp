// Grouping faces by identity: agglomerative clustering of embeddings on cosine similarity.
#pragma once

#include <torch/types.h>

#include <vector>

namespace facemag {

struct Clustering {
  std::vector<int> group;  // group of each row, 0-based, groups numbered by size (largest first)
  int groups = 0;
};

// Average-linkage agglomerative clustering of the rows of `embeddings` (N x D, any scale; rows
// are L2-normalised internally, the input is not changed): the two groups with the highest mean
// pairwise cosine similarity are merged while that mean is at least `threshold`.
Clustering cluster_faces(const torch::Tensor& embeddings, double threshold);

// Mean cosine similarity of each row to the other members of every group: N x groups.
// (A row's own entry in the similarity matrix is left out.)
torch::Tensor similarity_to_groups(const torch::Tensor& embeddings, const Clustering& clustering);

}  // namespace facemag
