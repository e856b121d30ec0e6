// The JSON form of a gallery's typed results, written once for every front end (`gallery ...`'s
// JSON Lines, `eval identify --json`, `serve`'s /v1/identify, Python). nlohmann's objects keep
// their keys sorted, so the text of each form is stable. Boxes are [x1, y1, x2, y2] in pixels of
// their image; landmarks five [x, y], image left eye first.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "facemag/eval/ijb.hpp"
#include "facemag/gallery/assign.hpp"
#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/evaluate.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/photos.hpp"

namespace facemag::gallery {

// Which fields of an identification a front end writes. serve's /v1/identify answers without the
// store's face ids (it offers no route that takes one) and writes the threshold once per answer.
struct IdentificationFields {
  bool face_ids = true;   // each candidate's "best_face_id"
  bool threshold = true;  // "threshold", the same-person threshold decided by
  // each candidate's "best_face_similarity" and "faces" (`video --gallery` writes without them)
  bool candidate_details = true;
};

// A candidate: {"person", "similarity" (cosine to the person's template), with `details`
// "best_face_similarity" and "faces", and with `face_id` "best_face_id" (the id `gallery show`
// lists and `gallery remove --face` takes)}, and "proposed": true for a proposed person.
nlohmann::json to_json(const Candidate& candidate, bool face_id = true, bool details = true);

// A face's identification: {"candidates" (best first, as above), "decision" (decision_name),
// "person" (a match only), "threshold"}, as `fields` asks.
nlohmann::json to_json(const Identification& found, IdentificationFields fields = {});

// A searched face, the record of `gallery search`: {"path" (the photo as given), "face" (its index
// in the photo), "box", "quality" (the raw magnitude)} and its identification, every field.
nlohmann::json to_json(const FaceAnswer& answer);

// The acknowledgement of an enrolled face (`gallery enroll`): {"enrolled" (the photo's absolute
// path), "person", "quality"}, and "face_id" for a face stored now, "already_enrolled": true for
// one that was there.
nlohmann::json to_json(const EnrolledFace& face);

// An assigned face, the record of `gallery assign --out` and of serve's /v1/assign: {"path" (the
// photo as given), "face" (its index in the photo), "box", "quality", "status" ("known",
// "proposed", "unassigned", "too poor": status_name), "person" (null when unassigned),
// "similarity" (cosine to the person's template, or to the nearest person's; null when the
// gallery held nobody), "face_id" on a person or "unassigned_id", "already_stored"}, "nearest"
// for an unassigned face near someone, "grouped": true on a person proposed by this call, "why"
// for a face too poor.
nlohmann::json to_json(const AssignedFace& face);

// A proposed person and its faces: {"proposed" (its name), "face_ids": [...]}.
nlohmann::json to_json(const ProposedPerson& person);

// An unassigned face as `gallery unassigned` writes it: {"unassigned_id", "source",
// "image_sha256", "box", "landmarks", "score", "quality", "too_poor", "added_at"}; no embedding.
nlohmann::json to_json(const UnassignedFace& face);

// An enrolled person as `gallery list` writes one: {"person", "faces", "mean_quality"}, and
// "proposed": true for a proposed person.
nlohmann::json to_json(const PersonSummary& person);

// {"kind", "people", "generation", "full_loads", "people_followed", "rebuilds", "rebuilding",
// "from_saved_file"} (serve's /health, the Python module's index_status()).
nlohmann::json to_json(const IndexStatus& index);

// A stored face as `gallery show` writes it (the archive's records add their "row"): {"id",
// "person", "source", "image_sha256", "box", "landmarks", "score" (the detector's), "quality",
// "enrolled_at"}; no embedding.
nlohmann::json to_json(const StoredFace& face);

// A set of probes an identification evaluation reports on and its name: "all probes", and for a
// gate "quality >= 12.345 (67.8 % kept)".
struct LabelledIdentification {
  std::string label;
  const eval::IdentificationResult* result = nullptr;  // into the evaluation
};
std::vector<LabelledIdentification> labelled_results(const IdentificationEvaluation& evaluation);

// One labelled set: {"set", "probes", "mated", "non_mated", "rank1", "rank5" (CMC at the first two
// ranks), "open_set": [{"fpir", "fnir", "threshold"}, ...]}; "fnir" is null (and no threshold) for
// an FPIR too few non-mated probes measure.
nlohmann::json to_json(const LabelledIdentification& set);

// The figures `eval identify --json` writes: {"gallery" (its location), "quality_gate",
// "results": [to_json(set) for each labelled_results set]}.
nlohmann::json to_json(const IdentificationEvaluation& evaluation,
                       const std::string& gallery_location);

}  // namespace facemag::gallery
