#include "facemag/gallery/assign.hpp"

#include <cmath>
#include <filesystem>
#include <map>

#include "facemag/error.hpp"
#include "facemag/io/sha256.hpp"

namespace facemag::gallery {
namespace {

void require_cosine(const std::optional<double>& value, const std::string& what) {
  if (value && !(*value >= -1 && *value <= 1))
    throw InvalidInput("the " + what + " is a cosine in [-1, 1], not " + std::to_string(*value));
}

void require_options(const AssignOptions& options) {
  require_cosine(options.same_person_threshold, "same-person threshold");
  require_cosine(options.cluster_threshold, "clustering threshold");
  if (options.min_faces < 1)
    throw InvalidInput("a proposed person needs at least 1 face, not " +
                       std::to_string(options.min_faces));
  if (!(options.min_quality >= 0))
    throw InvalidInput("the minimum quality is a magnitude >= 0, not " +
                       std::to_string(options.min_quality));
}

double magnitude(const std::vector<float>& v) {
  double sum = 0;
  for (const float x : v) sum += double(x) * x;
  return std::sqrt(sum);
}

}  // namespace

Grouping grouping_of(const ModelBinding& model, const AssignOptions& options) {
  Grouping g;
  g.threshold = options.cluster_threshold.value_or(
      model.cluster_threshold > 0 ? model.cluster_threshold : model.same_person_threshold);
  g.min_faces = options.min_faces;
  return g;
}

std::string status_name(AssignStatus status) {
  switch (status) {
    case AssignStatus::kKnown:
      return "known";
    case AssignStatus::kProposed:
      return "proposed";
    case AssignStatus::kUnassigned:
      return "unassigned";
    case AssignStatus::kTooPoor:
      return "too poor";
  }
  return "unassigned";
}

AssignBatch assign_faces(Gallery& gallery, const std::vector<FaceToAssign>& faces,
                         const AssignOptions& options) {
  require_options(options);
  const auto& model = gallery.model();
  const auto dim = static_cast<std::size_t>(model.embedding_size);
  const auto rules = decision_rules(model, options.min_quality, options.same_person_threshold);
  std::vector<DecidedFace> decided;
  std::vector<Identification> found;
  std::vector<double> qualities;
  for (const auto& f : faces) {
    if (f.face.embedding.size() != dim)
      throw InvalidInput(f.path + ": an embedding of " + std::to_string(f.face.embedding.size()) +
                         " values for a gallery of " + std::to_string(dim) + "-d " +
                         model.model_name + " embeddings");
    const double quality = magnitude(f.face.embedding);
    // The rule of `gallery search`: a match at the same-person threshold, nobody's below the gate.
    found.push_back(identify(gallery, f.face.embedding, quality, 1, rules));
    DecidedFace d{f.face, found.back().decision == Decision::kTooPoor};
    d.face.person = found.back().person.value_or("");
    decided.push_back(std::move(d));
    qualities.push_back(quality);
  }
  const auto stored = gallery.store_assigned(decided, grouping_of(model, options));
  AssignBatch out;
  out.proposed = stored.proposed;
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const auto& placed = stored.placements[i];
    const auto& candidates = found[i].candidates;
    AssignedFace a;
    a.path = faces[i].path;
    a.index = faces[i].index;
    a.detection = faces[i].face.detection;
    a.quality = static_cast<float>(qualities[i]);
    a.id = placed.id;
    a.already = placed.already;
    a.grouped = placed.grouped;
    if (!placed.person.empty()) {
      a.status = placed.proposed ? AssignStatus::kProposed : AssignStatus::kKnown;
      a.person = placed.person;
      if (placed.grouped)
        a.similarity = placed.similarity;
      else if (!candidates.empty() && candidates.front().person == placed.person)
        a.similarity = candidates.front().template_similarity;
    } else {
      a.status = placed.too_poor ? AssignStatus::kTooPoor : AssignStatus::kUnassigned;
      if (!candidates.empty()) {
        a.nearest = candidates.front().person;
        a.similarity = candidates.front().template_similarity;
      }
      if (placed.too_poor) a.why = enrolment_refusal(qualities[i], rules).value_or("too poor");
    }
    out.faces.push_back(std::move(a));
  }
  return out;
}

AssignPhotosResult assign_photos(Gallery& gallery, const FacePipeline& pipeline,
                                 const std::vector<io::InputFile>& files,
                                 const AssignPhotosOptions& options, const FailureSink& on_failure,
                                 const std::function<void(std::size_t inputs)>& on_chunk) {
  require_options(options);
  AssignPhotosResult result;
  std::map<std::int64_t, std::size_t> unassigned_at;  // unassigned id -> its record
  result.failed_photos =
      for_each_photo_faces(pipeline, files, options.keep, on_failure, [&](const PhotoChunk& chunk) {
        std::vector<FaceToAssign> batch;
        for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
          if (chunk.faces[k].empty()) continue;
          const auto& photo = *chunk.photos[k];
          const auto sha = io::sha256_file(photo.path);
          const auto path = std::filesystem::absolute(photo.path).lexically_normal().string();
          for (const auto& r : chunk.faces[k])
            batch.push_back(
                {photo.path.string(), r.index,
                 NewFace{"", path, sha, r.detection, r.embedding.raw, {}, r.embedding.quality}});
        }
        if (!batch.empty()) {
          auto done = assign_faces(gallery, batch, options);  // one transaction
          // Faces of earlier chunks that this one's grouping put on a new proposed person.
          for (const auto& person : done.proposed) {
            for (const auto& face : person.faces) {
              const auto at = unassigned_at.find(face.unassigned_id);
              if (face.unassigned_id == 0 || at == unassigned_at.end()) continue;
              auto& a = result.faces[at->second];
              a.status = AssignStatus::kProposed;
              a.person = person.name;
              a.id = face.face_id;
              a.similarity = face.similarity;
              a.nearest.clear();
              a.grouped = true;
              unassigned_at.erase(at);
            }
          }
          for (auto& a : done.faces) {
            if (a.status == AssignStatus::kUnassigned) unassigned_at[a.id] = result.faces.size();
            result.faces.push_back(std::move(a));
          }
          result.proposed.insert(result.proposed.end(), done.proposed.begin(), done.proposed.end());
        }
        on_chunk(chunk.inputs);
      });
  return result;
}

Regrouped recluster(Gallery& gallery, const AssignOptions& options) {
  require_options(options);
  const auto& model = gallery.model();
  return gallery.recluster(grouping_of(model, options),
                           decision_rules(model, options.min_quality).quality_gate);
}

AssignCounts count_assigned(const std::vector<AssignedFace>& faces) {
  AssignCounts c;
  for (const auto& a : faces) {
    switch (a.status) {
      case AssignStatus::kKnown:
        ++c.known;
        break;
      case AssignStatus::kProposed:
        ++c.proposed;
        break;
      case AssignStatus::kUnassigned:
        ++c.unassigned;
        break;
      case AssignStatus::kTooPoor:
        ++c.too_poor;
        break;
    }
    if (a.already) ++c.already;
  }
  return c;
}

}  // namespace facemag::gallery
