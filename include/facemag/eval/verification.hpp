// 1:1 verification metrics on labelled pairs of embeddings, computed as MagFace's evaluation
// scripts compute them, plus the ROC summary and calibration a deployment needs.
//
// All arithmetic is in double. Embeddings are used as given (any scale): distances and
// similarities normalise internally, qualities are the raw norms.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace facemag::eval {

// N labelled pairs of D-dimensional embeddings: row p of `first` and `second` (row-major N x D)
// are the two faces of pair p.
struct FeaturePairs {
  std::size_t dim = 0;
  std::vector<double> first;
  std::vector<double> second;
  std::vector<bool> is_same;
  // Made from a feature matrix (make_feature_pairs): its rows, and each pair's two rows (2 per
  // pair, in order). Empty otherwise.
  std::size_t feature_rows = 0;
  std::vector<std::int64_t> rows;

  std::size_t size() const { return is_same.size(); }
  std::span<const double> a(std::size_t pair) const { return {first.data() + pair * dim, dim}; }
  std::span<const double> b(std::size_t pair) const { return {second.data() + pair * dim, dim}; }
};

// Pairs from a feature matrix (N x D, any float dtype) and pair_index (P x 2 int64 row numbers)
// or, when pair_index is undefined, rows 2p and 2p+1 (MagFace's feature lists). is_same: P
// values, 0 or 1 (int or bool tensor). InvalidInput for mismatched sizes, rows out of range,
// labels other than 0/1, and NaN or infinite features (naming the row).
FeaturePairs make_feature_pairs(const torch::Tensor& features, const torch::Tensor& is_same,
                                const torch::Tensor& pair_index = {});

double cosine_similarity(std::span<const double> a, std::span<const double> b);
// MagFace's angular distance arccos(clip(cos, -1, 1)) / pi: 0 (same direction) to 1.
double angular_distance(std::span<const double> a, std::span<const double> b);
// Cosine similarity of every pair.
std::vector<double> pair_similarities(const FeaturePairs& pairs);
// Quality of every pair: the smaller of the two raw norms (MagFace's eval_quality.py).
std::vector<double> pair_qualities(const FeaturePairs& pairs);
// The smaller of each pair's two faces' qualities, from one quality per feature row (any measure:
// a detector score, an image score, another model's): `source` names them in errors.
// InvalidInput when the pairs were not made from a feature matrix, or `row_quality` holds another
// number of values than its rows, or a value that is not finite.
std::vector<double> pair_qualities(const FeaturePairs& pairs, std::span<const double> row_quality,
                                   const std::string& source);

// ---- k-fold verification accuracy (MagFace eval_1v1.py, calculate_roc) ----

struct KFoldOptions {
  int folds = 10;
  // Subtract the training folds' mean embedding from every embedding before measuring distance.
  bool subtract_mean = true;
  // Angular-distance thresholds; default 0, 0.01, ..., 3.99 (np.arange(0, 4, 0.01)).
  std::vector<double> thresholds;
};

struct FoldResult {
  int fold = 0;
  std::size_t test_begin = 0, test_end = 0;  // test pairs [begin, end)
  std::size_t best_threshold_index = 0;      // first maximum of the training accuracy
  double best_threshold = 0;                 // angular distance: same when distance < it
  double train_accuracy = 0;
  double accuracy = 0;  // on the test fold
};

struct KFoldResult {
  std::vector<FoldResult> folds;
  double mean_accuracy = 0;
  double std_accuracy = 0;  // population standard deviation (np.std)
  std::vector<double> thresholds;
  std::vector<double> tpr, fpr;  // per threshold, mean over the test folds
};

// Folds are contiguous as sklearn's KFold(shuffle=False): the first N % folds folds have one
// pair more. InvalidInput when there are fewer pairs than folds.
KFoldResult kfold_verification(const FeaturePairs& pairs, const KFoldOptions& options = {});

// ---- LFW's own protocol (the tables of SphereFace, MobileFaceNet, insightface's LFW runs) ----

struct LfwFoldResult {
  int fold = 0;  // 0-based
  std::size_t pairs = 0;
  double threshold = 0;  // cosine similarity, chosen on the other folds
  double accuracy = 0;   // on this fold
};

struct LfwResult {
  std::vector<LfwFoldResult> folds;
  double mean_accuracy = 0;
  double std_accuracy = 0;  // population standard deviation
};

// fold_of_pair[p] is the fold of pair p (LFW: pairs.txt's blocks of 600). For each fold: the mean
// of the other folds' faces (both sides of every pair) is subtracted from every face, each face is
// L2-normalised and a pair's score is their dot product; the threshold is the mean of those among
// -1, -0.9999, ..., 1 that maximise the accuracy on the other folds (same when score > threshold,
// different when score < threshold); the fold's accuracy is taken at it. InvalidInput for a fold
// count below 2 or a fold_of_pair of the wrong length.
LfwResult lfw_protocol(const FeaturePairs& pairs, std::span<const int> fold_of_pair);

// ---- ROC on cosine similarity (same when similarity > threshold) ----

struct OperatingPoint {
  double fmr = 0;        // the target false match rate
  double threshold = 0;  // cosine similarity
  double tar = 0;        // true accept rate at it (1 - FNMR)
  std::size_t false_matches = 0;
};

// The threshold for a target false match rate: the (k+1)-th highest impostor similarity with
// k = floor(fmr * impostors), so that at most k impostors score above it. nullopt when there
// are fewer than 1 / fmr impostors (the rate cannot be measured) or no genuine pairs.
std::optional<OperatingPoint> operating_point(std::span<const double> similarity,
                                              const std::vector<bool>& is_same, double fmr);

struct RocSummary {
  std::size_t genuine = 0, impostor = 0;
  double auc = 0;             // P(genuine > impostor), ties counting half
  double eer = 0;             // where false match and false non-match rates cross
  double eer_threshold = 0;   // cosine similarity
  double best_accuracy = 0;   // over all thresholds on these pairs
  double best_threshold = 0;  // cosine similarity, midway between the neighbouring scores
  std::vector<OperatingPoint> tar_at_fmr;  // for the requested FMRs the data allows
};
RocSummary roc_summary(std::span<const double> similarity, const std::vector<bool>& is_same,
                       const std::vector<double>& fmrs = {1e-1, 1e-2, 1e-3, 1e-4});

// ---- error versus reject (MagFace eval_quality.py) ----

struct FnmrAtFmr {
  double fmr = 0;  // 10^-k
  std::size_t negative_index = 0;
  double threshold = 0;  // angular distance of that impostor pair
  double fnmr = 0;       // share of genuine pairs with distance >= threshold
};

struct ErcStep {
  double reject_rate = 0;
  std::size_t rejected = 0, kept = 0, kept_positive = 0, kept_negative = 0;
  // The decades upstream's loop reaches: FMR 1, 0.1, 0.01, ... while impostors remain.
  std::vector<FnmrAtFmr> points;
  // The point at `fmr` (1e-1, 1e-2, 1e-3, ...) or nullptr when not reached.
  const FnmrAtFmr* at(double fmr) const;
};

// Reject rates 0, 0.05, ..., 0.95 (np.arange(0, 0.98, 0.05)).
std::vector<double> default_reject_rates();

// Pairs sorted by ascending `quality` (stable, as np.argsort on distinct values), the first
// int(rate * N) dropped, FNMR at each FMR decade of the remaining pairs, by angular distance
// without mean subtraction.
std::vector<ErcStep> error_versus_reject(const FeaturePairs& pairs, std::span<const double> quality,
                                         const std::vector<double>& reject_rates);

// The same curve for rejecting pairs at random: FNMR at `fmr` averaged over `repeats` seeded
// shuffles (the baseline a quality measure must beat). NaN where the FMR is not reached.
std::vector<double> random_reject_fnmr(const FeaturePairs& pairs,
                                       const std::vector<double>& reject_rates, double fmr,
                                       int repeats = 20, unsigned seed = 0);

// Spearman's rank correlation of two equally long sequences (ties take their mean rank); NaN
// for fewer than two values or a constant sequence. With the smaller magnitude of each genuine
// pair against its similarity it measures how well the magnitude predicts the match score.
double spearman(std::span<const double> a, std::span<const double> b);

// The quality below which a share `reject_rate` of the given qualities lies.
double quality_threshold(std::vector<double> qualities, double reject_rate);

}  // namespace facemag::eval
