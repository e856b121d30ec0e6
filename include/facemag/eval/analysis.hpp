// Numbers behind an analysis report: similarity and distance matrices, a PCA view and the
// spread of each group (identities, or demographic groups for bias checks).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace facemag::eval {

struct GroupSpread {
  std::string name;
  std::size_t size = 0;
  // Within-group sum of squares: sum of squared Euclidean distances of the members' unit
  // embeddings to their centroid.
  double wss = 0;
  double mean_pairwise_distance = 0;    // Euclidean, unit embeddings; 0 for one member
  double mean_pairwise_similarity = 0;  // cosine; 0 for one member
  double mean_quality = 0;              // mean quality (by default the raw magnitude)
};

struct EmbeddingAnalysis {
  std::size_t n = 0;
  std::vector<double> cosine;    // n x n
  std::vector<double> distance;  // n x n, Euclidean distance of the unit embeddings
  std::vector<double> pca;       // n x 2, projections on the first two principal axes
  double explained[2] = {0, 0};  // share of the variance along each
  std::vector<GroupSpread> groups;
  std::vector<double> centroid_distance;  // groups x groups, Euclidean between centroids
  double total_wss = 0;
  double between_ss = 0;  // sum over groups of size * |centroid - overall centroid|^2
};

// `raw`: N x D embeddings (not changed); group[i] in [0, group_names.size()); `quality`: one
// per row (Embedding::quality), or empty for the raw magnitudes.
EmbeddingAnalysis analyse_embeddings(const torch::Tensor& raw, const std::vector<int>& group,
                                     const std::vector<std::string>& group_names,
                                     const std::vector<double>& quality = {});

}  // namespace facemag::eval
