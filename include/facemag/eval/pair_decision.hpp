// The 1:1 decision, written once for every front end (`facemag verify`, serve's /v1/verify,
// Python): are two faces the same person, by the model's calibrated threshold, and are they good
// enough to say?
#pragma once

#include <optional>
#include <string>

#include "facemag/embed/embedder.hpp"
#include "facemag/model/manifest.hpp"

namespace facemag::eval {

// Which threshold decides: `threshold` when given, else the manifest's threshold calibrated at
// `fmr` (when > 0; InvalidInput naming the model when it has none), else its same-person
// threshold.
struct PairRules {
  std::optional<double> threshold;
  double fmr = 0;
};

struct PairDecision {
  double similarity = 0;  // cosine of the raw embeddings
  double threshold = 0;
  std::string threshold_basis;          // what the threshold was calibrated on, or "given"
  double quality_a = 0, quality_b = 0;  // the faces' qualities (Embedding::quality)
  bool same = false;       // similarity > threshold (as TAR@FMR thresholds are defined)
  bool undecided = false;  // a face is below the manifest's quality threshold

  // "same", "different", or "undecided".
  std::string decision() const;
};

// An FMR as reports print it ("1e-03").
std::string fmr_label(double fmr);

PairDecision decide_pair(const Embedding& a, const Embedding& b, const ModelManifest& manifest,
                         const PairRules& rules = {});

}  // namespace facemag::eval
