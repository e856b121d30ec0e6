// 1:N identification measured against a gallery (`eval identify`, Python): probes of known
// people searched in it, rank-k (CMC) and FNIR at FPIR over all probes and over those the quality
// gate passes (eval/ijb.hpp's identification_metrics).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "facemag/eval/ijb.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/photos.hpp"

namespace facemag::gallery {

// One probe face: who it shows, its raw embedding and its quality (the L2 norm of the raw
// embedding: MagFace's quality).
struct IdentificationProbe {
  std::string person;
  std::vector<float> embedding;
  double quality = 0;
};

// Probes from a feature matrix and its labels (eval::read_labelled_features): row i shows the
// person of label i.
std::vector<IdentificationProbe> probes_from_features(const eval::LabelledFeatures& features);

// Probes from photos in one sub-folder per person (the first folder of io::InputFile::name): every
// face `keep` chooses; photos named without a folder are left out silently. Photos unreadable or
// without a face go to on_failure; per_chunk (may be empty) follows each chunk with the number of
// input files it covered.
std::vector<IdentificationProbe> probes_from_photos(
    const FacePipeline& pipeline, const std::vector<io::InputFile>& files, KeepFaces keep,
    const FailureSink& on_failure, const std::function<void(std::size_t inputs)>& per_chunk);

struct IdentificationEvalOptions {
  double min_quality = 0;  // the gate (0: the model's quality threshold, as decision_rules)
  double reject_rate = 0;  // above 0: the gate that sets this share of the probes aside instead
  std::vector<int> ranks{1, 5};
  std::vector<double> fpirs{1e-1, 1e-2};
};

struct IdentificationEvaluation {
  std::size_t probes = 0;
  std::size_t enrolled_people = 0;
  double quality_gate = 0;         // 0: none
  std::size_t kept = 0;            // probes whose quality passes the gate (all of them without one)
  eval::IdentificationResult all;  // every probe
  std::optional<eval::IdentificationResult> gated;  // the probes the gate passes; set for a gate
};

// Searches every probe in the gallery (its top max(ranks) people); a probe is mated when its
// person is enrolled, found at the rank of that person among the candidates, scored by the top
// candidate's template similarity.
IdentificationEvaluation evaluate_identification(const Gallery& gallery,
                                                 const std::vector<IdentificationProbe>& probes,
                                                 const IdentificationEvalOptions& options);

}  // namespace facemag::gallery
