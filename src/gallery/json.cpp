#include "facemag/gallery/json.hpp"

#include <algorithm>
#include <cstdio>

#include "facemag/detect/json.hpp"

namespace facemag::gallery {

nlohmann::json to_json(const IndexStatus& index) {
  return {{"kind", index_kind_name(index.kind)},      {"people", index.people},
          {"generation", index.generation},           {"full_loads", index.full_loads},
          {"people_followed", index.people_followed}, {"rebuilds", index.rebuilds},
          {"rebuilding", index.rebuilding},           {"from_saved_file", index.from_saved_file}};
}

nlohmann::json to_json(const Candidate& c, bool face_id, bool details) {
  nlohmann::json out{{"person", c.person}, {"similarity", c.template_similarity}};
  if (details) {
    out["best_face_similarity"] = c.best_face_similarity;
    out["faces"] = c.faces;
  }
  if (face_id) out["best_face_id"] = c.best_face_id;
  if (c.proposed) out["proposed"] = true;
  return out;
}

nlohmann::json to_json(const Identification& found, IdentificationFields fields) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : found.candidates)
    list.push_back(to_json(c, fields.face_ids, fields.candidate_details));
  nlohmann::json out{{"candidates", list}, {"decision", decision_name(found.decision)}};
  if (found.person) out["person"] = *found.person;
  if (fields.threshold) out["threshold"] = found.threshold;
  return out;
}

nlohmann::json to_json(const FaceAnswer& answer) {
  const auto& r = answer.face;
  nlohmann::json out = to_json(answer.identification);
  out["path"] = answer.photo->path.string();
  out["face"] = r.index;
  out["box"] = facemag::to_json(r.detection.box);
  out["quality"] = r.embedding.quality;
  return out;
}

nlohmann::json to_json(const EnrolledFace& f) {
  nlohmann::json ack{{"enrolled", f.source_path}, {"person", f.person}, {"quality", f.quality}};
  if (f.face_id)
    ack["face_id"] = *f.face_id;
  else
    ack["already_enrolled"] = true;
  return ack;
}

nlohmann::json to_json(const PersonSummary& p) {
  nlohmann::json out{{"person", p.name}, {"faces", p.faces}, {"mean_quality", p.mean_quality}};
  if (p.proposed) out["proposed"] = true;
  return out;
}

nlohmann::json to_json(const AssignedFace& a) {
  const bool on_person = a.status == AssignStatus::kKnown || a.status == AssignStatus::kProposed;
  nlohmann::json out{{"path", a.path},
                     {"face", a.index},
                     {"box", facemag::to_json(a.detection.box)},
                     {"quality", a.quality},
                     {"status", status_name(a.status)},
                     {"person", on_person ? nlohmann::json(a.person) : nlohmann::json(nullptr)},
                     {"similarity", a.similarity ? nlohmann::json(*a.similarity) : nullptr},
                     {on_person ? "face_id" : "unassigned_id", a.id},
                     {"already_stored", a.already}};
  if (!on_person && !a.nearest.empty()) out["nearest"] = a.nearest;
  if (a.grouped) out["grouped"] = true;
  if (!a.why.empty()) out["why"] = a.why;
  return out;
}

nlohmann::json to_json(const ProposedPerson& p) {
  nlohmann::json ids = nlohmann::json::array();
  for (const auto& f : p.faces) ids.push_back(f.face_id);
  return {{"proposed", p.name}, {"face_ids", ids}};
}

nlohmann::json to_json(const UnassignedFace& f) {
  nlohmann::json out = facemag::to_json(f.detection);  // its box, score and landmarks
  out.update({{"unassigned_id", f.id},
              {"source", f.source_path},
              {"image_sha256", f.image_sha256},
              {"quality", f.quality},
              {"too_poor", f.too_poor},
              {"added_at", f.added_at}});
  return out;
}

nlohmann::json to_json(const StoredFace& f) {
  nlohmann::json out = facemag::to_json(f.detection);  // its box, score and landmarks
  out.update({{"id", f.id},
              {"person", f.person},
              {"source", f.source_path},
              {"image_sha256", f.image_sha256},
              {"quality", f.quality},
              {"enrolled_at", f.enrolled_at}});
  return out;
}

std::vector<LabelledIdentification> labelled_results(const IdentificationEvaluation& e) {
  std::vector<LabelledIdentification> sets{{"all probes", &e.all}};
  if (e.gated) {
    char label[64];
    std::snprintf(label, sizeof label, "quality >= %.3f (%.1f %% kept)", e.quality_gate,
                  100.0 * double(e.kept) / double(std::max<std::size_t>(1, e.probes)));
    sets.push_back({label, &*e.gated});
  }
  return sets;
}

nlohmann::json to_json(const LabelledIdentification& set) {
  const auto& r = *set.result;
  nlohmann::json open = nlohmann::json::array();
  for (const auto& point : r.open_set) {
    if (point.threshold)
      open.push_back(
          {{"fpir", point.fpir}, {"fnir", 1 - point.tpir}, {"threshold", *point.threshold}});
    else
      open.push_back({{"fpir", point.fpir}, {"fnir", nullptr}});
  }
  return {{"set", set.label},  {"probes", r.probes}, {"mated", r.mated}, {"non_mated", r.non_mated},
          {"rank1", r.cmc[0]}, {"rank5", r.cmc[1]},  {"open_set", open}};
}

nlohmann::json to_json(const IdentificationEvaluation& e, const std::string& gallery_location) {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& set : labelled_results(e)) results.push_back(to_json(set));
  return {{"gallery", gallery_location}, {"quality_gate", e.quality_gate}, {"results", results}};
}

}  // namespace facemag::gallery
