#include "facemag/eval/calibration.hpp"

#include <cstdio>
#include <filesystem>
#include <string>

#include "facemag/error.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/model/resolve.hpp"

namespace facemag::eval {

Calibration calibrate(const LoadedPairs& loaded, ModelManifest manifest,
                      const CalibrationOptions& options) {
  const auto& pairs = loaded.pairs;
  const auto similarity = pair_similarities(pairs);
  Calibration out;
  manifest.fmr_thresholds.clear();
  std::optional<double> decision;
  for (double fmr : options.fmrs) {
    const auto op = operating_point(similarity, pairs.is_same, fmr);
    out.thresholds.push_back({fmr, op});
    if (!op) continue;
    manifest.fmr_thresholds.push_back({fmr, op->threshold});
    if (fmr == options.decision_fmr) decision = op->threshold;
  }
  out.quality_threshold = quality_threshold(loaded.face_quality, options.reject_rate);
  const std::string on = std::filesystem::path(loaded.description).filename().string() + " (" +
                         pair_counts(pairs) + ")";
  manifest.quality_threshold = out.quality_threshold;
  manifest.quality_calibration = "rejects " +
                                 std::to_string(100 * options.reject_rate).substr(0, 4) +
                                 "% of the faces of " + on;
  out.decision_measured = decision.has_value();
  if (decision) {
    manifest.same_person_threshold = *decision;
    manifest.threshold_calibration = "FMR " + fmr_label(options.decision_fmr) + " on " + on;
  } else {
    const auto roc = roc_summary(similarity, pairs.is_same, {});
    manifest.same_person_threshold = roc.best_threshold;
    manifest.threshold_calibration =
        "best accuracy on " + on + " (FMR " + fmr_label(options.decision_fmr) + " not measurable)";
  }
  out.manifest = std::move(manifest);
  return out;
}

ModelManifest with_clustering_calibration(ModelManifest manifest,
                                          const ClusterEvaluation& evaluation,
                                          const std::string& data) {
  if (evaluation.sweep.empty())
    throw InvalidInput("clustering calibration: the threshold sweep is empty");
  const auto& first = evaluation.sweep.front();
  const auto& last = evaluation.sweep.back();
  const double step =
      evaluation.sweep.size() > 1 ? evaluation.sweep[1].threshold - first.threshold : 0.0;
  char text[512];
  std::snprintf(text, sizeof text,
                "best BCubed F (%.3f) of %s average linkage on %s (%zu faces of %zu people), "
                "thresholds %.2f-%.2f by %.2f",
                evaluation.best.bcubed_f, cluster_method_name(evaluation.method), data.c_str(),
                evaluation.faces, evaluation.identities, first.threshold, last.threshold, step);
  manifest.cluster_threshold = evaluation.best_bcubed_threshold;
  manifest.cluster_calibration = text;
  return manifest;
}

std::filesystem::path calibrated_manifest_path(const std::filesystem::path& manifest_out,
                                               const std::filesystem::path& weights) {
  if (!manifest_out.empty()) return manifest_out;
  if (weights.empty())
    throw InvalidInput("--save needs --weights (the manifest goes beside them) or --manifest-out");
  return manifest_path_for(weights);
}

}  // namespace facemag::eval
