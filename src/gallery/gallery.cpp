#include "facemag/gallery/gallery.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <unordered_map>

#include "facemag/model/manifest.hpp"
#include "store.hpp"

namespace facemag::gallery {

std::string ModelBinding::describe() const {
  return model_name + " (" + architecture + ", " + std::to_string(embedding_size) + "-d, weights " +
         (weights_sha256.empty() ? std::string("without a SHA-256")
                                 : "sha256 " + weights_sha256.substr(0, 12) + "...") +
         ")";
}

std::vector<float> person_template(const std::vector<std::vector<float>>& embeddings,
                                   const std::vector<double>& qualities) {
  if (embeddings.empty()) return {};
  if (qualities.size() != embeddings.size())
    throw InvalidInput("person_template: " + std::to_string(qualities.size()) + " qualities for " +
                       std::to_string(embeddings.size()) + " faces");
  std::vector<double> sum(embeddings.front().size(), 0.0);
  double weights = 0;
  const auto add_all = [&](bool equal) {
    for (std::size_t i = 0; i < embeddings.size(); ++i) {
      const auto& e = embeddings[i];
      const double n = norm(e);
      const double w = equal ? 1.0 : std::max(0.0, qualities[i]);
      if (n == 0 || w == 0) continue;
      for (std::size_t d = 0; d < e.size(); ++d) sum[d] += w * e[d] / n;
      weights += w;
    }
  };
  add_all(/*equal=*/false);
  if (weights == 0) add_all(/*equal=*/true);  // every face of quality 0: none outweighs another
  std::vector<float> out(sum.size(), 0.0f);
  if (weights > 0) {
    for (std::size_t d = 0; d < sum.size(); ++d) out[d] = float(sum[d] / weights);
  }
  return out;
}

double default_cluster_threshold(const ModelBinding& binding) {
  try {
    const auto manifest = builtin_manifest(binding.architecture);
    if (manifest.name == binding.model_name) return clustering_threshold(manifest);
  } catch (const InvalidInput&) {
    // An architecture this facemag does not know: no built-in manifest to ask.
  }
  return binding.same_person_threshold;
}

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
  state->connect_to = location;
  state->model = model;
  if (has_gallery_tables(*state->sql))
    throw GalleryError(state->location + ": a gallery exists here already");
  const Schema schema(state->sql->dialect());
  state->sql->begin();
  try {
    for (const auto& s : schema.version1()) state->sql->run(s);
    for (const auto& s : schema.version2()) state->sql->run(s);
    for (const auto& s : schema.version3()) state->sql->run(s);
    for (const auto& s : schema.version4()) state->sql->run(s);
    const double cluster_threshold =
        model.cluster_threshold > 0 ? model.cluster_threshold : default_cluster_threshold(model);
    const std::vector<std::pair<std::string, std::string>> meta{
        {"schema_version", std::to_string(kSchemaVersion)},
        {"model_name", model.model_name},
        {"architecture", model.architecture},
        {"embedding_size", std::to_string(model.embedding_size)},
        {"weights_sha256", model.weights_sha256},
        {"magnitude_is_quality", model.magnitude_is_quality ? "1" : "0"},
        {"same_person_threshold", std::to_string(model.same_person_threshold)},
        {"quality_threshold", std::to_string(model.quality_threshold)},
        {"cluster_threshold", std::to_string(cluster_threshold)},
        {"weights_path", model.weights_path},
        {"created_at", utc_now()},
        {"uid", new_gallery_uid()}};
    for (const auto& [key, value] : meta)
      state->sql->run("INSERT INTO meta (key, value) VALUES (?, ?)", {key, value});
    state->sql->commit();
  } catch (...) {
    state->sql->rollback();
    throw;
  }
  state->model = state->read_binding();
  state->uid = state->meta("uid");
  return Gallery(std::move(state));
}

Gallery Gallery::open(const std::string& location, const std::optional<ModelBinding>& expected,
                      IndexKind index, const std::string& index_file) {
  auto state = std::make_unique<State>();
  state->sql = connect(location, /*create=*/false);
  state->location = state->sql->location();
  state->connect_to = location;
  state->kind = index;
  if (!has_gallery_tables(*state->sql))
    throw GalleryError(state->location + ": not a facemag gallery (no gallery tables)");
  state->model = state->read_binding();  // before migrating: templates weigh by it
  state->migrate();
  state->uid = state->meta("uid");
  state->index_file = !index_file.empty()         ? index_file
                      : is_postgres_url(location) ? std::string()
                                                  : state->location + ".index";
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
      const auto columns = FaceColumns::of(f);
      // A face kept unassigned by `assign` joins the person it is now enrolled as.
      s.sql->run("DELETE FROM unassigned WHERE image_sha256 = ? AND face_key = ?",
                 {f.image_sha256, face_key(f.detection.box)});
      const auto inserted =
          s.insert_face(person, columns, f.enrolled_at.empty() ? now : f.enrolled_at);
      if (!inserted) {
        ++result.duplicates;
        result.face_ids.emplace_back();
        // A person created only for a duplicate face keeps no empty row.
        if (as_int(s.sql->run("SELECT COUNT(*) FROM faces WHERE person_id = ?", {person})[0][0]) ==
            0)
          s.sql->run("DELETE FROM persons WHERE id = ?", {person});
        continue;
      }
      ++result.added;
      result.face_ids.push_back(*inserted);
      touched.insert(person);
    }
    for (const auto person : touched) s.update_template(person);
    return result;
  });
}

namespace {

// "?, ?, ..., ?" for n values.
std::string placeholders(std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
  return out;
}

constexpr std::size_t kIdsPerQuery = 500;  // ids bound in one IN (...) list

// `select` (ending in "IN ") run for `ids`, kIdsPerQuery at a time; each row to `row_fn`.
template <class RowFn>
void each_row_in(Sql& sql, const std::string& select, const std::vector<std::int64_t>& ids,
                 RowFn row_fn) {
  for (std::size_t first = 0; first < ids.size(); first += kIdsPerQuery) {
    const std::vector<SqlValue> some(
        ids.begin() + static_cast<std::ptrdiff_t>(first),
        ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), first + kIdsPerQuery)));
    for (const auto& row : sql.run(select + "(" + placeholders(some.size()) + ")", some))
      row_fn(row);
  }
}

// A person's stored template (column 4 of kPeopleSelect) as `dim` values; GalleryError when it
// holds another number.
std::span<const float> template_values(const SqlRow& row, std::size_t dim,
                                       const std::string& location) {
  const auto& bytes = as_blob(row[4]);
  if (bytes.size() != dim * sizeof(float))
    throw GalleryError(location + ": the template of person " + std::to_string(as_int(row[0])) +
                       " is not of " + std::to_string(dim) +
                       " values (run `facemag gallery check`)");
  return {reinterpret_cast<const float*>(bytes.data()), dim};
}

// What search reports of a person, then their template, from the store.
constexpr const char* kPeopleSelect =
    "SELECT p.id, p.name, t.faces, (SELECT COUNT(*) FROM proposed r WHERE r.person_id = p.id), "
    "t.vector FROM templates t JOIN persons p ON p.id = t.person_id ";
constexpr const char* kPeopleSelectWithoutVectors =
    "SELECT p.id, p.name, t.faces, (SELECT COUNT(*) FROM proposed r WHERE r.person_id = p.id) "
    "FROM templates t JOIN persons p ON p.id = t.person_id";

}  // namespace

std::string new_gallery_uid() {
  std::random_device device;
  std::mt19937_64 rng((std::uint64_t(device()) << 32) ^ device() ^
                      std::uint64_t(std::chrono::system_clock::now().time_since_epoch().count()));
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(rng()));
  return text;
}

Gallery::State::Built Gallery::State::read_all(Sql& sql, const ModelBinding& model, IndexKind kind,
                                               bool vectors, const std::string& location,
                                               const std::atomic<bool>* stop) {
  Built out;
  out.generation = as_int(sql.run("SELECT generation FROM state WHERE id = 1").at(0)[0]);
  const auto dim = static_cast<std::size_t>(model.embedding_size);
  std::vector<std::int64_t> ids;
  std::vector<float> values;
  if (vectors) {
    const auto count = as_int(sql.run("SELECT COUNT(*) FROM templates").at(0)[0]);
    ids.reserve(static_cast<std::size_t>(count));
    values.reserve(static_cast<std::size_t>(count) * dim);
  }
  // Pages of rows by id: the store's rows are never all in memory at once.
  constexpr std::int64_t kPage = 20000;
  const std::string select = std::string(vectors ? kPeopleSelect : kPeopleSelectWithoutVectors) +
                             (vectors ? "" : " ") + "WHERE p.id > ? ORDER BY p.id LIMIT ?";
  for (std::int64_t after = -1;;) {
    if (stop && stop->load()) throw IndexBuildStopped(location + ": index build stopped");
    const auto rows = sql.run(select, {after, kPage});
    for (const auto& row : rows) {
      const auto id = as_int(row[0]);
      out.people[id] = Person::of(row);
      if (!vectors) continue;
      const auto v = template_values(row, dim, location);
      ids.push_back(id);
      values.insert(values.end(), v.begin(), v.end());
    }
    if (rows.size() < static_cast<std::size_t>(kPage)) break;
    after = as_int(rows.back()[0]);
  }
  if (vectors) out.index.build(ids, std::move(values), dim, kind, stop);
  return out;
}

void Gallery::State::load_all(std::int64_t generation, std::int64_t log_from) const {
  const auto count =
      static_cast<std::size_t>(as_int(sql->run("SELECT COUNT(*) FROM templates").at(0)[0]));
  ++status.full_loads;
  status.from_saved_file = false;
  if (resolve_index_kind(kind, count) == IndexKind::kHnsw && !index_file.empty() &&
      load_saved(generation, log_from)) {
    status.from_saved_file = true;
    return;
  }
  auto built = read_all(*sql, model, kind, true, location);
  index = std::move(built.index);
  people = std::move(built.people);
  built_at = built.generation;  // the next refresh follows whatever came after it
  save_index();
}

bool Gallery::State::load_saved(std::int64_t generation, std::int64_t log_from) const {
  PersonIndex saved;
  const auto tag = saved.load(index_file);
  if (!tag) return false;
  std::istringstream in(*tag);
  std::string saved_uid;
  std::int64_t saved_at = -1;
  in >> saved_uid >> saved_at;
  // Another gallery's, one the log no longer reaches back to, or one of a generation this store
  // never reached (the store was restored from a backup): built again.
  if (!in || saved_uid != uid || saved_at < log_from || saved_at > generation ||
      saved.dim() != static_cast<std::size_t>(model.embedding_size))
    return false;
  auto people_now = read_all(*sql, model, kind, false, location).people;
  PersonIndex kept = std::move(index);
  People kept_people = std::move(people);
  index = std::move(saved);
  people = std::move(people_now);
  built_at = saved_at;
  if (follow(saved_at, generation)) return true;
  index = std::move(kept);  // the log was pruned meanwhile: built from the templates instead
  people = std::move(kept_people);
  return false;
}

void Gallery::State::save_index() const {
  save_index_file(index, index_file, uid, built_at, location);
}

void save_index_file(const PersonIndex& index, const std::string& file, const std::string& uid,
                     std::int64_t generation, const std::string& location) {
  if (file.empty() || index.kind() != IndexKind::kHnsw) return;
  try {
    index.save(file, uid + " " + std::to_string(generation));
  } catch (const std::exception& e) {
    spdlog::warn("{}: the index is not saved ({}); the next open builds it again", location,
                 e.what());
  }
}

void Gallery::State::start_rebuild() const {
  if (rebuilding.valid()) return;
  // The task reads `closing` of this State, which waits for it before it goes.
  rebuilding =
      std::async(std::launch::async, [connect_to = connect_to, location = location, model = model,
                                      kind = kind, file = index_file, uid = uid, stop = &closing] {
        // A connection of its own: the gallery's serves searches meanwhile; the index is saved here
        // too, off the request path.
        auto own = connect(connect_to, /*create=*/false);
        auto built = read_all(*own, model, kind, true, location, stop);
        save_index_file(built.index, file, uid, built.generation, location);
        return built;
      });
}

bool Gallery::State::follow(std::int64_t from, std::int64_t to) const {
  std::vector<std::int64_t> changed;
  for (const auto& row :
       sql->run("SELECT DISTINCT person_id FROM changes WHERE generation > ? AND generation <= ?",
                {from, to}))
    changed.push_back(as_int(row[0]));
  // A writer that pruned the log before the read above left part of it out: read everything.
  if (as_int(sql->run("SELECT log_from FROM state WHERE id = 1").at(0)[0]) > from) return false;
  const auto dim = static_cast<std::size_t>(model.embedding_size);
  std::set<std::int64_t> gone(changed.begin(), changed.end());
  each_row_in(*sql, std::string(kPeopleSelect) + "WHERE p.id IN ", changed, [&](const SqlRow& row) {
    const auto id = as_int(row[0]);
    index.upsert(id, template_values(row, dim, location));
    people[id] = Person::of(row);
    gone.erase(id);
  });
  for (const auto id : gone) {
    index.remove(id);
    people.erase(id);
  }
  status.people_followed += changed.size();
  built_at = to;
  return true;
}

void Gallery::State::refresh() const {
  const auto row = sql->run("SELECT generation, log_from FROM state WHERE id = 1").at(0);
  const auto now = as_int(row[0]);
  const auto log_from = as_int(row[1]);
  if (rebuilding.valid() &&
      rebuilding.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    try {
      auto built = rebuilding.get();
      if (built.generation >= log_from && built.generation <= now && built_at >= 0) {
        index = std::move(built.index);
        people = std::move(built.people);
        built_at = built.generation;  // the log below brings it up to `now`
        ++status.rebuilds;
      }
    } catch (const std::exception& e) {
      rebuild_retry_at = status.people_followed + std::max<std::size_t>(1000, index.size() / 2);
      spdlog::warn("{}: rebuilding the index failed ({}); searches go on with the current one",
                   location, e.what());
    }
  }
  // No index yet, one the log no longer reaches, or a store that went back (restored from a
  // backup): every template is read again.
  if (built_at < 0 || built_at < log_from || now < built_at ||
      (now != built_at && !follow(built_at, now)))
    load_all(now, log_from);
  // An index grown past its kind (auto's exact beyond kExactUpTo, an ivf's lists trained on far
  // fewer people) or full of tombstones is built again, off the request path (after a failure,
  // not again until as many people as half the index have changed).
  const auto wanted = resolve_index_kind(kind, index.size());
  const bool kept_while_shrinking =  // auto goes back to exact only at half the size
      kind == IndexKind::kAuto && index.kind() == IndexKind::kHnsw && index.size() > kExactUpTo / 2;
  const bool due = (wanted != index.kind() && !kept_while_shrinking) || index.wants_rebuild();
  if (due && status.people_followed >= rebuild_retry_at) start_rebuild();
  status.kind = index.kind();
  status.people = index.size();
  status.generation = built_at;
  status.rebuilding = rebuilding.valid();
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
  std::vector<std::int64_t> ids;
  for (const auto& hit : s.index.search(embedding, top_k)) {
    const auto found = s.people.find(hit.id);
    if (found == s.people.end()) continue;  // gone while a saved index was being read
    const auto& person = found->second;
    Candidate c;
    c.person = person.name;
    c.template_similarity = hit.cosine;
    c.proposed = person.proposed;
    c.faces = static_cast<int>(person.faces);
    c.best_face_similarity = -2;
    out.push_back(std::move(c));
    ids.emplace_back(hit.id);
  }
  if (ids.empty()) return out;
  std::unordered_map<std::int64_t, std::size_t> rank;
  for (std::size_t i = 0; i < ids.size(); ++i) rank[ids[i]] = i;
  each_row_in(*s.sql, "SELECT id, person_id, embedding FROM faces WHERE person_id IN ", ids,
              [&](const SqlRow& row) {
                const auto e = blob_to_floats(as_blob(row[2]));
                double dot = 0;
                for (std::size_t d = 0; d < e.size() && d < embedding.size(); ++d)
                  dot += double(e[d]) * embedding[d];
                const double face_norm = norm(e);
                const double cos = n > 0 && face_norm > 0 ? dot / (n * face_norm) : 0.0;
                auto& c = out[rank.at(as_int(row[1]))];
                if (cos > c.best_face_similarity) {
                  c.best_face_similarity = cos;
                  c.best_face_id = as_int(row[0]);
                }
              });
  return out;
}

IndexStatus Gallery::index_status() const {
  std::lock_guard lock(state_->mutex);
  state_->refresh();
  return state_->status;
}

IndexRecall Gallery::index_recall(int queries, int k) const {
  if (queries <= 0 || k <= 0) throw InvalidInput("index recall: queries and k must be positive");
  std::lock_guard lock(state_->mutex);
  const auto& s = *state_;
  s.refresh();
  const auto exact = State::read_all(*s.sql, s.model, IndexKind::kExact, true, s.location).index;
  IndexRecall out;
  out.kind = s.index.kind();
  out.people = s.index.size();
  out.k = k;
  std::size_t found = 0, wanted = 0;
  for (const auto& row : s.sql->run("SELECT embedding FROM faces ORDER BY RANDOM() LIMIT ?",
                                    {std::int64_t{queries}})) {
    const auto query = blob_to_floats(as_blob(row[0]));
    std::set<std::int64_t> truth;
    for (const auto& hit : exact.search(query, k)) truth.insert(hit.id);
    for (const auto& hit : s.index.search(query, k)) found += truth.count(hit.id);
    wanted += truth.size();
    ++out.queries;
  }
  out.recall = wanted > 0 ? double(found) / double(wanted) : 1.0;
  return out;
}

std::vector<PersonSummary> Gallery::persons() const {
  std::lock_guard lock(state_->mutex);
  std::vector<PersonSummary> out;
  for (const auto& row : state_->sql->run(
           "SELECT p.name, COUNT(f.id), AVG(f.quality), (SELECT COUNT(*) FROM proposed r WHERE "
           "r.person_id = p.id) FROM persons p JOIN faces f ON f.person_id = p.id GROUP BY p.id, "
           "p.name ORDER BY p.name"))
    out.push_back(
        {as_text(row[0]), static_cast<int>(as_int(row[1])), as_real(row[2]), as_int(row[3]) > 0});
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
    f.detection = detection_of(as_blob(row[4]), as_blob(row[5]), as_real(row[6]));
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
    const auto id = s.require_person(from);
    if (s.person_id(to))
      throw GalleryError(s.location + ": '" + to + "' is enrolled already (remove or rename it)");
    s.sql->run("UPDATE persons SET name = ? WHERE id = ?", {to, id});
    // Naming a proposed person makes it a known one.
    s.sql->run("DELETE FROM proposed WHERE person_id = ?", {id});
  });
}

std::vector<std::string> Gallery::check() const {
  std::lock_guard lock(state_->mutex);
  const auto& s = *state_;
  std::vector<std::string> problems;
  const auto dim = static_cast<std::size_t>(s.model.embedding_size);
  struct PersonFaces {
    std::vector<std::vector<float>> embeddings;
    std::vector<double> qualities;
  };
  std::map<std::int64_t, PersonFaces> by_person;
  for (const auto& row :
       s.sql->run("SELECT id, person_id, embedding, box, landmarks, quality FROM faces")) {
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
    auto& faces = by_person[as_int(row[1])];
    faces.embeddings.push_back(std::move(e));
    faces.qualities.push_back(as_real(row[5]));
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
    const auto expected = person_template(faces->second.embeddings, faces->second.qualities);
    double worst = 0;
    for (std::size_t d = 0; d < expected.size() && d < t->second.size(); ++d)
      worst = std::max(worst, double(std::abs(expected[d] - t->second[d])));
    if (t->second.size() != expected.size() || worst > 1e-6)
      problems.push_back("person '" + name + "': stored template differs from its faces' (by " +
                         std::to_string(worst) + ")");
  }
  for (const auto& row : s.sql->run("SELECT id, embedding FROM unassigned")) {
    const auto& bytes = as_blob(row[1]);
    const auto e = blob_to_floats(bytes);
    if (bytes.size() != dim * sizeof(float) ||
        !std::all_of(e.begin(), e.end(), [](float x) { return std::isfinite(x); }))
      problems.push_back("unassigned face " + std::to_string(as_int(row[0])) + ": embedding of " +
                         std::to_string(bytes.size()) + " bytes or not finite, expected " +
                         std::to_string(dim * sizeof(float)) + " finite");
  }
  for (const auto& row : s.sql->run(
           "SELECT u.id, f.id FROM unassigned u JOIN faces f ON f.image_sha256 = u.image_sha256 "
           "AND f.face_key = u.face_key"))
    problems.push_back("unassigned face " + std::to_string(as_int(row[0])) +
                       " is also stored as face " + std::to_string(as_int(row[1])));
  s.refresh();
  if (s.index.size() != templates.size())
    problems.push_back("index holds " + std::to_string(s.index.size()) + " people, the store " +
                       std::to_string(templates.size()));
  for (const auto& [id, vector] : templates)
    if (!s.index.contains(id)) {
      problems.push_back("index lacks person " + std::to_string(id));
      break;
    }
  return problems;
}

}  // namespace facemag::gallery
