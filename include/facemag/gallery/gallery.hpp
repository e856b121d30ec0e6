// A persistent 1:N identification gallery: enrolled people, each face with where it came from and
// its quality, and a search index over the people's templates.
//
// The store is the source of truth: SQLite (a file; WAL, one transaction per enrolment batch,
// foreign keys) or PostgreSQL ("postgresql://..." or "postgres://...", shared by several
// processes). Each transaction bumps the store's generation and logs the people it changed
// (database triggers write the log, so no writer can forget it). An open gallery holds only the
// people's templates, in a PersonIndex keyed by person id, and follows the log: before each
// search it applies the changes since the generation it has seen, by any process, person by
// person (O(C D + C log N) for C people changed, a few ms for one enrolment). It reads every
// template again only at open (or reads a saved hnsw index: Gallery::open) and when it has been
// away longer than the log keeps (kLogKept generations). An index that asks to be rebuilt
// (person_index.hpp: hnsw tombstones, ivf grown past its lists, auto's exact past kExactUpTo
// people) is built again on a thread with a connection of its own while searches go on with the
// current one, then swapped in and brought up to date from the log. A search's best face is read
// from the store by person id. Memory: the index (N D floats, hnsw N (D + 32)) and one name per
// person; a rebuild holds two indexes while it runs (and closing the gallery waits for it).
//
// People are known (enrolled, or named by the user) or proposed: grouped by `assign` from faces
// that matched nobody and named "unnamed-N" until the user renames them (assign.hpp). Both take
// part in search. Faces that matched nobody and are in no proposed person are kept apart, as
// unassigned faces (with their own ids).
//
// A gallery is bound to one model (manifest name, architecture, embedding size, SHA-256 of the
// weights): opening it for another model is an error naming both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facemag/detect/detection.hpp"
#include "facemag/error.hpp"
#include "facemag/gallery/person_index.hpp"

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
  bool magnitude_is_quality = false;   // MagFace models: the magnitude is the quality
  double same_person_threshold = 0.3;  // cosine; the "match" decision of a search
  double quality_threshold = 0;        // magnitude below which a face is too poor (0: none)
  // Mean cosine at which average linkage stops merging unassigned faces into proposed people
  // (the manifest's clustering_threshold()). 0 when made by hand: Gallery::create records the
  // built-in manifest's for its model, else the same-person threshold.
  double cluster_threshold = 0;
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
  std::vector<float> embedding;  // raw
  std::string enrolled_at;       // UTC, ISO 8601; empty: now (an import keeps the original's)
  // The face's quality as enrolment measured it (Embedding::quality, face_quality.hpp); none:
  // the embedding's L2 norm (the quality of a MagFace model; what a bare vector or an import has).
  std::optional<float> quality;
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
  bool proposed = false;  // grouped by `assign` and not yet named ("unnamed-N")
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
  bool proposed = false;  // a proposed person (PersonSummary::proposed)
};

// ---- Faces that match nobody, and the people proposed from them (assign.hpp decides) ----

// A face kept apart: it matched nobody, or was too poor to decide.
struct UnassignedFace {
  std::int64_t id = 0;  // its own id (not a face id of `faces()`)
  std::string source_path;
  std::string image_sha256;
  Detection detection;
  float quality = 0;
  std::vector<float> embedding;
  bool too_poor = false;  // below the quality gate: never grouped into a person
  std::string added_at;   // UTC, ISO 8601
};

// How unassigned faces are grouped into proposed people: average linkage (eval/knn_cluster.hpp's
// group_faces) at `threshold`; a group of at least `min_faces` faces is proposed as a person.
struct Grouping {
  double threshold = 0.5;
  int min_faces = 2;
};

// A face of an assignment batch, decided: it joins `face.person`, or, with no person named, stays
// unassigned (`too_poor` when the quality gate said so).
struct DecidedFace {
  NewFace face;
  bool too_poor = false;
};

// Where a face of a batch is after it: on a person, or unassigned.
struct Placement {
  std::string person;     // empty: unassigned
  bool proposed = false;  // `person` is a proposed person
  std::int64_t id = 0;    // on a person: its face id; unassigned: its unassigned id
  bool already = false;   // the same face (image SHA-256 and box) was stored before this batch
  bool too_poor = false;  // unassigned for its quality
  bool grouped = false;   // joined a person proposed by this batch (`similarity` set)
  double similarity = 0;  // grouped: cosine to the new person's template
};

// A person proposed from unassigned faces, and its faces.
struct ProposedPerson {
  std::string name;  // "unnamed-N"
  struct Face {
    std::int64_t unassigned_id = 0;  // the id it had while unassigned (0: it was on a person)
    std::int64_t face_id = 0;        // its face id now
    double similarity = 0;           // cosine to the person's template
  };
  std::vector<Face> faces;
};

struct AssignStored {
  std::vector<Placement> placements;     // one per face given, in order
  std::vector<ProposedPerson> proposed;  // people the batch proposed (from its faces and older)
};

// What regrouping the faces of no named person did.
struct Regrouped {
  std::vector<ProposedPerson> people;  // every proposed person after it
  std::vector<std::string> kept;       // names that go on (a group holds most of their faces)
  std::vector<std::string> dissolved;  // proposed people that no group continues
  std::size_t unassigned = 0;          // faces left unassigned (too poor ones included)
};

// What an open gallery's index is and how it got there.
struct IndexStatus {
  IndexKind kind = IndexKind::kExact;  // resolved (never kAuto)
  std::size_t people = 0;
  std::int64_t generation = -1;     // of the store, when the index last caught up
  std::size_t full_loads = 0;       // times every template was read (open, too far behind)
  std::size_t people_followed = 0;  // people updated from the change log since open
  std::size_t rebuilds = 0;         // indexes built again in the background and swapped in
  bool rebuilding = false;          // one is being built now (searches use the current one)
  bool from_saved_file = false;     // the last full load read a saved hnsw index
};

// An index's recall@k against exact search, on stored faces of random people as queries.
struct IndexRecall {
  IndexKind kind = IndexKind::kExact;
  std::size_t people = 0;
  int queries = 0;
  int k = 10;
  double recall = 1;  // share of the exact top k the index returns
};

// A person's template: the quality-weighted mean of their unit embeddings, as a raw
// (unnormalised) mean. qualities[i]: face i's stored quality (Embedding::quality as enrolment
// measured it: the magnitude for MagFace models, else the magnitude times the crop's sharpness
// factor; faces stored before schema version 5 have their magnitude). Faces of zero norm count
// for nothing, and so do faces of zero quality unless every face has it (then: equal weights).
std::vector<float> person_template(const std::vector<std::vector<float>>& embeddings,
                                   const std::vector<double>& qualities);

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
  // `index`: the kind of index searches use (kAuto: by size, person_index.hpp). `index_file`:
  // where an hnsw index is saved after it is built and read back at the next open (then only the
  // changes since it was saved are followed), checked against the gallery it was made from and
  // the change log; empty: "LOCATION.index" for a SQLite gallery, none for PostgreSQL.
  static Gallery open(const std::string& location,
                      const std::optional<ModelBinding>& expected = std::nullopt,
                      IndexKind index = IndexKind::kAuto, const std::string& index_file = {});
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

  // The top_k people nearest to a raw embedding (cosine to their templates), best first; the index
  // first follows the changes made since the last search (by this process or another). Each
  // candidate's best face is read from the store (one query for all candidates).
  std::vector<Candidate> search(const std::vector<float>& embedding, int top_k) const;

  // The index after following every change so far.
  IndexStatus index_status() const;
  // Recall@k of the index against an exact scan of the stored templates, with the embeddings of
  // `queries` stored faces (at random) as queries. Time O(N D + Q N D); memory N D floats.
  IndexRecall index_recall(int queries = 200, int k = 10) const;

  std::vector<PersonSummary> persons() const;
  std::vector<StoredFace> faces(const std::optional<std::string>& person = std::nullopt) const;
  // GalleryError naming the person / face when it does not exist.
  void remove_person(const std::string& name);
  void remove_face(std::int64_t id);
  // A proposed person renamed becomes a known one.
  void rename_person(const std::string& from, const std::string& to);

  // ---- Proposed people and unassigned faces (assign.hpp says how they are used) ----

  // Stores a batch of decided faces in one transaction (all or nothing): each on its person (a
  // face that was unassigned moves there; one whose person is gone meanwhile stays unassigned),
  // the others unassigned. Then the new unassigned faces (not too poor) and the unassigned faces
  // similar to one of them (cosine >= grouping.threshold) are grouped by average linkage; each
  // group of at least min_faces faces holding a new face becomes a proposed person, named
  // "unnamed-N" with N from a counter kept in the store (never reused, names taken skipped),
  // groups numbered by their oldest face. A face stored before (same image SHA-256 and box)
  // stays where it is, unless it was unassigned and now has a person. InvalidInput naming the
  // file of a face whose embedding is not of the gallery's size.
  // Time: O(B + U D + B U D + C^2 D) for B faces, U unassigned faces and C of them grouped
  // (group_faces: exact average linkage while its C x C matrix fits 2 GB, a k-NN graph above);
  // memory: U D floats read from the store, 8 C^2 bytes for the grouping.
  AssignStored store_assigned(const std::vector<DecidedFace>& faces, const Grouping& grouping);

  // The unassigned faces, oldest first; how many there are.
  std::vector<UnassignedFace> unassigned() const;
  std::size_t unassigned_count() const;

  // Regroups, in one transaction, every face of no named person: the unassigned faces and the
  // faces of the proposed people. Faces below `quality_gate` (0: none) are unassigned as too
  // poor; the others are grouped by average linkage over all of them; each group of min_faces or
  // more becomes a proposed person, keeping the name of the proposed person it holds most faces
  // of (each name to one group; an unchanged grouping keeps every name), else a new "unnamed-N".
  // Faces of smaller groups are unassigned. Named people are not touched.
  // Time: O(F^2 D) for F faces regrouped (k-NN graph above 2 GB of matrix); memory O(F D + F^2).
  Regrouped recluster(const Grouping& grouping, double quality_gate = 0);

  // `from`'s faces join `into` (which keeps its name and whether it is proposed); `from` is
  // gone. GalleryError naming a person who does not exist; InvalidInput when they are one.
  void merge_persons(const std::string& into, const std::string& from);

  // The faces `face_ids` of `person` become a new proposed person; its name ("unnamed-N").
  // GalleryError naming a face that is not the person's; InvalidInput for no faces, a face
  // named twice, or every face of the person (that is a rename).
  std::string split_person(const std::string& person, const std::vector<std::int64_t>& face_ids);

  // Every face row decodes (embedding of the bound size, finite values), every template matches
  // its faces, the index covers every person. Problems found, one line each; empty when sound.
  std::vector<std::string> check() const;

  // The store's schema version (current: kSchemaVersion).
  int schema_version() const;
  static constexpr int kSchemaVersion = 5;
  // Generations the change log keeps: a process further behind reads every template again.
  static constexpr std::int64_t kLogKept = 100000;

  // A monotone counter of changes: two equal readings mean no process changed the gallery.
  std::int64_t generation() const;

 private:
  struct State;
  explicit Gallery(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace facemag::gallery
