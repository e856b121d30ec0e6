// The human-readable forms of a gallery's results, as `gallery ...` and `eval identify` print
// them on a terminal, written once so that another front end (a Python `__str__`, a report)
// shows the same text. Each string ends with a newline; the JSON forms are in json.hpp.
#pragma once

#include <string>
#include <utility>

#include "facemag/gallery/assign.hpp"
#include "facemag/gallery/contents.hpp"
#include "facemag/gallery/evaluate.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/photos.hpp"

namespace facemag::gallery {

// A searched face as one table row (`gallery search` on a terminal): the photo, the face's index
// and quality, the decision, then each candidate's name and cosine to their template.
std::string to_text(const FaceAnswer& answer);

// An assigned face as one line (`gallery assign`): the photo, the face's index and quality, then
// "-> known NAME (0.612)", "-> proposed unnamed-3 (0.701, new)", "-> unassigned (nearest NAME
// 0.153)" or "-> too poor (WHY)"; "already stored" for a face stored before.
std::string to_text(const AssignedFace& face);

// What an assignment did, on one line: "N faces: K on known people, P on proposed people (M
// people proposed), U unassigned, T too poor; A stored before".
std::string assign_summary(const AssignPhotosResult& result);

// A photo or face left out, as `gallery ...` reports it: what (the photo; for a stored face
// "PATH (face ID, PERSON)") and why, naming the options that change the outcome (--by-folder,
// --force, --min-quality).
std::pair<std::string, std::string> describe(const PhotoFailure& failure);

// The summary `gallery list` logs after its records: "LOCATION: N people, M faces, model ...".
std::string contents_summary(const GalleryContents& contents, const Gallery& gallery);

// `gallery check`'s report: each problem on its line, then "LOCATION: N people, M faces, schema
// version V: sound" (or "K problem(s)").
std::string to_text(const GalleryCheck& checked, const std::string& location);

// `eval identify`'s table: rank-1, rank-5 and FNIR at FPIR 1e-1 and 1e-2 for each set of probes
// (labelled_results), with the number of probes and enrolled people of `location` above it.
std::string to_text(const IdentificationEvaluation& evaluation, const std::string& location);

}  // namespace facemag::gallery
