// The inside of a Gallery, shared by the files that implement it (gallery.cpp: people and faces;
// proposed.cpp: unassigned faces and proposed people): the schema, the row encodings and the
// state of an open gallery. Not a public header.
#pragma once

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/person_index.hpp"
#include "sql.hpp"

namespace facemag::gallery {

inline std::string floats_to_blob(const float* values, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(values), n * sizeof(float));
}
inline std::vector<float> blob_to_floats(const std::string& blob) {
  std::vector<float> out(blob.size() / sizeof(float));
  std::memcpy(out.data(), blob.data(), out.size() * sizeof(float));
  return out;
}

inline double norm(const std::vector<float>& v) {
  double sum = 0;
  for (const float x : v) sum += double(x) * x;
  return std::sqrt(sum);
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Whole pixels: the same face of the same file, detected again, lands on the same key.
inline std::string face_key(const Box& b) {
  return std::to_string(std::lround(b.x1)) + "," + std::to_string(std::lround(b.y1)) + "," +
         std::to_string(std::lround(b.x2)) + "," + std::to_string(std::lround(b.y2));
}

// A detection's box (4 floats) and landmarks (10 floats) as stored.
inline Blob box_blob(const Detection& d) {
  const float box[4] = {d.box.x1, d.box.y1, d.box.x2, d.box.y2};
  return Blob{floats_to_blob(box, 4)};
}
inline Blob landmarks_blob(const Detection& d) {
  float marks[10];
  for (int i = 0; i < 5; ++i) {
    marks[2 * i] = d.landmarks[i].x;
    marks[2 * i + 1] = d.landmarks[i].y;
  }
  return Blob{floats_to_blob(marks, 10)};
}
inline Detection detection_of(const std::string& box_bytes, const std::string& landmark_bytes,
                              double score) {
  Detection d;
  const auto box = blob_to_floats(box_bytes);
  const auto marks = blob_to_floats(landmark_bytes);
  if (box.size() == 4) d.box = {box[0], box[1], box[2], box[3]};
  for (std::size_t i = 0; i < 5 && marks.size() == 10; ++i)
    d.landmarks.points[i] = {marks[2 * i], marks[2 * i + 1]};
  d.score = static_cast<float>(score);
  return d;
}

// The schema, per dialect. Version 1: meta, persons, faces. Version 2 adds the stored templates
// and the change counter (so that other processes notice changes without reading every face).
// Version 3 adds the faces that matched nobody (unassigned) and the people proposed from them
// (proposed: which persons are, and their number N of "unnamed-N"). Version 4 adds the change log
// that open galleries follow instead of reading everything again.
struct Schema {
  Dialect dialect;
  std::string id, blob, real;
  explicit Schema(Dialect d)
      : dialect(d),
        id(d == Dialect::kSqlite ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY"),
        blob(d == Dialect::kSqlite ? "BLOB" : "BYTEA"),
        real(d == Dialect::kSqlite ? "REAL" : "DOUBLE PRECISION") {}
  // The columns a stored face has besides its id and person.
  std::string face_columns() const {
    return "source_path TEXT NOT NULL, image_sha256 TEXT NOT NULL, face_key TEXT NOT NULL, box " +
           blob + " NOT NULL, landmarks " + blob + " NOT NULL, score " + real +
           " NOT NULL, quality " + real + " NOT NULL, embedding " + blob + " NOT NULL";
  }
  std::vector<std::string> version1() const {
    return {"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE persons (id " + id + ", name TEXT NOT NULL UNIQUE)",
            "CREATE TABLE faces (id " + id +
                ", person_id BIGINT NOT NULL REFERENCES persons(id) ON DELETE CASCADE, " +
                face_columns() + ", enrolled_at TEXT NOT NULL, UNIQUE (image_sha256, face_key))",
            "CREATE INDEX faces_person ON faces (person_id)"};
  }
  std::vector<std::string> version2() const {
    return {
        "CREATE TABLE templates (person_id BIGINT PRIMARY KEY REFERENCES persons(id) ON "
        "DELETE CASCADE, faces BIGINT NOT NULL, vector " +
            blob + " NOT NULL)",
        "CREATE TABLE state (id BIGINT PRIMARY KEY CHECK (id = 1), generation BIGINT NOT "
        "NULL)",
        "INSERT INTO state (id, generation) VALUES (1, 0)"};
  }
  // `cluster_threshold`: the meta value recorded (the model's clustering threshold).
  std::vector<std::string> version3() const {
    return {"CREATE TABLE unassigned (id " + id + ", " + face_columns() +
                ", too_poor BIGINT NOT NULL, added_at TEXT NOT NULL, UNIQUE (image_sha256, "
                "face_key))",
            "CREATE TABLE proposed (person_id BIGINT PRIMARY KEY REFERENCES persons(id) ON "
            "DELETE CASCADE, number BIGINT NOT NULL, proposed_at TEXT NOT NULL)",
            "INSERT INTO meta (key, value) VALUES ('next_unnamed', '1')"};
  }
  // The change log: (generation, person id) for every person whose template, name or proposed
  // flag a transaction changed, written by triggers, and from which generation on it is complete.
  std::vector<std::string> version4() const {
    std::vector<std::string> out{
        "CREATE TABLE changes (generation BIGINT NOT NULL, person_id BIGINT NOT NULL)",
        "CREATE INDEX changes_generation ON changes (generation)",
        "ALTER TABLE state ADD COLUMN log_from BIGINT NOT NULL DEFAULT 0",
        "UPDATE state SET log_from = generation WHERE id = 1"};
    // table, events, the person id's column
    const std::vector<std::array<std::string, 3>> logged{
        {"templates", "INSERT", "person_id"}, {"templates", "UPDATE", "person_id"},
        {"templates", "DELETE", "person_id"}, {"persons", "UPDATE", "id"},
        {"persons", "DELETE", "id"},          {"proposed", "INSERT", "person_id"},
        {"proposed", "DELETE", "person_id"}};
    if (dialect == Dialect::kSqlite) {
      for (const auto& [table, event, column] : logged) {
        const std::string row = event == "DELETE" ? "OLD." : "NEW.";
        out.push_back("CREATE TRIGGER log_" + table + "_" + event + " AFTER " + event + " ON " +
                      table +
                      " BEGIN INSERT INTO changes (generation, person_id) SELECT generation, " +
                      row + column + " FROM state WHERE id = 1; END");
      }
    } else {
      out.push_back(
          "CREATE OR REPLACE FUNCTION facemag_log_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
          "BEGIN "
          "INSERT INTO changes (generation, person_id) SELECT generation, (CASE WHEN TG_OP = "
          "'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END ->> TG_ARGV[0])::BIGINT FROM state "
          "WHERE id = 1; RETURN NULL; END $$");
      for (const auto& [table, event, column] : logged)
        out.push_back("CREATE TRIGGER log_" + table + "_" + event + " AFTER " + event + " ON " +
                      table + " FOR EACH ROW EXECUTE FUNCTION facemag_log_change('" + column +
                      "')");
    }
    return out;
  }
};

// The columns of `faces` and `unassigned` that describe the face itself, in Schema order.
inline constexpr const char* kFaceColumns =
    "source_path, image_sha256, face_key, box, landmarks, score, quality, embedding";

// A stored face's own columns (kFaceColumns), read from one table to be written to the other.
struct FaceColumns {
  std::vector<SqlValue> values;  // 8, in kFaceColumns order
  static FaceColumns of(const NewFace& f);
};
inline FaceColumns FaceColumns::of(const NewFace& f) {
  return {{f.source_path, f.image_sha256, face_key(f.detection.box), box_blob(f.detection),
           landmarks_blob(f.detection), double(f.detection.score),
           f.quality ? double(*f.quality) : norm(f.embedding),
           Blob{floats_to_blob(f.embedding.data(), f.embedding.size())}}};
}

// An hnsw index saved to `file` ("": nowhere; other kinds are not saved) tagged with the gallery's
// uid and `generation`; a failure is logged, not thrown (the next open builds it again).
void save_index_file(const PersonIndex& index, const std::string& file, const std::string& uid,
                     std::int64_t generation, const std::string& location);

// A random name for a new gallery (meta 'uid', from version 4): a saved index names the gallery
// it was built from.
std::string new_gallery_uid();

// The clustering threshold recorded for a gallery made before version 3: the built-in
// manifest's (`clustering_threshold`) when the gallery's model is that manifest's, else the
// same-person threshold (what clustering_threshold() falls back to).
double default_cluster_threshold(const ModelBinding& binding);

struct Gallery::State {
  mutable std::mutex mutex;  // the connection and the index are used by one thread at a time
  std::unique_ptr<Sql> sql;
  std::string location;    // as shown (a PostgreSQL URL without its password)
  std::string connect_to;  // as given: what another connection to the store opens
  ModelBinding model;
  IndexKind kind = IndexKind::kAuto;  // as requested at open
  // Derived from the store at generation `built_at`: the templates only.
  struct Person {
    std::string name;
    std::int64_t faces = 0;
    bool proposed = false;
    // From a row that starts (id, name, faces, proposed count).
    static Person of(const SqlRow& row) {
      return {as_text(row[1]), as_int(row[2]), as_int(row[3]) > 0};
    }
  };
  using People = std::unordered_map<std::int64_t, Person>;  // person id -> what search reports
  mutable std::int64_t built_at = -1;
  mutable PersonIndex index;
  mutable People people;
  mutable IndexStatus status;
  std::string index_file;  // where an hnsw index is saved and read back ("": nowhere)
  std::string uid;         // meta 'uid'

  // An index built from the templates at `generation`, with its people.
  struct Built {
    PersonIndex index;
    People people;
    std::int64_t generation = -1;
  };
  mutable std::future<Built> rebuilding;     // a rebuild off the request path, when one runs
  mutable std::size_t rebuild_retry_at = 0;  // after a failed one: people_followed to wait for

  std::optional<std::string> meta_value(const std::string& key) const {
    const auto rows = sql->run("SELECT value FROM meta WHERE key = ?", {key});
    if (rows.empty()) return std::nullopt;
    return as_text(rows[0][0]);
  }
  std::string meta(const std::string& key) const {
    auto value = meta_value(key);
    if (!value) throw GalleryError(location + ": not a facemag gallery (no '" + key + "')");
    return *value;
  }
  int schema_version() const { return std::stoi(meta("schema_version")); }
  std::int64_t generation() const {
    return as_int(sql->run("SELECT generation FROM state WHERE id = 1").at(0)[0]);
  }

  // Runs `body` in a transaction; a failure rolls everything back. The generation moves first:
  // the triggers log the transaction's changes under it, and on PostgreSQL its row lock makes
  // writers take turns (SQLite's BEGIN IMMEDIATE does that already), so generations commit in
  // order and a reader that sees generation G sees every change logged up to G.
  template <class F>
  auto transaction(F body) {
    sql->begin();
    try {
      const auto now = as_int(sql->run("UPDATE state SET generation = generation + 1 WHERE id = 1 "
                                       "RETURNING generation")
                                  .at(0)[0]);
      if (now % 1024 == 0) {  // the log keeps kLogKept generations (meta 'log_kept' overrides)
        const auto kept_value = meta_value("log_kept");
        const std::int64_t kept = kept_value ? std::stoll(*kept_value) : kLogKept;
        if (now > kept) {
          sql->run("DELETE FROM changes WHERE generation <= ?", {now - kept});
          sql->run("UPDATE state SET log_from = ? WHERE id = 1", {now - kept});
        }
      }
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        sql->commit();
      } else {
        auto result = body();
        sql->commit();
        return result;
      }
    } catch (...) {
      sql->rollback();
      throw;
    }
  }

  // The id of a person, or nullopt.
  std::optional<std::int64_t> person_id(const std::string& name) const {
    const auto rows = sql->run("SELECT id FROM persons WHERE name = ?", {name});
    if (rows.empty()) return std::nullopt;
    return as_int(rows[0][0]);
  }
  // The id of a person; GalleryError naming it when there is none.
  std::int64_t require_person(const std::string& name) const {
    const auto id = person_id(name);
    if (!id) throw GalleryError(location + ": no person '" + name + "' in the gallery");
    return *id;
  }
  bool is_proposed(std::int64_t person) const {
    return !sql->run("SELECT person_id FROM proposed WHERE person_id = ?", {person}).empty();
  }

  // Inserts a face on a person; its new id, or nullopt when the same face is stored already.
  std::optional<std::int64_t> insert_face(std::int64_t person, const FaceColumns& columns,
                                          const std::string& enrolled_at) {
    auto values = columns.values;
    values.insert(values.begin(), SqlValue{person});
    values.emplace_back(enrolled_at);
    const auto inserted =
        sql->run(std::string("INSERT INTO faces (person_id, ") + kFaceColumns +
                     ", enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (image_sha256, face_key) DO NOTHING RETURNING id",
                 values);
    if (inserted.empty()) return std::nullopt;
    return as_int(inserted[0][0]);
  }

  // ---- Proposed people and unassigned faces (proposed.cpp); inside a transaction ----

  // A new proposed person "unnamed-N" (N: the store's counter, past names taken): id and name.
  std::pair<std::int64_t, std::string> new_proposed_person();
  // Moves an unassigned face onto a person (its template is the caller's to update); its face id.
  std::int64_t move_to_person(std::int64_t unassigned_id, std::int64_t person);
  // Moves a face of a person to the unassigned faces; its unassigned id.
  std::int64_t move_to_pool(std::int64_t face_id, bool too_poor);
  // Groups the unassigned faces `fresh` with the unassigned faces near them and proposes the
  // groups (Gallery::store_assigned says how).
  std::vector<ProposedPerson> propose_from(const std::vector<std::int64_t>& fresh,
                                           const Grouping& grouping);

  void update_template(std::int64_t person_id) {
    std::vector<std::vector<float>> embeddings;
    std::vector<double> qualities;
    for (const auto& row :
         sql->run("SELECT embedding, quality FROM faces WHERE person_id = ?", {person_id})) {
      embeddings.push_back(blob_to_floats(as_blob(row[0])));
      qualities.push_back(as_real(row[1]));
    }
    if (embeddings.empty()) {
      sql->run("DELETE FROM templates WHERE person_id = ?", {person_id});
      sql->run("DELETE FROM persons WHERE id = ?", {person_id});
      return;
    }
    const auto t = person_template(embeddings, qualities);
    sql->run(
        "INSERT INTO templates (person_id, faces, vector) VALUES (?, ?, ?) ON CONFLICT (person_id) "
        "DO UPDATE SET faces = excluded.faces, vector = excluded.vector",
        {person_id, static_cast<std::int64_t>(embeddings.size()),
         Blob{floats_to_blob(t.data(), t.size())}});
  }

  void migrate() {
    if (const int version = schema_version(); version == kSchemaVersion) {
      return;
    } else if (version > kSchemaVersion) {
      throw GalleryError(location + ": gallery schema version " + std::to_string(version) +
                         " is newer than this facemag's (" + std::to_string(kSchemaVersion) +
                         "): update facemag");
    }
    const Schema schema(sql->dialect());
    sql->begin();
    try {
      // Read again inside the transaction: another process may have migrated it meanwhile
      // (SQLite's BEGIN IMMEDIATE, and on PostgreSQL this lock, let one migrate at a time).
      if (sql->dialect() == Dialect::kPostgres)
        sql->run("LOCK TABLE meta IN SHARE ROW EXCLUSIVE MODE");
      const int version = schema_version();
      if (version < 2) {  // 1 -> 2: stored templates and the change counter
        for (const auto& statement : schema.version2()) sql->run(statement);
        for (const auto& row : sql->run("SELECT id FROM persons")) update_template(as_int(row[0]));
      }
      if (version < 3) {  // 2 -> 3: unassigned faces, proposed people, the clustering threshold
        for (const auto& statement : schema.version3()) sql->run(statement);
        sql->run("INSERT INTO meta (key, value) VALUES ('cluster_threshold', ?)",
                 {std::to_string(default_cluster_threshold(model))});
      }
      if (version < 4) {  // 3 -> 4: the change log, complete from now on
        for (const auto& statement : schema.version4()) sql->run(statement);
        sql->run("INSERT INTO meta (key, value) VALUES ('uid', ?)", {new_gallery_uid()});
      }
      // 4 -> 5: templates weight faces by their stored quality for every model. MagFace
      // galleries stored each face's magnitude as its quality and weighted by it: nothing
      // changes. Others weighted faces equally: their templates are computed again (the faces
      // stored so far have their magnitude as quality). One pass over the faces, as a generation
      // of its own (moved first, as transaction() does, so that the log holds every template
      // under it: an index saved before, at the old generation, follows them in).
      if (version >= 2 && version < 5 && !model.magnitude_is_quality) {
        sql->run("UPDATE state SET generation = generation + 1 WHERE id = 1");
        for (const auto& row : sql->run("SELECT id FROM persons")) update_template(as_int(row[0]));
      }
      sql->run("UPDATE meta SET value = ? WHERE key = 'schema_version'",
               {std::to_string(kSchemaVersion)});
      sql->commit();
    } catch (...) {
      sql->rollback();
      throw;
    }
    model.cluster_threshold = std::stod(meta("cluster_threshold"));
  }

  ModelBinding read_binding() const {
    ModelBinding b;
    b.model_name = meta("model_name");
    b.architecture = meta("architecture");
    b.embedding_size = std::stoi(meta("embedding_size"));
    b.weights_sha256 = meta("weights_sha256");
    b.magnitude_is_quality = meta("magnitude_is_quality") == "1";
    b.same_person_threshold = std::stod(meta("same_person_threshold"));
    b.quality_threshold = std::stod(meta("quality_threshold"));
    b.weights_path = meta("weights_path");
    // Recorded from schema version 3 on (migrate() records it for older galleries).
    const auto cluster = meta_value("cluster_threshold");
    b.cluster_threshold = cluster ? std::stod(*cluster) : 0.0;
    return b;
  }

  // Brings the index up to the store's generation: follows the change log from `built_at`, or
  // reads every template when there is no index yet, the log no longer reaches back to it, or
  // the index asks to be rebuilt. Defined in gallery.cpp.
  void refresh() const;
  void load_all(std::int64_t generation, std::int64_t log_from) const;
  // Applies the logged changes after `from` up to `to`; false (nothing trusted) when the log no
  // longer reached back to `from` once read (a writer pruned it meanwhile).
  bool follow(std::int64_t from, std::int64_t to) const;
  void start_rebuild() const;
  bool load_saved(std::int64_t generation, std::int64_t log_from) const;
  void save_index() const;  // save_index_file of this index
  // Every person (and with `vectors`, their templates into `index` of `kind`) read through `sql`.
  // `stop`: read between pages and by the index build; once set, IndexBuildStopped.
  static Built read_all(Sql& sql, const ModelBinding& model, IndexKind kind, bool vectors,
                        const std::string& location, const std::atomic<bool>* stop = nullptr);
  // Set when the gallery closes: a rebuild still running stops within a chunk of rows
  // (PersonIndex::kBuildChunk) instead of finishing a graph nobody will search.
  std::atomic<bool> closing{false};
  ~State() {
    closing = true;
    if (rebuilding.valid()) rebuilding.wait();
  }
};

}  // namespace facemag::gallery
