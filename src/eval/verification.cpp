#include "facemag/eval/verification.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>

#include "facemag/error.hpp"

namespace facemag::eval {
namespace {

double norm(std::span<const double> v) {
  double sum = 0;
  for (double x : v) sum += x * x;
  return std::sqrt(sum);
}

double dot(std::span<const double> a, std::span<const double> b) {
  double sum = 0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

double distance_from_cosine(double cosine) {
  return std::acos(std::clamp(cosine, -1.0, 1.0)) / std::numbers::pi;
}

// Accuracy, TPR and FPR of "same when distance < threshold" on pairs [begin, end) except
// [skip_begin, skip_end).
struct Counts {
  std::size_t tp = 0, fp = 0, tn = 0, fn = 0;
  double tpr() const { return tp + fn == 0 ? 0.0 : double(tp) / double(tp + fn); }
  double fpr() const { return fp + tn == 0 ? 0.0 : double(fp) / double(fp + tn); }
  double accuracy() const { return double(tp + tn) / double(tp + fp + tn + fn); }
};

template <class Range>
Counts count_decisions(const std::vector<double>& distance, const std::vector<bool>& is_same,
                       const Range& rows, double threshold) {
  Counts c;
  for (std::size_t p : rows) {
    const bool predicted = distance[p] < threshold;
    if (predicted) {
      is_same[p] ? ++c.tp : ++c.fp;
    } else {
      is_same[p] ? ++c.fn : ++c.tn;
    }
  }
  return c;
}

// np.mean(concatenate([a[rows], b[rows]]), axis=0): the mean face of both sides of `rows`.
std::vector<double> mean_face(const FeaturePairs& pairs, const std::vector<std::size_t>& rows) {
  const std::size_t dim = pairs.dim;
  std::vector<double> mean(dim, 0.0);
  for (const auto* side : {&pairs.first, &pairs.second}) {
    for (std::size_t p : rows) {
      for (std::size_t d = 0; d < dim; ++d) mean[d] += (*side)[p * dim + d];
    }
  }
  for (double& m : mean) m /= double(2 * rows.size());
  return mean;
}

// Mean and population standard deviation (np.mean, np.std) of the folds' accuracies.
template <class Fold>
std::pair<double, double> mean_and_std(const std::vector<Fold>& folds) {
  double sum = 0;
  for (const auto& f : folds) sum += f.accuracy;
  const double mean = sum / double(folds.size());
  double squares = 0;
  for (const auto& f : folds) squares += (f.accuracy - mean) * (f.accuracy - mean);
  return {mean, std::sqrt(squares / double(folds.size()))};
}

// FNMR at each FMR decade of one set of kept pairs, as eval_quality.py's loop: impostor
// distances sorted ascending, index n-1, n/10, ... (integer division) for FMR 1, 0.1, ...
std::vector<FnmrAtFmr> fnmr_by_decade(std::vector<double> genuine, std::vector<double> impostor) {
  std::vector<FnmrAtFmr> points;
  if (impostor.empty() || genuine.empty()) return points;
  std::sort(impostor.begin(), impostor.end());
  std::sort(genuine.begin(), genuine.end());
  std::size_t index = impostor.size() - 1;
  double fmr = 1;
  while (true) {
    const double threshold = impostor[index];
    const auto accepted = static_cast<std::size_t>(
        std::lower_bound(genuine.begin(), genuine.end(), threshold) - genuine.begin());
    points.push_back(
        {fmr, index, threshold, double(genuine.size() - accepted) / double(genuine.size())});
    if (index == 0) break;
    index /= 10;
    fmr /= 10.0;
  }
  return points;
}

}  // namespace

FeaturePairs make_feature_pairs(const torch::Tensor& features, const torch::Tensor& is_same,
                                const torch::Tensor& pair_index) {
  if (features.dim() != 2)
    throw InvalidInput("features must be a matrix (faces x values), got " +
                       std::to_string(features.dim()) + " dimension(s)");
  const auto rows = features.size(0);
  const auto dim = features.size(1);
  const auto f = features.to(torch::kFloat64).contiguous();
  const auto labels = is_same.reshape({-1}).to(torch::kInt64).contiguous();
  const auto n = labels.size(0);
  torch::Tensor index;
  if (pair_index.defined()) {
    if (pair_index.dim() != 2 || pair_index.size(1) != 2 || pair_index.size(0) != n)
      throw InvalidInput("the pair index must be " + std::to_string(n) +
                         " x 2 (one row per label), got " + std::to_string(pair_index.size(0)) +
                         (pair_index.dim() == 2 ? " x " + std::to_string(pair_index.size(1)) : ""));
    index = pair_index.to(torch::kInt64).contiguous();
  } else {
    if (rows != 2 * n)
      throw InvalidInput(std::to_string(n) + " pair labels need " + std::to_string(2 * n) +
                         " feature rows (rows 2p and 2p+1 form pair p), got " +
                         std::to_string(rows));
    index = torch::arange(2 * n, torch::kInt64).reshape({n, 2});
  }
  const double* values = f.data_ptr<double>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < dim; ++c) {
      if (!std::isfinite(values[r * dim + c]))
        throw InvalidInput("feature row " + std::to_string(r) + " holds a NaN or infinite value");
    }
  }
  FeaturePairs pairs;
  pairs.dim = static_cast<std::size_t>(dim);
  pairs.feature_rows = static_cast<std::size_t>(rows);
  pairs.first.reserve(static_cast<std::size_t>(n * dim));
  pairs.second.reserve(static_cast<std::size_t>(n * dim));
  const auto* idx = index.data_ptr<std::int64_t>();
  const auto* lab = labels.data_ptr<std::int64_t>();
  for (std::int64_t p = 0; p < n; ++p) {
    for (int side = 0; side < 2; ++side) {
      const auto row = idx[2 * p + side];
      if (row < 0 || row >= rows)
        throw InvalidInput("pair " + std::to_string(p) + " names feature row " +
                           std::to_string(row) + ", but there are " + std::to_string(rows));
      auto& out = side == 0 ? pairs.first : pairs.second;
      out.insert(out.end(), values + row * dim, values + (row + 1) * dim);
      pairs.rows.push_back(row);
    }
    if (lab[p] != 0 && lab[p] != 1)
      throw InvalidInput("the label of pair " + std::to_string(p) + " is " +
                         std::to_string(lab[p]) + ", expected 1 (same) or 0 (different)");
    pairs.is_same.push_back(lab[p] == 1);
  }
  return pairs;
}

double cosine_similarity(std::span<const double> a, std::span<const double> b) {
  return dot(a, b) / (norm(a) * norm(b));
}

double angular_distance(std::span<const double> a, std::span<const double> b) {
  return distance_from_cosine(cosine_similarity(a, b));
}

std::vector<double> pair_similarities(const FeaturePairs& pairs) {
  std::vector<double> out(pairs.size());
  for (std::size_t p = 0; p < pairs.size(); ++p) out[p] = cosine_similarity(pairs.a(p), pairs.b(p));
  return out;
}

std::vector<double> pair_qualities(const FeaturePairs& pairs) {
  std::vector<double> out(pairs.size());
  for (std::size_t p = 0; p < pairs.size(); ++p)
    out[p] = std::min(norm(pairs.a(p)), norm(pairs.b(p)));
  return out;
}

std::vector<double> pair_qualities(const FeaturePairs& pairs, std::span<const double> row_quality,
                                   const std::string& source) {
  if (pairs.rows.size() != 2 * pairs.size())
    throw InvalidInput(source + ": qualities per feature row need pairs made from a feature file");
  if (row_quality.size() != pairs.feature_rows)
    throw InvalidInput(source + ": " + std::to_string(row_quality.size()) + " qualities for " +
                       std::to_string(pairs.feature_rows) + " feature rows");
  for (std::size_t r = 0; r < row_quality.size(); ++r)
    if (!std::isfinite(row_quality[r]))
      throw InvalidInput(source + ": the quality of row " + std::to_string(r) + " is not finite");
  std::vector<double> out(pairs.size());
  for (std::size_t p = 0; p < pairs.size(); ++p)
    out[p] = std::min(row_quality[static_cast<std::size_t>(pairs.rows[2 * p])],
                      row_quality[static_cast<std::size_t>(pairs.rows[2 * p + 1])]);
  return out;
}

KFoldResult kfold_verification(const FeaturePairs& pairs, const KFoldOptions& options) {
  const std::size_t n = pairs.size();
  const auto folds = static_cast<std::size_t>(options.folds);
  if (options.folds < 2) throw InvalidInput("k-fold verification needs at least 2 folds");
  if (n < folds)
    throw InvalidInput(std::to_string(n) + " pairs cannot be split into " + std::to_string(folds) +
                       " folds");
  KFoldResult result;
  result.thresholds = options.thresholds;
  if (result.thresholds.empty()) {
    for (int i = 0; i < 400; ++i) result.thresholds.push_back(i * 0.01);
  }
  const std::size_t t_count = result.thresholds.size();
  result.tpr.assign(t_count, 0.0);
  result.fpr.assign(t_count, 0.0);

  const std::size_t dim = pairs.dim;
  std::vector<double> distance(n), shifted_a(dim), shifted_b(dim);
  std::size_t begin = 0;
  for (std::size_t fold = 0; fold < folds; ++fold) {
    const std::size_t size = n / folds + (fold < n % folds ? 1 : 0);
    FoldResult fr;
    fr.fold = static_cast<int>(fold);
    fr.test_begin = begin;
    fr.test_end = begin + size;
    std::vector<std::size_t> train, test;
    for (std::size_t p = 0; p < n; ++p)
      (p >= fr.test_begin && p < fr.test_end ? test : train).push_back(p);

    const std::vector<double> mean =
        options.subtract_mean ? mean_face(pairs, train) : std::vector<double>(dim, 0.0);
    for (std::size_t p = 0; p < n; ++p) {
      for (std::size_t d = 0; d < dim; ++d) {
        shifted_a[d] = pairs.first[p * dim + d] - mean[d];
        shifted_b[d] = pairs.second[p * dim + d] - mean[d];
      }
      distance[p] = angular_distance(shifted_a, shifted_b);
    }

    double best = -1;
    for (std::size_t t = 0; t < t_count; ++t) {
      const double acc =
          count_decisions(distance, pairs.is_same, train, result.thresholds[t]).accuracy();
      if (acc > best) {
        best = acc;
        fr.best_threshold_index = t;
      }
    }
    for (std::size_t t = 0; t < t_count; ++t) {
      const Counts c = count_decisions(distance, pairs.is_same, test, result.thresholds[t]);
      result.tpr[t] += c.tpr();
      result.fpr[t] += c.fpr();
    }
    fr.train_accuracy = best;
    fr.best_threshold = result.thresholds[fr.best_threshold_index];
    fr.accuracy = count_decisions(distance, pairs.is_same, test, fr.best_threshold).accuracy();
    result.folds.push_back(fr);
    begin = fr.test_end;
  }
  for (std::size_t t = 0; t < t_count; ++t) {
    result.tpr[t] /= double(folds);
    result.fpr[t] /= double(folds);
  }
  std::tie(result.mean_accuracy, result.std_accuracy) = mean_and_std(result.folds);
  return result;
}

LfwResult lfw_protocol(const FeaturePairs& pairs, std::span<const int> fold_of_pair) {
  const std::size_t n = pairs.size(), dim = pairs.dim;
  if (fold_of_pair.size() != n)
    throw InvalidInput("LFW protocol: " + std::to_string(fold_of_pair.size()) +
                       " fold numbers for " + std::to_string(n) + " pairs");
  std::vector<int> fold_ids(fold_of_pair.begin(), fold_of_pair.end());
  std::sort(fold_ids.begin(), fold_ids.end());
  fold_ids.erase(std::unique(fold_ids.begin(), fold_ids.end()), fold_ids.end());
  if (fold_ids.size() < 2)
    throw InvalidInput("LFW protocol: the pairs form " + std::to_string(fold_ids.size()) +
                       " fold(s); thresholds are chosen on the other folds, so at least 2 are "
                       "needed");
  constexpr int kSteps = 10000;  // thresholds i / 10000 for i in -10000 .. 10000
  LfwResult result;
  std::vector<double> score(n), a(dim), b(dim);
  for (const int fold : fold_ids) {
    std::vector<std::size_t> train, test;
    for (std::size_t p = 0; p < n; ++p) (fold_of_pair[p] == fold ? test : train).push_back(p);
    const auto mean = mean_face(pairs, train);
    for (std::size_t p = 0; p < n; ++p) {
      for (std::size_t d = 0; d < dim; ++d) {
        a[d] = pairs.first[p * dim + d] - mean[d];
        b[d] = pairs.second[p * dim + d] - mean[d];
      }
      score[p] = cosine_similarity(a, b);
    }
    // Accuracy on the training folds at every threshold, from sorted scores.
    std::vector<double> same, different;
    for (std::size_t p : train) (pairs.is_same[p] ? same : different).push_back(score[p]);
    std::sort(same.begin(), same.end());
    std::sort(different.begin(), different.end());
    const auto accuracy_at = [&](double t) {
      const auto accepted = same.end() - std::upper_bound(same.begin(), same.end(), t);
      const auto rejected =
          std::lower_bound(different.begin(), different.end(), t) - different.begin();
      return double(accepted + rejected) / double(train.size());
    };
    double best = -1, threshold_sum = 0;
    int best_count = 0;
    for (int i = -kSteps; i <= kSteps; ++i) {
      const double t = double(i) / kSteps;
      const double acc = accuracy_at(t);
      if (acc > best) {
        best = acc;
        threshold_sum = 0;
        best_count = 0;
      }
      if (acc == best) {
        threshold_sum += t;
        ++best_count;
      }
    }
    LfwFoldResult fr;
    fr.fold = fold;
    fr.pairs = test.size();
    fr.threshold = threshold_sum / best_count;
    std::size_t correct = 0;
    for (std::size_t p : test) {
      correct += pairs.is_same[p] ? score[p] > fr.threshold : score[p] < fr.threshold;
    }
    fr.accuracy = double(correct) / double(test.size());
    result.folds.push_back(fr);
  }
  std::tie(result.mean_accuracy, result.std_accuracy) = mean_and_std(result.folds);
  return result;
}

std::optional<OperatingPoint> operating_point(std::span<const double> similarity,
                                              const std::vector<bool>& is_same, double fmr) {
  std::vector<double> impostor, genuine;
  for (std::size_t p = 0; p < similarity.size(); ++p)
    (is_same[p] ? genuine : impostor).push_back(similarity[p]);
  if (genuine.empty() || impostor.empty() || double(impostor.size()) * fmr < 1.0 - 1e-9)
    return std::nullopt;
  std::sort(impostor.begin(), impostor.end(), std::greater<>());
  const auto k = static_cast<std::size_t>(std::floor(fmr * double(impostor.size()) + 1e-9));
  OperatingPoint op;
  op.fmr = fmr;
  op.threshold = impostor[std::min(k, impostor.size() - 1)];
  op.false_matches = static_cast<std::size_t>(
      std::count_if(impostor.begin(), impostor.end(), [&](double s) { return s > op.threshold; }));
  op.tar = double(std::count_if(genuine.begin(), genuine.end(),
                                [&](double s) { return s > op.threshold; })) /
           double(genuine.size());
  return op;
}

RocSummary roc_summary(std::span<const double> similarity, const std::vector<bool>& is_same,
                       const std::vector<double>& fmrs) {
  RocSummary roc;
  struct Scored {
    double score;
    bool same;
  };
  std::vector<Scored> all;
  for (std::size_t p = 0; p < similarity.size(); ++p) {
    all.push_back({similarity[p], is_same[p]});
    is_same[p] ? ++roc.genuine : ++roc.impostor;
  }
  if (roc.genuine == 0 || roc.impostor == 0)
    throw InvalidInput("a ROC needs both same-person and different-person pairs (got " +
                       std::to_string(roc.genuine) + " and " + std::to_string(roc.impostor) + ")");
  std::sort(all.begin(), all.end(),
            [](const Scored& x, const Scored& y) { return x.score < y.score; });

  // Walk the thresholds upwards through groups of tied scores: below the group everything from
  // it upwards is accepted.
  const double g = double(roc.genuine), i = double(roc.impostor);
  std::size_t genuine_below = 0, impostor_below = 0;
  double rank_sum = 0;  // for the AUC: impostors below each genuine, ties half
  double best_gap = 2;
  // Threshold below every score: all accepted.
  roc.best_accuracy = g / (g + i);
  roc.best_threshold = all.front().score - 1e-6;
  for (std::size_t start = 0; start < all.size();) {
    std::size_t end = start;
    std::size_t tie_genuine = 0, tie_impostor = 0;
    while (end < all.size() && all[end].score == all[start].score) {
      all[end].same ? ++tie_genuine : ++tie_impostor;
      ++end;
    }
    rank_sum += double(tie_genuine) * (double(impostor_below) + 0.5 * double(tie_impostor));
    genuine_below += tie_genuine;
    impostor_below += tie_impostor;
    // Threshold just above this group: it and everything below are rejected.
    const double frr = double(genuine_below) / g;
    const double far = 1.0 - double(impostor_below) / i;
    const double next = end < all.size() ? all[end].score : all[start].score + 1e-6;
    const double threshold = 0.5 * (all[start].score + next);
    if (std::abs(far - frr) < best_gap) {
      best_gap = std::abs(far - frr);
      roc.eer = 0.5 * (far + frr);
      roc.eer_threshold = threshold;
    }
    const double accuracy = double(impostor_below + (roc.genuine - genuine_below)) / (g + i);
    if (accuracy > roc.best_accuracy) {
      roc.best_accuracy = accuracy;
      roc.best_threshold = threshold;
    }
    start = end;
  }
  roc.auc = rank_sum / (g * i);
  for (double fmr : fmrs) {
    if (auto op = operating_point(similarity, is_same, fmr)) roc.tar_at_fmr.push_back(*op);
  }
  return roc;
}

const FnmrAtFmr* ErcStep::at(double fmr) const {
  for (const auto& p : points) {
    if (std::abs(p.fmr - fmr) <= 1e-9 * fmr) return &p;
  }
  return nullptr;
}

std::vector<double> default_reject_rates() {
  std::vector<double> rates;
  for (int i = 0; i < 20; ++i) rates.push_back(i * 0.05);
  return rates;
}

namespace {

// The error-versus-reject steps of pairs with these angular distances and labels, rejected in
// ascending `quality` order.
std::vector<ErcStep> erc_steps(const std::vector<double>& distance,
                               const std::vector<bool>& is_same, std::span<const double> quality,
                               const std::vector<double>& reject_rates) {
  const std::size_t n = distance.size();
  if (quality.size() != n)
    throw InvalidInput("error versus reject: " + std::to_string(quality.size()) +
                       " qualities for " + std::to_string(n) + " pairs");
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return quality[x] < quality[y]; });
  std::vector<ErcStep> steps;
  for (double rate : reject_rates) {
    ErcStep step;
    step.reject_rate = rate;
    step.rejected = static_cast<std::size_t>(rate * double(n));  // int(): truncation
    step.kept = n - std::min(step.rejected, n);
    std::vector<double> genuine, impostor;
    for (std::size_t k = step.rejected; k < n; ++k) {
      const std::size_t p = order[k];
      (is_same[p] ? genuine : impostor).push_back(distance[p]);
    }
    step.kept_positive = genuine.size();
    step.kept_negative = impostor.size();
    step.points = fnmr_by_decade(std::move(genuine), std::move(impostor));
    steps.push_back(std::move(step));
  }
  return steps;
}

std::vector<double> pair_distances(const FeaturePairs& pairs) {
  std::vector<double> distance(pairs.size());
  for (std::size_t p = 0; p < pairs.size(); ++p)
    distance[p] = angular_distance(pairs.a(p), pairs.b(p));
  return distance;
}

}  // namespace

std::vector<ErcStep> error_versus_reject(const FeaturePairs& pairs, std::span<const double> quality,
                                         const std::vector<double>& reject_rates) {
  return erc_steps(pair_distances(pairs), pairs.is_same, quality, reject_rates);
}

std::vector<double> random_reject_fnmr(const FeaturePairs& pairs,
                                       const std::vector<double>& reject_rates, double fmr,
                                       int repeats, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<double> sum(reject_rates.size(), 0.0);
  std::vector<int> reached(reject_rates.size(), 0);
  const std::vector<double> distance = pair_distances(pairs);  // once for all shuffles
  std::vector<double> random_quality(pairs.size());
  for (int r = 0; r < repeats; ++r) {
    std::iota(random_quality.begin(), random_quality.end(), 0.0);
    std::shuffle(random_quality.begin(), random_quality.end(), rng);
    const auto steps = erc_steps(distance, pairs.is_same, random_quality, reject_rates);
    for (std::size_t s = 0; s < steps.size(); ++s) {
      if (const auto* p = steps[s].at(fmr)) {
        sum[s] += p->fnmr;
        ++reached[s];
      }
    }
  }
  std::vector<double> mean(reject_rates.size());
  for (std::size_t s = 0; s < mean.size(); ++s)
    mean[s] = reached[s] == repeats ? sum[s] / repeats : std::numeric_limits<double>::quiet_NaN();
  return mean;
}

double quality_threshold(std::vector<double> qualities, double reject_rate) {
  if (qualities.empty()) throw InvalidInput("no qualities to set a threshold from");
  if (reject_rate < 0 || reject_rate >= 1)
    throw InvalidInput("a rejection rate must be in [0, 1), got " + std::to_string(reject_rate));
  std::sort(qualities.begin(), qualities.end());
  return qualities[static_cast<std::size_t>(reject_rate * double(qualities.size()))];
}

namespace {

std::vector<double> ranks(std::span<const double> values) {
  std::vector<std::size_t> order(values.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t x, std::size_t y) { return values[x] < values[y]; });
  std::vector<double> out(values.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && values[order[j + 1]] == values[order[i]]) ++j;
    for (std::size_t k = i; k <= j; ++k) out[order[k]] = 0.5 * static_cast<double>(i + j);
    i = j + 1;
  }
  return out;
}

}  // namespace

double spearman(std::span<const double> a, std::span<const double> b) {
  if (a.size() != b.size()) throw InvalidInput("spearman: sequences of different lengths");
  if (a.size() < 2) return std::nan("");
  const auto ra = ranks(a), rb = ranks(b);
  const double mean = 0.5 * static_cast<double>(a.size() - 1);
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : std::nan("");
}

}  // namespace facemag::eval
