// Grouping faces by identity: agglomerative clustering of embeddings on cosine similarity, and
// how well a grouping matches the true identities.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <span>
#include <vector>

namespace facemag {

struct Clustering {
  std::vector<int> group;  // group of each row, 0-based, groups numbered by size (largest first)
  int groups = 0;
};

// The whole average-linkage hierarchy of N rows: N - 1 merges, each joining the groups that hold
// rows `a` and `b` at the mean pairwise cosine similarity `similarity` of their members. Built
// with the nearest-neighbour chain (O(N^2) time, one N x N matrix), so cutting it at any number of
// thresholds costs nothing more.
struct Dendrogram {
  struct Merge {
    std::size_t a = 0, b = 0;  // a member row of each of the two groups
    double similarity = 0;
  };
  std::size_t rows = 0;
  std::vector<Merge> merges;  // highest similarity first

  // The groups left after every merge at a similarity of at least `threshold`.
  Clustering cut(double threshold) const;
};
// Rows of `embeddings` (N x D, any scale) are L2-normalised internally; the input is not changed.
Dendrogram average_linkage(const torch::Tensor& embeddings);

// Average-linkage agglomerative clustering: the two groups with the highest mean pairwise cosine
// similarity are merged while that mean is at least `threshold` (average_linkage(...).cut).
Clustering cluster_faces(const torch::Tensor& embeddings, double threshold);

// Mean cosine similarity of each row to the other members of every group: N x groups.
// (A row's own entry in the similarity matrix is left out.)
torch::Tensor similarity_to_groups(const torch::Tensor& embeddings, const Clustering& clustering);

// How sure a face's group is: kSure when its similarity to its own group exceeds that to the
// nearest other group by at least kSureMargin, kAlone when it is the only member.
enum class Verdict { kSure, kUnsure, kAlone };
constexpr double kSureMargin = 0.1;
// "sure", "unsure", "alone".
const char* verdict_name(Verdict verdict);
// The verdict of a face at `similarity` to its group and `next_similarity` to the nearest other
// (-1 when there is none).
Verdict verdict_of(bool alone, double similarity, double next_similarity);

// One face (a row of the embeddings) in its group.
struct PlacedFace {
  std::size_t row = 0;
  double similarity = 0;        // mean cosine to the other members of its group; 0 when alone
  int next_group = -1;          // the other group of highest mean cosine; -1 when none
  double next_similarity = -1;  // its mean cosine to next_group; -1 when none
  Verdict verdict = Verdict::kAlone;
};
struct FaceGroup {
  std::vector<PlacedFace> faces;  // most similar first (ties in row order)
  double mean_similarity = 0;     // mean of the faces' similarity (0 for a single face)
};

// The groups of `clustering` (in its order, index = group number) with their faces placed;
// similarities as in similarity_to_groups.
std::vector<FaceGroup> place_faces(const torch::Tensor& embeddings, const Clustering& clustering);
// place_faces(embeddings, cluster_faces(embeddings, threshold)).
std::vector<FaceGroup> group_faces(const torch::Tensor& embeddings, double threshold);

// How a grouping (`predicted`) matches the true identities (`truth`), both one label per face.
//   pairwise: of the pairs put together, the share that are one person (precision); of the pairs
//     of one person, the share put together (recall); their harmonic mean (F). With no pair put
//     together (or none of one person) the precision (recall) is 1: nothing was wrong.
//   BCubed (Bagga & Baldwin): per face, the share of its group that is its person (precision)
//     and of its person that is in its group (recall), averaged over faces.
//   NMI: mutual information over the arithmetic mean of the two entropies (sklearn's default);
//     1 when both are a single group.
struct ClusterScores {
  double pairwise_precision = 0, pairwise_recall = 0, pairwise_f = 0;
  double bcubed_precision = 0, bcubed_recall = 0, bcubed_f = 0;
  double nmi = 0;
  int groups = 0, identities = 0;
};
ClusterScores score_clustering(std::span<const int> predicted, std::span<const int> truth);

// The grouping given by one representative per row (any id shared by a group's rows), groups
// numbered by size, largest first, ties by first member (as Dendrogram::cut numbers them).
Clustering clustering_of(const std::vector<std::size_t>& representative);

}  // namespace facemag
