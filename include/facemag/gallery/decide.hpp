// The rules a gallery answers by, written once for every front end (`gallery enroll|search`,
// `eval identify`, `serve`'s /v1/enroll and /v1/identify, `video --gallery`, Python): the quality
// gate, the match decision, and the binding of a gallery to the model that fills it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "facemag/embed/embedder.hpp"
#include "facemag/gallery/gallery.hpp"

namespace facemag::gallery {

// The binding of a loaded model: its manifest's name, architecture and thresholds, its output
// size, and the SHA-256 of `weights` (the manifest's where loading verified it: never hashed
// twice). `weights` is the file the model was loaded from.
ModelBinding binding_of(const Embedder& embedder, const std::filesystem::path& weights);

// What loads a gallery's own model when the user names none: the weights it was created with,
// its architecture, and mirror features where its embeddings are twice the architecture's size.
ModelRequest model_request_of(const ModelBinding& binding);

// The request that loads the model of a gallery bound to `binding`, given what the user asked for:
// the gallery's own (model_request_of) when `given` names no weights, manifest or store model;
// else `given`, its architecture the gallery's unless the user chose one (architecture_given).
// Whether the model loaded is the gallery's is for Gallery::require_model to say.
ModelRequest gallery_model_request(ModelRequest given, const ModelBinding& binding);

// What a gallery says about one face.
//   kMatch: the best candidate's template similarity reaches the same-person threshold.
//   kUnknown: nobody does (or the gallery is empty).
//   kTooPoor: the face's quality is below the gate; no identity is claimed either way.
enum class Decision { kMatch, kUnknown, kTooPoor };
// "match", "unknown", "too poor to decide": the words every front end writes.
std::string decision_name(Decision decision);

// The thresholds of a decision.
struct DecisionRules {
  double same_person_threshold = 0.3;  // cosine to a person's template
  double quality_gate = 0;             // magnitude below which a face is too poor (0: no gate)

  // True when a face of this quality passes the gate.
  bool passes_gate(double quality) const { return quality_gate <= 0 || quality >= quality_gate; }
};

// A gallery's rules: its model's same-person threshold (unless `same_person_threshold` is given),
// and its quality threshold as the gate where the magnitude is a quality (MagFace models; other
// models have no gate). A `min_quality` above 0 replaces the gate.
DecisionRules decision_rules(const ModelBinding& model, double min_quality = 0,
                             std::optional<double> same_person_threshold = std::nullopt);

// Decides from the candidates (best first) and the face's quality.
Decision decide(const std::vector<Candidate>& candidates, double quality,
                const DecisionRules& rules);

struct Identification {
  std::vector<Candidate> candidates;  // best first (listed whatever the decision)
  Decision decision = Decision::kUnknown;
  std::optional<std::string> person;  // set for kMatch
  double threshold = 0;               // the same-person threshold decided by
};

// Searches the top_k people nearest to a raw embedding and decides. `quality` is the face's
// quality (its magnitude for MagFace models).
Identification identify(const Gallery& gallery, const std::vector<float>& embedding, double quality,
                        int top_k, const DecisionRules& rules);

// Why a face may not be enrolled under these rules ("face quality 12.3 is below 20.0"), or
// nullopt when it may.
std::optional<std::string> enrolment_refusal(double quality, const DecisionRules& rules);

}  // namespace facemag::gallery
