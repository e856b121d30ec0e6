// The inside of a Gallery, shared by the files that implement it (gallery.cpp: people and faces;
// proposed.cpp: unassigned faces and proposed people): the schema, the row encodings and the
// state of an open gallery. Not a public header.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
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
// (proposed: which persons are, and their number N of "unnamed-N").
struct Schema {
  std::string id, blob, real;
  explicit Schema(Dialect d)
      : id(d == Dialect::kSqlite ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY"),
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
           landmarks_blob(f.detection), double(f.detection.score), norm(f.embedding),
           Blob{floats_to_blob(f.embedding.data(), f.embedding.size())}}};
}

// The clustering threshold recorded for a gallery made before version 3: the built-in
// manifest's (`clustering_threshold`) when the gallery's model is that manifest's, else the
// same-person threshold (what clustering_threshold() falls back to).
double default_cluster_threshold(const ModelBinding& binding);

struct Gallery::State {
  mutable std::mutex mutex;  // the connection and the index are used by one thread at a time
  std::unique_ptr<Sql> sql;
  std::string location;
  ModelBinding model;
  IndexKind kind = IndexKind::kExact;
  // Derived from the store at `built_at`.
  mutable std::int64_t built_at = -1;
  mutable PersonIndex index;
  mutable std::vector<std::string> names;        // index row -> person
  mutable std::vector<std::int64_t> person_ids;  // index row -> person id
  mutable std::vector<char> proposed;            // index row -> a proposed person
  mutable std::map<std::int64_t, std::vector<std::pair<std::int64_t, std::vector<float>>>>
      unit_faces;  // person id -> (face id, unit embedding)

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

  // Runs `body` in a transaction; a failure rolls everything back.
  template <class F>
  auto transaction(F body) {
    sql->begin();
    try {
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        sql->run("UPDATE state SET generation = generation + 1 WHERE id = 1");
        sql->commit();
      } else {
        auto result = body();
        sql->run("UPDATE state SET generation = generation + 1 WHERE id = 1");
        sql->commit();
        return result;
      }
    } catch (...) {
      sql->rollback();
      throw;
    }
  }

  // On PostgreSQL, makes the transaction the only writer of the gallery until it ends (SQLite's
  // BEGIN IMMEDIATE is that already): grouping reads every unassigned face, and two processes
  // grouping the same faces at once would each propose them.
  void lock_writers() {
    if (sql->dialect() == Dialect::kPostgres)
      sql->run("SELECT generation FROM state WHERE id = 1 FOR UPDATE");
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
    for (const auto& row : sql->run("SELECT embedding FROM faces WHERE person_id = ?", {person_id}))
      embeddings.push_back(blob_to_floats(as_blob(row[0])));
    if (embeddings.empty()) {
      sql->run("DELETE FROM templates WHERE person_id = ?", {person_id});
      sql->run("DELETE FROM persons WHERE id = ?", {person_id});
      return;
    }
    const auto t = person_template(embeddings, model.magnitude_is_quality);
    sql->run(
        "INSERT INTO templates (person_id, faces, vector) VALUES (?, ?, ?) ON CONFLICT (person_id) "
        "DO UPDATE SET faces = excluded.faces, vector = excluded.vector",
        {person_id, static_cast<std::int64_t>(embeddings.size()),
         Blob{floats_to_blob(t.data(), t.size())}});
  }

  void migrate() {
    const int version = schema_version();
    if (version == kSchemaVersion) return;
    if (version > kSchemaVersion)
      throw GalleryError(location + ": gallery schema version " + std::to_string(version) +
                         " is newer than this facemag's (" + std::to_string(kSchemaVersion) +
                         "): update facemag");
    const Schema schema(sql->dialect());
    sql->begin();
    try {
      if (version < 2) {  // 1 -> 2: stored templates and the change counter
        for (const auto& statement : schema.version2()) sql->run(statement);
        for (const auto& row : sql->run("SELECT id FROM persons")) update_template(as_int(row[0]));
      }
      if (version < 3) {  // 2 -> 3: unassigned faces, proposed people, the clustering threshold
        for (const auto& statement : schema.version3()) sql->run(statement);
        sql->run("INSERT INTO meta (key, value) VALUES ('cluster_threshold', ?)",
                 {std::to_string(default_cluster_threshold(model))});
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

  // Rebuilds the index when any process changed the store since it was built.
  void refresh() const {
    const auto now = generation();
    if (now == built_at) return;
    std::vector<float> vectors;
    names.clear();
    person_ids.clear();
    proposed.clear();
    for (const auto& row : sql->run(
             "SELECT p.id, p.name, t.vector, (SELECT COUNT(*) FROM proposed r WHERE r.person_id = "
             "p.id) FROM templates t JOIN persons p ON p.id = t.person_id ORDER BY p.id")) {
      person_ids.push_back(as_int(row[0]));
      names.push_back(as_text(row[1]));
      const auto v = blob_to_floats(as_blob(row[2]));
      vectors.insert(vectors.end(), v.begin(), v.end());
      proposed.push_back(as_int(row[3]) > 0 ? 1 : 0);
    }
    unit_faces.clear();
    for (const auto& row : sql->run("SELECT id, person_id, embedding FROM faces")) {
      auto e = blob_to_floats(as_blob(row[2]));
      const double n = norm(e);
      for (auto& x : e) x = n > 0 ? float(x / n) : 0.0f;
      unit_faces[as_int(row[1])].emplace_back(as_int(row[0]), std::move(e));
    }
    index.build(vectors, static_cast<std::size_t>(model.embedding_size), kind);
    built_at = now;
  }
};

}  // namespace facemag::gallery
