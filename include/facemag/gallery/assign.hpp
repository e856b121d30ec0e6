// New photos joining known people (`gallery assign`, serve's /v1/assign, `gallery recluster`):
// a photo library's People page over a gallery.
//
// Each new face is decided by the gallery's identification rule (decide.hpp: the same quality
// gate and same-person threshold as `gallery search`) against every person, known or proposed:
//   - a match joins that person (their template is recomputed);
//   - a face below the quality gate is kept unassigned as too poor: it joins nobody and never
//     seeds a person (MagFace models: its magnitude; other models: the gallery's quality
//     fallback, decision_rules);
//   - any other face is kept unassigned; the new unassigned faces are grouped with the
//     unassigned faces near them by average linkage (eval/knn_cluster.hpp's group_faces) at the
//     gallery's clustering threshold (the model's clustering_threshold()), and each group of at
//     least `min_faces` becomes a proposed person "unnamed-N".
// Proposed people take part in search and assignment like known ones (flagged as proposed) until
// the user renames (names), merges or splits them. N comes from a counter in the store, so a name
// is never given twice, and the same photos assigned in the same order give the same names.
//
// A batch (one call of assign_faces; assign_photos: each chunk of 32 photos) is decided against
// the gallery as committed before it, then stored in one transaction: a kill leaves every
// committed batch and nothing of the others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/photos.hpp"

namespace facemag::gallery {

struct AssignOptions {
  double min_quality = 0;  // replaces the quality gate when above 0 (decision_rules)
  std::optional<double> same_person_threshold;  // nullopt: the gallery's
  std::optional<double> cluster_threshold;      // nullopt: the gallery's (ModelBinding)
  int min_faces = 2;                            // faces a group needs to be proposed (>= 1)
};

// The grouping of these options over a gallery bound to `model`: the clustering threshold given,
// else the gallery's (its same-person threshold where it records none), and min_faces.
Grouping grouping_of(const ModelBinding& model, const AssignOptions& options);

// Where a face is after assignment.
enum class AssignStatus {
  kKnown,       // on a known (named) person
  kProposed,    // on a proposed person ("unnamed-N")
  kUnassigned,  // matched nobody and is in no group big enough
  kTooPoor,     // below the quality gate: unassigned, never grouped
};
// "known", "proposed", "unassigned", "too poor".
std::string status_name(AssignStatus status);

// A face to assign: where it comes from and the face (its `person` is ignored).
struct FaceToAssign {
  std::string path;       // the photo as the caller names it (records repeat it)
  std::size_t index = 0;  // the face's index among its photo's faces
  NewFace face;           // source path, image SHA-256, detection, raw embedding
};

// One face assigned.
struct AssignedFace {
  std::string path;
  std::size_t index = 0;
  Detection detection;
  float quality = 0;  // the raw magnitude
  AssignStatus status = AssignStatus::kUnassigned;
  std::string person;  // kKnown, kProposed: whom the face is on
  // kKnown, kProposed: cosine to that person's template (a match: the decision's, against the
  // template before the face joined; grouped into a new proposed person: against its new
  // template). kUnassigned, kTooPoor: to the nearest person's template (`nearest`); nullopt when
  // the gallery held no person.
  std::optional<double> similarity;
  std::string nearest;   // kUnassigned, kTooPoor: the nearest person, if any
  std::int64_t id = 0;   // on a person: its face id (`gallery show`); else its unassigned id
  bool already = false;  // stored before this call (the same image SHA-256 and box)
  bool grouped = false;  // on a person proposed by this call
  std::string why;       // kTooPoor: enrolment_refusal's words
};

struct AssignBatch {
  std::vector<AssignedFace> faces;       // one per face given, in order
  std::vector<ProposedPerson> proposed;  // people the batch proposed
};

// Decides each face (identify(), top 1) against the gallery as committed, then stores the batch
// and groups the new unassigned faces (Gallery::store_assigned): one transaction. InvalidInput for
// options out of range or an embedding of another size (naming its file).
// Time: B searches (exact index: O(P D) each, P people; the first after another batch's commit
// rebuilds the index from the store, O(F D) for F stored faces) plus store_assigned's
// O(U D + B U D + C^2 D) (U unassigned faces, C of them grouped); memory O(F D + U D + C^2).
AssignBatch assign_faces(Gallery& gallery, const std::vector<FaceToAssign>& faces,
                         const AssignOptions& options);

// ---- photos ----

struct AssignPhotosOptions : AssignOptions {
  KeepFaces keep = KeepFaces::kAll;  // every face of a photo, unless the caller chooses one
};

struct AssignPhotosResult {
  // Every face of the photos, in input order, as it stands at the end of the call (a face left
  // unassigned by its chunk and grouped by a later one is on its proposed person).
  std::vector<AssignedFace> faces;
  std::vector<ProposedPerson> proposed;  // every person proposed during the call
  std::size_t failed_photos = 0;         // unreadable or without a face (reported to on_failure)
};

// Assigns every face of the photos: one assign_faces batch (one transaction) per chunk of 32
// photos; on_chunk follows each chunk's commit with the input files it covered.
// Time and memory: per chunk as assign_faces; the records of all faces are kept (O(faces)).
AssignPhotosResult assign_photos(Gallery& gallery, const FacePipeline& pipeline,
                                 const std::vector<io::InputFile>& files,
                                 const AssignPhotosOptions& options, const FailureSink& on_failure,
                                 const std::function<void(std::size_t inputs)>& on_chunk);

// Regroups the faces of no named person (Gallery::recluster) by the options' grouping, with the
// quality gate of decision_rules(model, min_quality).
Regrouped recluster(Gallery& gallery, const AssignOptions& options);

// Counts of a call's faces by status.
struct AssignCounts {
  std::size_t known = 0, proposed = 0, unassigned = 0, too_poor = 0, already = 0;
};
AssignCounts count_assigned(const std::vector<AssignedFace>& faces);

}  // namespace facemag::gallery
