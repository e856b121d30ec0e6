#include "facemag/gallery/gallery.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include "facemag/gallery/person_index.hpp"
#include "sql.hpp"

namespace facemag::gallery {
namespace {

std::string floats_to_blob(const float* values, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(values), n * sizeof(float));
}
std::vector<float> blob_to_floats(const std::string& blob) {
  std::vector<float> out(blob.size() / sizeof(float));
  std::memcpy(out.data(), blob.data(), out.size() * sizeof(float));
  return out;
}

double norm(const std::vector<float>& v) {
  double sum = 0;
  for (const float x : v) sum += double(x) * x;
  return std::sqrt(sum);
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Whole pixels: the same face of the same file, detected again, lands on the same key.
std::string face_key(const Box& b) {
  return std::to_string(std::lround(b.x1)) + "," + std::to_string(std::lround(b.y1)) + "," +
         std::to_string(std::lround(b.x2)) + "," + std::to_string(std::lround(b.y2));
}

// The schema, per dialect. Version 1: meta, persons, faces. Version 2 adds the stored templates
// and the change counter (so that other processes notice changes without reading every face).
struct Schema {
  std::string id, blob, real;
  explicit Schema(Dialect d)
      : id(d == Dialect::kSqlite ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY"),
        blob(d == Dialect::kSqlite ? "BLOB" : "BYTEA"),
        real(d == Dialect::kSqlite ? "REAL" : "DOUBLE PRECISION") {}
  std::vector<std::string> version1() const {
    return {"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE persons (id " + id + ", name TEXT NOT NULL UNIQUE)",
            "CREATE TABLE faces (id " + id +
                ", person_id BIGINT NOT NULL REFERENCES persons(id) ON DELETE CASCADE, "
                "source_path TEXT NOT NULL, image_sha256 TEXT NOT NULL, face_key TEXT NOT NULL, "
                "box " +
                blob + " NOT NULL, landmarks " + blob + " NOT NULL, score " + real +
                " NOT NULL, quality " + real + " NOT NULL, embedding " + blob +
                " NOT NULL, enrolled_at TEXT NOT NULL, UNIQUE (image_sha256, face_key))",
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
};

}  // namespace

std::string ModelBinding::describe() const {
  return model_name + " (" + architecture + ", " + std::to_string(embedding_size) + "-d, weights " +
         (weights_sha256.empty() ? std::string("without a SHA-256")
                                 : "sha256 " + weights_sha256.substr(0, 12) + "...") +
         ")";
}

IndexKind parse_index_kind(const std::string& name) {
  if (name == "exact") return IndexKind::kExact;
  if (name == "hnsw") return IndexKind::kHnsw;
  if (name == "ivf") return IndexKind::kIvf;
  throw InvalidInput("unknown index '" + name + "' (exact, hnsw, ivf)");
}

std::vector<float> person_template(const std::vector<std::vector<float>>& embeddings,
                                   bool magnitude_is_quality) {
  if (embeddings.empty()) return {};
  std::vector<double> sum(embeddings.front().size(), 0.0);
  double weights = 0;
  for (const auto& e : embeddings) {
    const double n = norm(e);
    if (n == 0) continue;
    const double w = magnitude_is_quality ? n : 1.0;
    for (std::size_t d = 0; d < e.size(); ++d) sum[d] += w * e[d] / n;
    weights += w;
  }
  std::vector<float> out(sum.size(), 0.0f);
  if (weights > 0) {
    for (std::size_t d = 0; d < sum.size(); ++d) out[d] = float(sum[d] / weights);
  }
  return out;
}

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
  mutable std::map<std::int64_t, std::vector<std::pair<std::int64_t, std::vector<float>>>>
      unit_faces;  // person id -> (face id, unit embedding)

  std::string meta(const std::string& key) const {
    const auto rows = sql->run("SELECT value FROM meta WHERE key = ?", {key});
    if (rows.empty()) throw GalleryError(location + ": not a facemag gallery (no '" + key + "')");
    return as_text(rows[0][0]);
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
    // 1 -> 2: stored templates and the change counter.
    sql->begin();
    try {
      for (const auto& statement : Schema(sql->dialect()).version2()) sql->run(statement);
      for (const auto& row : sql->run("SELECT id FROM persons")) update_template(as_int(row[0]));
      sql->run("UPDATE meta SET value = ? WHERE key = 'schema_version'",
               {std::to_string(kSchemaVersion)});
      sql->commit();
    } catch (...) {
      sql->rollback();
      throw;
    }
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
    return b;
  }

  // Rebuilds the index when any process changed the store since it was built.
  void refresh() const {
    const auto now = generation();
    if (now == built_at) return;
    std::vector<float> vectors;
    names.clear();
    person_ids.clear();
    for (const auto& row : sql->run(
             "SELECT p.id, p.name, t.vector FROM templates t JOIN persons p ON p.id = t.person_id "
             "ORDER BY p.id")) {
      person_ids.push_back(as_int(row[0]));
      names.push_back(as_text(row[1]));
      const auto v = blob_to_floats(as_blob(row[2]));
      vectors.insert(vectors.end(), v.begin(), v.end());
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

Gallery::Gallery(std::unique_ptr<State> state) : state_(std::move(state)) {}
Gallery::Gallery(Gallery&&) noexcept = default;
Gallery& Gallery::operator=(Gallery&&) noexcept = default;
Gallery::~Gallery() = default;

namespace {
std::unique_ptr<Sql> connect(const std::string& location, bool create) {
  return is_postgres_url(location) ? open_postgres(location) : open_sqlite(location, create);
}
bool has_gallery_tables(Sql& sql) {
  const auto rows =
      sql.dialect() == Dialect::kSqlite
          ? sql.run("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
          : sql.run(
                "SELECT tablename FROM pg_tables WHERE tablename = 'meta' AND schemaname = "
                "current_schema()");
  return !rows.empty();
}
}  // namespace

bool is_database_url(const std::string& location) { return is_postgres_url(location); }

bool Gallery::exists(const std::string& location) {
  if (!is_postgres_url(location)) return std::filesystem::exists(location);
  auto sql = open_postgres(location);
  return has_gallery_tables(*sql);
}

Gallery Gallery::create(const std::string& location, const ModelBinding& model) {
  if (model.embedding_size <= 0) throw InvalidInput("a gallery needs the model's embedding size");
  auto state = std::make_unique<State>();
  state->sql = connect(location, /*create=*/true);
  state->location = state->sql->location();
  state->model = model;
  if (has_gallery_tables(*state->sql))
    throw GalleryError(state->location + ": a gallery exists here already");
  const Schema schema(state->sql->dialect());
  state->sql->begin();
  try {
    for (const auto& s : schema.version1()) state->sql->run(s);
    for (const auto& s : schema.version2()) state->sql->run(s);
    const std::vector<std::pair<std::string, std::string>> meta{
        {"schema_version", std::to_string(kSchemaVersion)},
        {"model_name", model.model_name},
        {"architecture", model.architecture},
        {"embedding_size", std::to_string(model.embedding_size)},
        {"weights_sha256", model.weights_sha256},
        {"magnitude_is_quality", model.magnitude_is_quality ? "1" : "0"},
        {"same_person_threshold", std::to_string(model.same_person_threshold)},
        {"quality_threshold", std::to_string(model.quality_threshold)},
        {"weights_path", model.weights_path},
        {"created_at", utc_now()}};
    for (const auto& [key, value] : meta)
      state->sql->run("INSERT INTO meta (key, value) VALUES (?, ?)", {key, value});
    state->sql->commit();
  } catch (...) {
    state->sql->rollback();
    throw;
  }
  state->model = state->read_binding();
  return Gallery(std::move(state));
}

Gallery Gallery::open(const std::string& location, const std::optional<ModelBinding>& expected,
                      IndexKind index) {
  auto state = std::make_unique<State>();
  state->sql = connect(location, /*create=*/false);
  state->location = state->sql->location();
  state->kind = index;
  if (!has_gallery_tables(*state->sql))
    throw GalleryError(state->location + ": not a facemag gallery (no gallery tables)");
  state->model = state->read_binding();  // before migrating: templates weigh by it
  state->migrate();
  Gallery gallery(std::move(state));
  if (expected) gallery.require_model(*expected);
  return gallery;
}

void Gallery::require_model(const ModelBinding& expected) const {
  const auto& m = state_->model;
  const bool same = m.model_name == expected.model_name &&
                    m.architecture == expected.architecture &&
                    m.embedding_size == expected.embedding_size &&
                    (m.weights_sha256.empty() || expected.weights_sha256.empty() ||
                     m.weights_sha256 == expected.weights_sha256);
  if (!same)
    throw GalleryError(state_->location + ": this gallery holds embeddings of " + m.describe() +
                       ", not of " + expected.describe() +
                       " (use that model, or migrate with `facemag gallery reembed`)");
}

const ModelBinding& Gallery::model() const { return state_->model; }
const std::string& Gallery::location() const { return state_->location; }

int Gallery::schema_version() const {
  std::lock_guard lock(state_->mutex);
  return state_->schema_version();
}

std::int64_t Gallery::generation() const {
  std::lock_guard lock(state_->mutex);
  return state_->generation();
}

EnrollResult Gallery::enroll(const std::vector<NewFace>& faces) {
  const auto dim = static_cast<std::size_t>(state_->model.embedding_size);
  for (const auto& f : faces) {
    if (f.embedding.size() != dim)
      throw InvalidInput(f.source_path + ": an embedding of " + std::to_string(f.embedding.size()) +
                         " values for a gallery of " + std::to_string(dim) + "-d " +
                         state_->model.model_name + " embeddings");
    if (f.person.empty()) throw InvalidInput(f.source_path + ": enrolment without a person's name");
  }
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  return s.transaction([&] {
    EnrollResult result;
    std::set<std::int64_t> touched;
    const std::string now = utc_now();
    for (const auto& f : faces) {
      s.sql->run("INSERT INTO persons (name) VALUES (?) ON CONFLICT (name) DO NOTHING", {f.person});
      const auto person =
          as_int(s.sql->run("SELECT id FROM persons WHERE name = ?", {f.person})[0][0]);
      if (s.sql->dialect() == Dialect::kPostgres)  // one writer per person's template at a time
        s.sql->run("SELECT id FROM persons WHERE id = ? FOR UPDATE", {person});
      const Box& b = f.detection.box;
      const float box[4] = {b.x1, b.y1, b.x2, b.y2};
      float marks[10];
      for (int i = 0; i < 5; ++i) {
        marks[2 * i] = f.detection.landmarks[i].x;
        marks[2 * i + 1] = f.detection.landmarks[i].y;
      }
      const auto inserted = s.sql->run(
          "INSERT INTO faces (person_id, source_path, image_sha256, face_key, box, landmarks, "
          "score, quality, embedding, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (image_sha256, face_key) DO NOTHING RETURNING id",
          {person, f.source_path, f.image_sha256, face_key(b), Blob{floats_to_blob(box, 4)},
           Blob{floats_to_blob(marks, 10)}, double(f.detection.score), norm(f.embedding),
           Blob{floats_to_blob(f.embedding.data(), f.embedding.size())},
           f.enrolled_at.empty() ? now : f.enrolled_at});
      if (inserted.empty()) {
        ++result.duplicates;
        result.face_ids.emplace_back();
        // A person created only for a duplicate face keeps no empty row.
        if (as_int(s.sql->run("SELECT COUNT(*) FROM faces WHERE person_id = ?", {person})[0][0]) ==
            0)
          s.sql->run("DELETE FROM persons WHERE id = ?", {person});
        continue;
      }
      ++result.added;
      result.face_ids.push_back(as_int(inserted[0][0]));
      touched.insert(person);
    }
    for (const auto person : touched) s.update_template(person);
    return result;
  });
}

std::vector<Candidate> Gallery::search(const std::vector<float>& embedding, int top_k) const {
  if (embedding.size() != static_cast<std::size_t>(state_->model.embedding_size))
    throw InvalidInput("a query of " + std::to_string(embedding.size()) +
                       " values for a gallery of " + std::to_string(state_->model.embedding_size) +
                       "-d embeddings");
  std::lock_guard lock(state_->mutex);
  const auto& s = *state_;
  s.refresh();
  const double n = norm(embedding);
  std::vector<Candidate> out;
  for (const auto& hit : s.index.search(embedding, top_k)) {
    Candidate c;
    c.person = s.names[hit.row];
    c.template_similarity = hit.cosine;
    c.best_face_similarity = -2;
    const auto& faces = s.unit_faces.at(s.person_ids[hit.row]);
    c.faces = static_cast<int>(faces.size());
    for (const auto& [id, unit] : faces) {
      double dot = 0;
      for (std::size_t d = 0; d < unit.size(); ++d) dot += double(unit[d]) * embedding[d];
      const double cos = n > 0 ? dot / n : 0.0;
      if (cos > c.best_face_similarity) {
        c.best_face_similarity = cos;
        c.best_face_id = id;
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<PersonSummary> Gallery::persons() const {
  std::lock_guard lock(state_->mutex);
  std::vector<PersonSummary> out;
  for (const auto& row : state_->sql->run(
           "SELECT p.name, COUNT(f.id), AVG(f.quality) FROM persons p JOIN faces f ON f.person_id "
           "= p.id GROUP BY p.id, p.name ORDER BY p.name"))
    out.push_back({as_text(row[0]), static_cast<int>(as_int(row[1])), as_real(row[2])});
  return out;
}

std::vector<StoredFace> Gallery::faces(const std::optional<std::string>& person) const {
  std::lock_guard lock(state_->mutex);
  const std::string select =
      "SELECT f.id, p.name, f.source_path, f.image_sha256, f.box, f.landmarks, f.score, "
      "f.quality, f.embedding, f.enrolled_at FROM faces f JOIN persons p ON p.id = f.person_id ";
  const auto rows = person ? state_->sql->run(select + "WHERE p.name = ? ORDER BY f.id", {*person})
                           : state_->sql->run(select + "ORDER BY f.id");
  if (person && rows.empty())
    throw GalleryError(state_->location + ": no person '" + *person + "' in the gallery");
  std::vector<StoredFace> out;
  for (const auto& row : rows) {
    StoredFace f;
    f.id = as_int(row[0]);
    f.person = as_text(row[1]);
    f.source_path = as_text(row[2]);
    f.image_sha256 = as_text(row[3]);
    const auto box = blob_to_floats(as_blob(row[4]));
    const auto marks = blob_to_floats(as_blob(row[5]));
    if (box.size() == 4) f.detection.box = {box[0], box[1], box[2], box[3]};
    for (std::size_t i = 0; i < 5 && marks.size() == 10; ++i)
      f.detection.landmarks.points[i] = {marks[2 * i], marks[2 * i + 1]};
    f.detection.score = static_cast<float>(as_real(row[6]));
    f.quality = static_cast<float>(as_real(row[7]));
    f.embedding = blob_to_floats(as_blob(row[8]));
    f.enrolled_at = as_text(row[9]);
    out.push_back(std::move(f));
  }
  return out;
}

void Gallery::remove_person(const std::string& name) {
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  s.transaction([&] {
    const auto rows = s.sql->run("SELECT id FROM persons WHERE name = ?", {name});
    if (rows.empty()) throw GalleryError(s.location + ": no person '" + name + "' in the gallery");
    const auto id = as_int(rows[0][0]);
    s.sql->run("DELETE FROM templates WHERE person_id = ?", {id});
    s.sql->run("DELETE FROM faces WHERE person_id = ?", {id});
    s.sql->run("DELETE FROM persons WHERE id = ?", {id});
  });
}

void Gallery::remove_face(std::int64_t face_id) {
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  s.transaction([&] {
    const auto rows = s.sql->run("SELECT person_id FROM faces WHERE id = ?", {face_id});
    if (rows.empty())
      throw GalleryError(s.location + ": no face " + std::to_string(face_id) + " in the gallery");
    s.sql->run("DELETE FROM faces WHERE id = ?", {face_id});
    s.update_template(as_int(rows[0][0]));
  });
}

void Gallery::rename_person(const std::string& from, const std::string& to) {
  if (to.empty()) throw InvalidInput("a person's new name cannot be empty");
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  s.transaction([&] {
    if (s.sql->run("SELECT id FROM persons WHERE name = ?", {from}).empty())
      throw GalleryError(s.location + ": no person '" + from + "' in the gallery");
    if (!s.sql->run("SELECT id FROM persons WHERE name = ?", {to}).empty())
      throw GalleryError(s.location + ": '" + to + "' is enrolled already (remove or rename it)");
    s.sql->run("UPDATE persons SET name = ? WHERE name = ?", {to, from});
  });
}

std::vector<std::string> Gallery::check() const {
  std::lock_guard lock(state_->mutex);
  const auto& s = *state_;
  std::vector<std::string> problems;
  const auto dim = static_cast<std::size_t>(s.model.embedding_size);
  std::map<std::int64_t, std::vector<std::vector<float>>> by_person;
  for (const auto& row : s.sql->run("SELECT id, person_id, embedding, box, landmarks FROM faces")) {
    const auto id = as_int(row[0]);
    auto e = blob_to_floats(as_blob(row[2]));
    if (e.size() != dim || as_blob(row[2]).size() != dim * sizeof(float)) {
      problems.push_back("face " + std::to_string(id) + ": embedding of " +
                         std::to_string(as_blob(row[2]).size()) + " bytes, expected " +
                         std::to_string(dim * sizeof(float)));
      continue;
    }
    if (!std::all_of(e.begin(), e.end(), [](float x) { return std::isfinite(x); }))
      problems.push_back("face " + std::to_string(id) + ": embedding holds NaN or infinity");
    if (as_blob(row[3]).size() != 16 || as_blob(row[4]).size() != 40)
      problems.push_back("face " + std::to_string(id) + ": box or landmarks do not decode");
    by_person[as_int(row[1])].push_back(std::move(e));
  }
  std::map<std::int64_t, std::vector<float>> templates;
  for (const auto& row : s.sql->run("SELECT person_id, faces, vector FROM templates"))
    templates[as_int(row[0])] = blob_to_floats(as_blob(row[2]));
  for (const auto& row : s.sql->run("SELECT id, name FROM persons")) {
    const auto id = as_int(row[0]);
    const auto& name = as_text(row[1]);
    const auto faces = by_person.find(id);
    if (faces == by_person.end()) {
      problems.push_back("person '" + name + "': no faces");
      continue;
    }
    const auto t = templates.find(id);
    if (t == templates.end()) {
      problems.push_back("person '" + name + "': no template");
      continue;
    }
    const auto expected = person_template(faces->second, s.model.magnitude_is_quality);
    double worst = 0;
    for (std::size_t d = 0; d < expected.size() && d < t->second.size(); ++d)
      worst = std::max(worst, double(std::abs(expected[d] - t->second[d])));
    if (t->second.size() != expected.size() || worst > 1e-6)
      problems.push_back("person '" + name + "': stored template differs from its faces' (by " +
                         std::to_string(worst) + ")");
  }
  s.refresh();
  if (s.index.size() != templates.size())
    problems.push_back("index holds " + std::to_string(s.index.size()) + " people, the store " +
                       std::to_string(templates.size()));
  return problems;
}

}  // namespace facemag::gallery
