// Clustering faces at library size: a sparse k-nearest-neighbour graph from faiss and average
// linkage over it, for collections whose N x N similarity matrix (eval/cluster.hpp) no longer fits
// in memory (8 N^2 bytes: 3.2 GB at 20k faces, 80 GB at 100k).
//
// Average linkage between two groups of unit vectors A and B is the mean of their |A| |B| cosines,
// which equals S_A . S_B / (|A| |B|) with S the sum of a group's unit vectors. So the graph method
// computes every linkage it uses exactly, from the groups' sums; the graph only decides which pairs
// of groups are candidates for a merge (those joined by at least one k-NN edge). With a complete
// graph it makes exactly the merges of average_linkage(); on a k-NN graph it misses a merge only
// where two groups of high mean similarity have no member among each other's k nearest.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "facemag/eval/cluster.hpp"

namespace facemag {

// Rows of `embeddings` (N x D, any scale, any float type) as unit float32 rows, contiguous: the
// input the functions below take. One copy (4 N D bytes); the caller's embeddings are unchanged.
torch::Tensor unit_rows(const torch::Tensor& embeddings);

// The k nearest other rows of every row by cosine similarity.
struct KnnGraph {
  std::size_t rows = 0;
  int k = 0;
  std::vector<std::int64_t> neighbour;  // rows x k, row-major, most similar first; -1: none
  std::vector<float> similarity;        // rows x k, the cosine of each edge
  bool exact = true;                    // found by brute force (else by an IVF index)
};

struct KnnGraphOptions {
  int k = 30;
  // Brute force (faiss IndexFlatIP: N^2 D multiply-adds) up to this many rows; above it an
  // inverted file: k-means (faiss) into 4 sqrt(N) cells, each row compared with the rows of the
  // `probes` cells whose centroids are most similar to it, as an IVF index searches; done cell by
  // cell, every row searching a cell against its members in one matrix product (BLAS: Debian's
  // faiss scans an IVF index's lists with scalar code, many times slower).
  std::size_t exact_up_to = 50000;
  int probes = 32;
  std::function<void(std::size_t rows_done)> progress;  // called as rows are searched
};

// Time: exact O(N^2 D); inverted file O(N D (4 sqrt(N) + probes sqrt(N) / 4)), i.e. O(N^1.5 D).
// Memory: 12 N k bytes of graph; exact, faiss's copy of the rows (4 N D bytes); inverted file,
// 8 N probes bytes of cell lists and one cell's rows at a time.
KnnGraph knn_graph(const torch::Tensor& unit, const KnnGraphOptions& options = {});

// Average linkage restricted to pairs of groups joined by a graph edge, down to similarity
// `lowest` (merges below it are not made, so cut() at any threshold >= lowest is exact for this
// graph). Merges come out in non-increasing similarity (a rare rise, from a pair of groups with no
// edge between them, is recorded at the previous merge's value, so that cut() stays consistent).
// Each group keeps one heap entry, its best partner, found by scanning the adjacent groups whose
// linkage is at least `lowest`; a pair below it is set aside until the groups' sizes have grown
// enough that it could reach `lowest` (a bound from cosines <= 1), so a large group does not
// rescan the many groups it will never join at each of its merges.
// Time: O(E log E + E D) to start (E <= N k distinct edges), then per merge O(a D) with a the
// merged group's adjacent groups at `lowest` or above, plus O(D log E) each time a set-aside pair
// is looked at again (O(log N) times per pair: each look needs a group to grow by a factor
// sqrt((1 - L) / (1 - lowest)) > 1). A person of F faces costs O(F^2 D) in the worst case (its
// group scanning its own not-yet-joined faces). Memory: 8 N k bytes of edges while starting,
// then 16 bytes per edge, 4 per awake side and 12 per set-aside side, and 8 D bytes per group
// of two or more faces.
// `progress` (when set) gets how far merging has come down from similarity 1 to `lowest`, in
// thousandths, as it moves; 1000 at the end.
Dendrogram graph_average_linkage(const torch::Tensor& unit, const KnnGraph& graph, double lowest,
                                 const std::function<void(std::size_t per_mille)>& progress = {});

// Chinese whispers (Biemann 2006; dlib's chinese_whispers, used by photo applications): label
// propagation over the graph's edges of similarity >= `threshold`, each row taking the label of
// greatest summed edge weight among its neighbours, `iterations` passes in a seeded random order.
// Time O(iterations N k); memory O(N k). Offered for comparison with graph average linkage.
Clustering chinese_whispers(const KnnGraph& graph, double threshold, int iterations = 20,
                            std::uint64_t seed = 1);

// place_faces() without the N x groups similarity matrix: a face's similarity to its own group is
// exact (from the group's sum); its next group is the most similar among the groups of its graph
// neighbours (exact mean cosine to each). Equals place_faces() when the graph is complete.
// Time O(N k D); memory O(G D) for the group sums.
std::vector<FaceGroup> place_faces_on_graph(const torch::Tensor& unit, const Clustering& clustering,
                                            const KnnGraph& graph);

// How to cluster: exact average linkage where its similarity matrix fits the memory budget,
// else graph average linkage on a k-NN graph.
enum class ClusterMethod { kAuto, kExact, kGraph };
// Where a long run is, for a progress bar per stage: "neighbours" (rows searched, of `total`
// rows) and "linkage" (graph_average_linkage's thousandths, of 1000). The graph method only; not
// called concurrently.
using ClusterProgress = std::function<void(const char* stage, std::size_t done, std::size_t total)>;
struct ClusterOptions {
  ClusterMethod method = ClusterMethod::kAuto;
  std::size_t memory_budget_bytes = std::size_t{2} << 30;  // for the exact method's matrix
  KnnGraphOptions graph;
  ClusterProgress progress;
};

// Bytes the exact method's similarity matrix takes for N rows (8 N^2).
std::size_t exact_linkage_bytes(std::size_t rows);
// kExact or kGraph: what kAuto means for this many rows and budget.
ClusterMethod chosen_method(std::size_t rows, const ClusterOptions& options);
// "exact" or "graph".
const char* cluster_method_name(ClusterMethod method);

// A collection's average-linkage hierarchy, by the method chosen for its size, kept with what
// placing its faces needs; cut it at any number of thresholds (a sweep) for the cost of one.
// Exact: one 8 N^2-byte matrix while it is built. Graph: the unit rows (4 N D bytes), the k-NN
// graph and the dendrogram down to `lowest` (merges below it are not made).
class LinkageHierarchy {
 public:
  LinkageHierarchy(const torch::Tensor& embeddings, double lowest, const ClusterOptions& options);
  // The groups left after every merge at a similarity of at least `threshold` (>= lowest).
  Clustering cut(double threshold) const;
  // The groups of `clustering` with their faces placed (place_faces, or place_faces_on_graph).
  std::vector<FaceGroup> place(const Clustering& clustering) const;
  ClusterMethod method() const { return method_; }
  const KnnGraph& graph() const { return graph_; }  // empty for the exact method

 private:
  ClusterMethod method_;
  double lowest_;
  torch::Tensor embeddings_, unit_;
  KnnGraph graph_;
  Dendrogram dendrogram_;
};

// The groups of a collection at one threshold, with each face placed, by the chosen method.
struct GroupedFaces {
  Clustering clustering;
  std::vector<FaceGroup> groups;
  ClusterMethod method = ClusterMethod::kExact;
};
GroupedFaces group_faces(const torch::Tensor& embeddings, double threshold,
                         const ClusterOptions& options);

}  // namespace facemag
