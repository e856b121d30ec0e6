// `facemag calibrate`: a model's thresholds measured on labelled pairs (cosine thresholds at target
// false match rates, the same-person threshold, the quality threshold), written into its manifest
// with the texts that say what they were calibrated on.
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "facemag/eval/cluster_evaluation.hpp"
#include "facemag/eval/pair_source.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/model/manifest.hpp"

namespace facemag::eval {

struct CalibrationOptions {
  std::vector<double> fmrs{1e-2, 1e-3, 1e-4, 1e-5};  // target false match rates
  double decision_fmr = 1e-3;  // its threshold becomes the same-person threshold
  double reject_rate = 0.05;   // share of faces the quality threshold rejects
};

struct Calibration {
  struct Threshold {
    double fmr = 0;
    std::optional<OperatingPoint> point;  // nullopt: fewer than 1 / fmr different pairs
  };
  std::vector<Threshold> thresholds;  // one per requested FMR, in order
  double quality_threshold = 0;       // magnitude below which reject_rate of the faces lie
  // False when decision_fmr was not measurable: the same-person threshold is then the
  // best-accuracy one.
  bool decision_measured = false;
  // The given manifest with fmr_thresholds, same_person_threshold, quality_threshold and the
  // threshold_calibration / quality_calibration texts replaced.
  ModelManifest manifest;
};

// Calibrates on the loaded pairs (cosine similarity, same when above). InvalidInput for a
// reject_rate outside [0, 1) and, when the best-accuracy fallback is needed, for pairs that are
// all same or all different.
Calibration calibrate(const LoadedPairs& loaded, ModelManifest manifest,
                      const CalibrationOptions& options = {});

// The clustering threshold learnt on labelled faces (`facemag calibrate --people`, `eval cluster
// --save`): the sweep's threshold of best BCubed F becomes `manifest.cluster_threshold`, and
// `cluster_calibration` says on what (`data`: the faces' description) and with which score.
ModelManifest with_clustering_calibration(ModelManifest manifest,
                                          const ClusterEvaluation& evaluation,
                                          const std::string& data);

// Where `calibrate` stores the calibrated manifest: `manifest_out` when given, else beside
// `weights` (manifest_path_for). InvalidInput when neither is known (features without --weights).
std::filesystem::path calibrated_manifest_path(const std::filesystem::path& manifest_out,
                                               const std::filesystem::path& weights);

}  // namespace facemag::eval
