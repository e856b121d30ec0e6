#include "facemag/eval/erc.hpp"

#include <cmath>
#include <filesystem>

#include "facemag/error.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/eval/plot.hpp"

namespace facemag::eval {

ErcSummary summarize_error_versus_reject(const FeaturePairs& pairs, const std::vector<double>& fmrs,
                                         int random_repeats) {
  return summarize_error_versus_reject(pairs, pair_qualities(pairs), "magnitude", fmrs,
                                       random_repeats);
}

ErcSummary summarize_error_versus_reject(const FeaturePairs& pairs,
                                         const std::vector<double>& quality,
                                         const std::string& quality_source,
                                         const std::vector<double>& fmrs, int random_repeats) {
  if (quality.size() != pairs.size())
    throw InvalidInput(quality_source + ": " + std::to_string(quality.size()) + " qualities for " +
                       std::to_string(pairs.size()) + " pairs");
  ErcSummary out;
  out.quality_source = quality_source;
  out.fmrs = fmrs;
  const auto rates = default_reject_rates();
  out.steps = error_versus_reject(pairs, quality, rates);
  for (double fmr : fmrs)
    out.random_fnmr.push_back(random_reject_fnmr(pairs, rates, fmr, random_repeats));
  const auto similarity = pair_similarities(pairs);
  std::vector<double> genuine_quality, genuine_similarity;
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    if (!pairs.is_same[p]) continue;
    genuine_quality.push_back(quality[p]);
    genuine_similarity.push_back(similarity[p]);
  }
  out.spearman_genuine = spearman(genuine_quality, genuine_similarity);
  for (double fmr : fmrs) {
    double sum = 0;
    int count = 0;
    for (const auto& step : out.steps) {
      const auto* p = step.at(fmr);
      if (step.reject_rate > 0.4 + 1e-9 || !p) continue;
      sum += p->fnmr;
      ++count;
    }
    if (count > 0) out.mean_fnmr_0_40.push_back({fmr, sum / count});
  }
  return out;
}

cv::Mat erc_chart(const ErcSummary& erc, const std::string& source) {
  std::vector<plot::Series> series;
  for (std::size_t k = 0; k < erc.fmrs.size(); ++k) {
    plot::Series quality{
        "magnitude, FMR " + fmr_label(erc.fmrs[k]), {}, {}, plot::category_color(k), false};
    plot::Series baseline{
        "random, FMR " + fmr_label(erc.fmrs[k]), {}, {}, plot::category_color(k), true};
    for (std::size_t s = 0; s < erc.steps.size(); ++s) {
      const auto* p = erc.steps[s].at(erc.fmrs[k]);
      quality.x.push_back(100 * erc.steps[s].reject_rate);
      quality.y.push_back(p ? p->fnmr : std::nan(""));
      baseline.x.push_back(100 * erc.steps[s].reject_rate);
      baseline.y.push_back(erc.random_fnmr[k][s]);
    }
    series.push_back(quality);
    series.push_back(baseline);
  }
  return plot::line_chart(
      series, {"Error versus reject: " + std::filesystem::path(source).filename().string(),
               "pairs rejected, lowest quality first [%]", "FNMR"});
}

}  // namespace facemag::eval
