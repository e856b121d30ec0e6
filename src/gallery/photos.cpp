#include "facemag/gallery/photos.hpp"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "facemag/error.hpp"
#include "facemag/io/sha256.hpp"

namespace facemag::gallery {
namespace {

using Kind = PhotoFailure::Kind;

// Whom a photo shows: the person given, else its first folder; nullopt when it has none.
std::optional<std::string> person_of(const io::InputFile& photo,
                                     const std::optional<std::string>& person) {
  if (person) return person;
  return photo.top_folder();
}

// The faces of one chunk's photos to enrol, and the refusals of the gate.
struct ToEnrol {
  std::vector<NewFace> faces;
  std::vector<float> qualities;  // of faces
  std::size_t refused = 0;
};

ToEnrol faces_to_enrol(const PhotoChunk& chunk, const EnrolPhotosOptions& options,
                       const DecisionRules& rules, const FailureSink& on_failure) {
  ToEnrol out;
  for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
    const auto& photo = *chunk.photos[k];
    if (chunk.faces[k].empty()) continue;
    const auto person = person_of(photo, options.person);
    if (!person) {
      on_failure({Kind::kNoPersonFolder, photo.path.string(),
                  "not in a sub-folder (one per person)", std::nullopt, ""});
      continue;
    }
    const auto sha = io::sha256_file(photo.path);
    const auto path = std::filesystem::absolute(photo.path).lexically_normal().string();
    for (const auto& r : chunk.faces[k]) {
      const auto refusal = enrolment_refusal(r.embedding.quality, rules);
      if (refusal && !options.force) {
        on_failure({Kind::kTooPoor, path, *refusal, std::nullopt, *person});
        ++out.refused;
        continue;
      }
      out.faces.push_back({*person, path, sha, r.detection, r.embedding.raw, /*enrolled_at=*/{},
                           r.embedding.quality});
      out.qualities.push_back(r.embedding.quality);
    }
  }
  return out;
}

}  // namespace

std::size_t for_each_photo_faces(const FacePipeline& pipeline,
                                 const std::vector<io::InputFile>& files, KeepFaces keep,
                                 const FailureSink& on_failure,
                                 const std::function<void(const PhotoChunk&)>& per_chunk) {
  std::size_t no_face = 0;
  const auto unreadable = for_each_photo_chunk(
      pipeline, files, keep,
      [&](const io::InputFile& file, const std::string& reason) {
        on_failure({Kind::kUnreadable, file.path.string(), reason, std::nullopt, ""});
      },
      [&](PhotoChunk& chunk) {
        for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
          if (!chunk.faces[k].empty()) continue;
          on_failure(
              {Kind::kNoFace, chunk.photos[k]->path.string(), "no face found", std::nullopt, ""});
          ++no_face;
        }
        per_chunk(chunk);
      });
  return unreadable + no_face;
}

EnrolPhotosResult enrol_photos(Gallery& gallery, const FacePipeline& pipeline,
                               const std::vector<io::InputFile>& files,
                               const EnrolPhotosOptions& options, const FailureSink& on_failure,
                               const std::function<void(const EnrolChunk&)>& on_committed) {
  const auto rules = decision_rules(gallery.model(), options.min_quality);
  EnrolPhotosResult result;
  result.failed_photos =
      for_each_photo_faces(pipeline, files, options.keep, on_failure, [&](const PhotoChunk& chunk) {
        const auto todo = faces_to_enrol(chunk, options, rules, on_failure);
        result.refused += todo.refused;
        EnrolChunk committed;
        committed.inputs = chunk.inputs;
        if (!todo.faces.empty()) {
          const auto stored = gallery.enroll(todo.faces);  // one transaction per chunk
          result.added += static_cast<std::size_t>(stored.added);
          result.duplicates += static_cast<std::size_t>(stored.duplicates);
          for (std::size_t i = 0; i < todo.faces.size(); ++i)
            committed.faces.push_back({todo.faces[i].person, todo.faces[i].source_path,
                                       todo.qualities[i], stored.face_ids[i]});
        }
        on_committed(committed);
      });
  return result;
}

std::size_t search_photos(const Gallery& gallery, const FacePipeline& pipeline,
                          const std::vector<io::InputFile>& files,
                          const SearchPhotosOptions& options, const FailureSink& on_failure,
                          const std::function<void(const SearchChunk&)>& on_answered) {
  const auto rules =
      decision_rules(gallery.model(), options.min_quality, options.same_person_threshold);
  return for_each_photo_faces(
      pipeline, files, options.keep, on_failure, [&](const PhotoChunk& chunk) {
        SearchChunk answered;
        answered.inputs = chunk.inputs;
        for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
          for (const auto& r : chunk.faces[k])
            answered.answers.push_back(
                {chunk.photos[k], r,
                 identify(gallery, r.embedding.raw, r.embedding.quality, options.top_k, rules)});
        }
        on_answered(answered);
      });
}

namespace {

// Re-embeds faces in batches and enrols each batch into the new gallery.
class ReembedBatch {
 public:
  ReembedBatch(Gallery& fresh, const Embedder& embedder) : fresh_(fresh), embedder_(embedder) {}

  // Adds one stored face from its source photo, or reports why it cannot be.
  void add(const StoredFace& f, const FailureSink& on_failure, std::size_t& left_out) {
    try {
      if (!std::filesystem::exists(f.source_path))
        return fail(f, Kind::kSourceGone, "the source photo is gone", on_failure, left_out);
      if (io::sha256_file(f.source_path) != f.image_sha256)
        return fail(f, Kind::kSourceChanged, "the source photo changed since it was enrolled",
                    on_failure, left_out);
      const cv::Mat photo = io::read_image_bgr(f.source_path);
      crops_.push_back(crop_for_model(photo, f.detection, embedder_.manifest()));
      batch_.push_back({f.person, f.source_path, f.image_sha256, f.detection, {}, f.enrolled_at});
      if (batch_.size() == kBatch) flush();
    } catch (const InvalidInput& e) {
      fail(f, Kind::kUnreadable, e.what(), on_failure, left_out);
    }
  }

  void flush() {
    if (batch_.empty()) return;
    const auto embeddings = embedder_.embed(crops_);  // one forward pass per batch
    for (std::size_t i = 0; i < batch_.size(); ++i) {
      batch_[i].embedding = embeddings[i].raw;
      batch_[i].quality = embeddings[i].quality;
    }
    fresh_.enroll(batch_);
    batch_.clear();
    crops_.clear();
  }

 private:
  static constexpr std::size_t kBatch = 64;

  static void fail(const StoredFace& f, Kind kind, const std::string& reason,
                   const FailureSink& on_failure, std::size_t& left_out) {
    on_failure({kind, f.source_path, reason, f.id, f.person});
    ++left_out;
  }

  Gallery& fresh_;
  const Embedder& embedder_;
  std::vector<NewFace> batch_;
  std::vector<cv::Mat> crops_;
};

}  // namespace

ReembedResult reembed_gallery(const Gallery& old, const Embedder& embedder,
                              const ModelBinding& model, const std::string& out,
                              const FailureSink& on_failure,
                              const std::function<void(std::size_t, std::size_t)>& on_face) {
  const bool file = !is_database_url(out);
  const std::string building = file ? out + ".partial" : out;
  if (file) {
    if (std::filesystem::exists(out)) throw InvalidInput(out + ": exists already");
    std::filesystem::remove(building);
  }
  const auto faces = old.faces();
  ReembedResult result;
  result.faces = faces.size();
  {
    auto fresh = Gallery::create(building, model);
    ReembedBatch batch(fresh, embedder);
    for (std::size_t i = 0; i < faces.size(); ++i) {
      on_face(i + 1, faces.size());
      batch.add(faces[i], on_failure, result.left_out);
    }
    batch.flush();
  }  // closed: SQLite folds its write-ahead log into the file before it is renamed
  if (file) std::filesystem::rename(building, out);
  return result;
}

}  // namespace facemag::gallery
