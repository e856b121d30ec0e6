// A persistent 1:N identification gallery: enrolled people, each face with where it came from and
// its quality, and a search index over the people's templates.
//
// The store is the source of truth: SQLite (a file; WAL, one transaction per enrolment batch,
// foreign keys) or PostgreSQL ("postgresql://..." or "postgres://...", shared by several
// processes). The faiss index is derived data, rebuilt from the store whenever the store's
// generation (bumped by every change, by any process) differs from the one it was built at.
//
// A gallery is bound to one model (manifest name, architecture, embedding size, SHA-256 of the
// weights): opening it for another model is an error naming both.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facemag/detect/detection.hpp"
#include "facemag/error.hpp"

namespace facemag::gallery {

// What the store itself reports: an unreadable, read-only, corrupt or foreign database, or a
// gallery of another model.
class GalleryError : public Error {
 public:
  using Error::Error;
};

// The model a gallery's embeddings come from.
struct ModelBinding {
  std::string model_name;    // manifest name, e.g. "mobilefacenet-casia"
  std::string architecture;  // e.g. "mobilefacenet"
  int embedding_size = 0;    // values per stored embedding
  std::string weights_sha256;
  bool magnitude_is_quality = false;   // MagFace models: templates weight faces by magnitude
  double same_person_threshold = 0.3;  // cosine; the "match" decision of a search
  double quality_threshold = 0;        // magnitude below which a face is too poor (0: none)
  // Where the weights were when the gallery was created (informational: commands load the model
  // from it when none is given; the SHA-256 is what binds).
  std::string weights_path;

  // "name (architecture, D-d, weights sha256 abcd1234...)".
  std::string describe() const;
};

// A face to enrol: who, from which file, where in it, and its raw embedding.
struct NewFace {
  std::string person;
  std::string source_path;
  std::string image_sha256;
  Detection detection;
  std::vector<float> embedding;  // raw; its L2 norm is the quality
  std::string enrolled_at;       // UTC, ISO 8601; empty: now (an import keeps the original's)
};

struct StoredFace {
  std::int64_t id = 0;
  std::string person;
  std::string source_path;
  std::string image_sha256;
  Detection detection;
  float quality = 0;
  std::vector<float> embedding;
  std::string enrolled_at;  // UTC, ISO 8601
};

struct PersonSummary {
  std::string name;
  int faces = 0;
  double mean_quality = 0;
};

struct EnrollResult {
  int added = 0;
  int duplicates = 0;  // the same face of the same file was already stored
  // One per face given, in order: its new id, or none where it was already stored.
  std::vector<std::optional<std::int64_t>> face_ids;
};

// One candidate person for a query face.
struct Candidate {
  std::string person;
  double template_similarity = 0;   // cosine to the person's template
  double best_face_similarity = 0;  // cosine to the person's closest single face
  std::int64_t best_face_id = 0;
  int faces = 0;
};

enum class IndexKind { kExact, kHnsw, kIvf };
IndexKind parse_index_kind(const std::string& name);  // "exact", "hnsw", "ivf"

// A person's template: the quality-weighted mean of their unit embeddings (weights = raw
// magnitudes when the magnitude is a quality, else 1), as a raw (unnormalised) mean.
std::vector<float> person_template(const std::vector<std::vector<float>>& embeddings,
                                   bool magnitude_is_quality);

// True for a PostgreSQL URL ("postgresql://...", "postgres://..."); anything else is a file.
bool is_database_url(const std::string& location);

// A gallery: thread-safe (one writer at a time; searches share the index).
class Gallery {
 public:
  // Creates a new gallery at `location` (a file path, or a PostgreSQL URL whose database holds
  // no gallery yet). GalleryError if one exists there.
  static Gallery create(const std::string& location, const ModelBinding& model);
  // Whether `location` holds a gallery (a file that exists, or a database with gallery tables).
  static bool exists(const std::string& location);
  // Opens an existing gallery; with `expected`, refuses one bound to another model.
  static Gallery open(const std::string& location,
                      const std::optional<ModelBinding>& expected = std::nullopt,
                      IndexKind index = IndexKind::kExact);
  Gallery(Gallery&&) noexcept;
  Gallery& operator=(Gallery&&) noexcept;
  ~Gallery();

  const ModelBinding& model() const;
  // GalleryError naming both models unless `expected` is the model the gallery is bound to (a
  // weights SHA-256 missing on either side is not compared).
  void require_model(const ModelBinding& expected) const;
  const std::string& location() const;

  // Stores the faces in one transaction (all or nothing) and updates the templates of the people
  // they belong to. Faces already stored (same image SHA-256 and box) are counted, not stored.
  EnrollResult enroll(const std::vector<NewFace>& faces);

  // The top_k people nearest to a raw embedding (cosine to their templates), best first.
  std::vector<Candidate> search(const std::vector<float>& embedding, int top_k) const;

  std::vector<PersonSummary> persons() const;
  std::vector<StoredFace> faces(const std::optional<std::string>& person = std::nullopt) const;
  // GalleryError naming the person / face when it does not exist.
  void remove_person(const std::string& name);
  void remove_face(std::int64_t id);
  void rename_person(const std::string& from, const std::string& to);

  // Every face row decodes (embedding of the bound size, finite values), every template matches
  // its faces, the index covers every person. Problems found, one line each; empty when sound.
  std::vector<std::string> check() const;

  // The store's schema version (current: kSchemaVersion).
  int schema_version() const;
  static constexpr int kSchemaVersion = 2;

  // A monotone counter of changes: two equal readings mean no process changed the gallery.
  std::int64_t generation() const;

 private:
  struct State;
  explicit Gallery(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace facemag::gallery
