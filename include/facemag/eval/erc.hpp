// `facemag eval erc`: how well a quality measure (the smaller quality of a pair's two faces: the
// magnitude, or any measure given per face) predicts verification errors. The error-versus-reject
// curve at chosen FMRs beside the baseline of rejecting pairs at random, and the figures that
// summarise it.
#pragma once

#include <opencv2/core/mat.hpp>

#include <string>
#include <vector>

#include "facemag/eval/verification.hpp"

namespace facemag::eval {

struct ErcSummary {
  std::string quality_source = "magnitude";  // what ranked the pairs
  std::vector<double> fmrs;                  // as requested
  std::vector<ErcStep> steps;  // at default_reject_rates(), lowest quality rejected first
  // random_fnmr[k][s]: FNMR at fmrs[k] after step s's share rejected at random (NaN: not reached).
  std::vector<std::vector<double>> random_fnmr;
  // Spearman of the pair quality against the similarity over the genuine pairs (NaN: undefined).
  double spearman_genuine = 0;
  // The curve's mean over 0-40 % rejected at each FMR that some of those steps reach (a smaller
  // area: a better quality measure).
  struct MeanFnmr {
    double fmr = 0;
    double mean_fnmr = 0;
  };
  std::vector<MeanFnmr> mean_fnmr_0_40;
};

// The curve of `pairs` ranked by eval::pair_qualities, the random baseline averaged over
// `random_repeats` shuffles, and the summary figures.
ErcSummary summarize_error_versus_reject(const FeaturePairs& pairs, const std::vector<double>& fmrs,
                                         int random_repeats = 20);
// The same with the pairs ranked by `pair_quality` (one value per pair, lower rejected first),
// named `quality_source`.
ErcSummary summarize_error_versus_reject(const FeaturePairs& pairs,
                                         const std::vector<double>& pair_quality,
                                         const std::string& quality_source,
                                         const std::vector<double>& fmrs, int random_repeats = 20);

// The FNMR curves beside their random baselines (dashed), one colour per FMR, titled after the
// file name of `source`.
cv::Mat erc_chart(const ErcSummary& erc, const std::string& source);

}  // namespace facemag::eval
