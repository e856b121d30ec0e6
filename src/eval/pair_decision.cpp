#include "facemag/eval/pair_decision.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "facemag/error.hpp"
#include "facemag/eval/verification.hpp"

namespace facemag::eval {

std::string PairDecision::decision() const {
  return undecided ? "undecided" : same ? "same" : "different";
}

std::string fmr_label(double fmr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0e", fmr);
  return buf;
}

PairDecision decide_pair(const Embedding& a, const Embedding& b, const ModelManifest& m,
                         const PairRules& rules) {
  PairDecision d;
  d.threshold = m.same_person_threshold;
  d.threshold_basis = m.threshold_calibration;
  if (rules.fmr > 0) {
    const auto it = std::find_if(
        m.fmr_thresholds.begin(), m.fmr_thresholds.end(),
        [&](const auto& t) { return std::abs(t.fmr - rules.fmr) <= 1e-9 * rules.fmr; });
    if (it == m.fmr_thresholds.end())
      throw InvalidInput(m.name + ": no threshold calibrated for FMR " + fmr_label(rules.fmr) +
                         " (run facemag calibrate --save)");
    d.threshold = it->threshold;
    d.threshold_basis = "FMR " + fmr_label(rules.fmr) + " (calibrated)";
  }
  if (rules.threshold) {
    d.threshold = *rules.threshold;
    d.threshold_basis = "given";
  }
  const std::vector<double> da(a.raw.begin(), a.raw.end()), db(b.raw.begin(), b.raw.end());
  d.similarity = cosine_similarity(da, db);
  d.quality_a = a.quality;
  d.quality_b = b.quality;
  d.undecided = m.quality_threshold > 0 && std::min(d.quality_a, d.quality_b) < m.quality_threshold;
  d.same = d.similarity > d.threshold;
  return d;
}

}  // namespace facemag::eval
