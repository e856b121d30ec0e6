#include "facemag/gallery/text.hpp"

#include <cstdio>

#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/json.hpp"  // labelled_results
#include "facemag/io/format.hpp"

namespace facemag::gallery {

using io::append_printf;

std::string to_text(const FaceAnswer& answer) {
  std::string out;
  append_printf(out, "%-40s face %zu  quality %6.2f  -> %-18s", answer.photo->path.string().c_str(),
                answer.face.index, static_cast<double>(answer.face.embedding.quality),
                decision_name(answer.identification.decision).c_str());
  for (const auto& c : answer.identification.candidates)
    append_printf(out, "  %s %.3f", c.person.c_str(), c.template_similarity);
  out += "\n";
  return out;
}

std::string to_text(const AssignedFace& a) {
  std::string out;
  append_printf(out, "%-40s face %zu  quality %6.2f  -> %s", a.path.c_str(), a.index,
                static_cast<double>(a.quality), status_name(a.status).c_str());
  switch (a.status) {
    case AssignStatus::kKnown:
    case AssignStatus::kProposed:
      append_printf(out, " %s", a.person.c_str());
      if (a.similarity) append_printf(out, " (%.3f%s)", *a.similarity, a.grouped ? ", new" : "");
      break;
    case AssignStatus::kUnassigned:
      if (a.similarity) append_printf(out, " (nearest %s %.3f)", a.nearest.c_str(), *a.similarity);
      break;
    case AssignStatus::kTooPoor:
      append_printf(out, " (%s)", a.why.c_str());
      break;
  }
  if (a.already) out += "  already stored";
  out += "\n";
  return out;
}

std::string assign_summary(const AssignPhotosResult& result) {
  const auto c = count_assigned(result.faces);
  std::string out;
  append_printf(out,
                "%zu faces: %zu on known people, %zu on proposed people (%zu people proposed), "
                "%zu unassigned, %zu too poor; %zu stored before",
                result.faces.size(), c.known, c.proposed, result.proposed.size(), c.unassigned,
                c.too_poor, c.already);
  return out;
}

std::pair<std::string, std::string> describe(const PhotoFailure& f) {
  using Kind = PhotoFailure::Kind;
  if (f.kind == Kind::kNoPersonFolder)
    return {f.path, "--by-folder needs photos in one sub-folder per person"};
  if (f.kind == Kind::kTooPoor)
    return {f.path, f.reason + " (--force keeps it, --min-quality sets the bar)"};
  if (f.face_id)
    return {f.path + " (face " + std::to_string(*f.face_id) + ", " + f.person + ")", f.reason};
  return {f.path, f.reason};
}

std::string contents_summary(const GalleryContents& contents, const Gallery& gallery) {
  return gallery.location() + ": " + std::to_string(contents.persons.size()) + " people, " +
         std::to_string(contents.faces) + " faces, model " + gallery.model().describe();
}

std::string to_text(const GalleryCheck& checked, const std::string& location) {
  std::string out;
  for (const auto& p : checked.problems) out += p + "\n";
  const auto verdict =
      checked.sound() ? "sound" : std::to_string(checked.problems.size()) + " problem(s)";
  std::size_t proposed = 0;
  for (const auto& p : checked.contents.persons) proposed += p.proposed ? 1 : 0;
  append_printf(out, "%s: %zu people", location.c_str(), checked.contents.persons.size());
  if (proposed) append_printf(out, " (%zu proposed)", proposed);
  append_printf(out, ", %zu faces", checked.contents.faces);
  if (checked.contents.unassigned)
    append_printf(out, ", %zu unassigned", checked.contents.unassigned);
  append_printf(out, ", schema version %d: %s\n", checked.schema_version, verdict.c_str());
  append_printf(out, "index: %s over %zu people", index_kind_name(checked.index.kind).c_str(),
                checked.index.people);
  if (checked.recall)
    append_printf(out, ", recall@%d %.4f against exact search on %d stored faces",
                  checked.recall->k, checked.recall->recall, checked.recall->queries);
  out += "\n";
  return out;
}

std::string to_text(const IdentificationEvaluation& e, const std::string& location) {
  std::string out;
  append_printf(out, "%zu probe faces against %zu enrolled people of %s\n", e.probes,
                e.enrolled_people, location.c_str());
  append_printf(out, "  %-30s %6s %6s  %6s %6s  %14s %14s\n", "", "probes", "mated", "rank-1",
                "rank-5", "FNIR@FPIR=1e-1", "FNIR@FPIR=1e-2");
  for (const auto& set : labelled_results(e)) {
    const auto& r = *set.result;
    append_printf(out, "  %-30s %6zu %6zu  %6.4f %6.4f", set.label.c_str(), r.probes, r.mated,
                  r.cmc[0], r.cmc[1]);
    for (const auto& point : r.open_set) {
      if (point.threshold)
        append_printf(out, "  %14.4f", 1 - point.tpir);
      else
        append_printf(out, "  %14s", "n/a");
    }
    out += "\n";
  }
  out += "(n/a: fewer than 1 / FPIR non-mated probes)\n";
  return out;
}

}  // namespace facemag::gallery
