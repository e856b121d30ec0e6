// The gallery library: templates, search against a brute-force computation, the faiss indexes,
// schema migration, and the errors a user meets (no shared data needed).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "facemag/gallery/evaluate.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/person_index.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using gallery::Gallery;
using gallery::GalleryError;
using gallery::ModelBinding;
using gallery::NewFace;

ModelBinding toy_model(int dim, bool magface) {
  ModelBinding m;
  m.model_name = magface ? "toy-magface" : "toy";
  m.architecture = "iresnet18";
  m.embedding_size = dim;
  m.weights_sha256 = std::string(64, 'a');
  m.magnitude_is_quality = magface;
  m.same_person_threshold = 0.3;
  m.quality_threshold = magface ? 20 : 0;
  return m;
}

std::vector<float> random_vector(std::mt19937& rng, int dim, float scale) {
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<std::size_t>(dim));
  for (auto& x : v) x = normal(rng) * scale;
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}
double norm(const std::vector<float>& a) { return std::sqrt(dot(a, a)); }

NewFace face(const std::string& person, const std::string& file, std::vector<float> embedding,
             float x = 10) {
  NewFace f;
  f.person = person;
  f.source_path = "/photos/" + file;
  f.image_sha256 = file + "-sha";
  f.detection.box = {x, 20, x + 100, 140};
  f.detection.score = 0.99f;
  for (int i = 0; i < 5; ++i) f.detection.landmarks[i] = {x + 10.0f * i, 60.0f + i};
  f.embedding = std::move(embedding);
  return f;
}

TEST(GalleryTemplate, WeightsUnitEmbeddingsByTheFacesQualities) {
  // Two faces along the axes with magnitudes 30 and 10, their qualities (a MagFace model's):
  // template (30 e1 + 10 e2) / 40.
  const std::vector<std::vector<float>> faces{{30, 0}, {0, 10}};
  const auto magface = gallery::person_template(faces, {30, 10});
  EXPECT_NEAR(magface[0], 0.75, 1e-7);
  EXPECT_NEAR(magface[1], 0.25, 1e-7);
  // Another model's quality (magnitude x sharpness) may rank them the other way.
  const auto sharp = gallery::person_template(faces, {1, 3});
  EXPECT_NEAR(sharp[0], 0.25, 1e-7);
  EXPECT_NEAR(sharp[1], 0.75, 1e-7);
  // Equal qualities: the plain mean of the unit embeddings; so when every quality is 0.
  for (const std::vector<double> q : {std::vector<double>{2, 2}, std::vector<double>{0, 0}}) {
    const auto plain = gallery::person_template(faces, q);
    EXPECT_NEAR(plain[0], 0.5, 1e-7);
    EXPECT_NEAR(plain[1], 0.5, 1e-7);
  }
  // A face of quality 0 beside others counts for nothing.
  EXPECT_NEAR(gallery::person_template(faces, {0, 5})[1], 1.0, 1e-7);
  // A poor face pulls a template less than a good one.
  const std::vector<std::vector<float>> skewed{{3, 4}, {40, -30}};
  const auto t = gallery::person_template(skewed, {5, 50});
  EXPECT_NEAR(t[0], (5 * 0.6 + 50 * 0.8) / 55, 1e-7);
  EXPECT_NEAR(t[1], (5 * 0.8 - 50 * 0.6) / 55, 1e-7);
  EXPECT_THROW(gallery::person_template(faces, {1}), InvalidInput);
}

TEST(GalleryTemplate, IsStoredAndUpdatedOnEveryChange) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(2, true));
  g.enroll({face("ann", "a1.jpg", {30, 0}), face("ann", "a2.jpg", {0, 10})});
  // The template direction (0.75, 0.25): a query along it has cosine 1.
  auto hits = g.search({3, 1}, 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_NEAR(hits[0].template_similarity, 1.0, 1e-6);
  EXPECT_NEAR(hits[0].best_face_similarity, 3 / std::sqrt(10.0), 1e-6);
  EXPECT_EQ(hits[0].faces, 2);
  // Removing the strong face leaves the template on the weak one.
  const auto faces = g.faces("ann");
  g.remove_face(faces[0].id);
  hits = g.search({0, 1}, 1);
  EXPECT_NEAR(hits[0].template_similarity, 1.0, 1e-6);
  EXPECT_EQ(hits[0].faces, 1);
  EXPECT_TRUE(g.check().empty());
  // The last face gone, the person is gone.
  g.remove_face(faces[1].id);
  EXPECT_TRUE(g.persons().empty());
  EXPECT_TRUE(g.search({0, 1}, 3).empty());
}

TEST(GallerySearch, TopKMatchesABruteForceComputation) {
  test::TempDir tmp;
  constexpr int kDim = 64;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(kDim, true));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> magnitude(5, 40);
  std::map<std::string, std::vector<std::vector<float>>> people;
  std::vector<NewFace> batch;
  for (int p = 0; p < 300; ++p) {
    const std::string name = "person" + std::to_string(p);
    const auto identity = random_vector(rng, kDim, 1);
    for (int k = 0; k < 1 + p % 3; ++k) {
      auto e = random_vector(rng, kDim, 0.6f);
      for (int d = 0; d < kDim; ++d) e[d] += identity[d];
      const double scale = magnitude(rng) / norm(e);
      for (auto& x : e) x = float(x * scale);
      people[name].push_back(e);
      batch.push_back(face(name, name + "_" + std::to_string(k) + ".jpg", e));
    }
  }
  const auto result = g.enroll(batch);
  EXPECT_EQ(result.added, static_cast<int>(batch.size()));
  // Independent templates: sum of m_i * (e_i / m_i) / sum of m_i, i.e. sum e_i / sum m_i.
  std::map<std::string, std::vector<double>> templates;
  for (const auto& [name, faces] : people) {
    std::vector<double> sum(kDim, 0.0);
    double weights = 0;
    for (const auto& e : faces) {
      for (int d = 0; d < kDim; ++d) sum[d] += e[d];
      weights += norm(e);
    }
    for (auto& x : sum) x /= weights;
    templates[name] = sum;
  }
  for (int q = 0; q < 20; ++q) {
    const auto query = random_vector(rng, kDim, 1);
    std::vector<std::pair<double, std::string>> expected;
    for (const auto& [name, t] : templates) {
      double d = 0, tn = 0;
      for (int i = 0; i < kDim; ++i) {
        d += t[i] * query[i];
        tn += t[i] * t[i];
      }
      expected.emplace_back(d / std::sqrt(tn) / norm(query), name);
    }
    std::sort(expected.rbegin(), expected.rend());
    const auto hits = g.search(query, 10);
    ASSERT_EQ(hits.size(), 10u);
    for (std::size_t k = 0; k < hits.size(); ++k) {
      EXPECT_NEAR(hits[k].template_similarity, expected[k].first, 1e-5);
      // Names agree except where two people tie within float precision.
      if (k + 1 < hits.size() && expected[k].first - expected[k + 1].first > 1e-5)
        EXPECT_EQ(hits[k].person, expected[k].second);
      // The best single face: the highest cosine among the person's own faces.
      double best = -2;
      for (const auto& e : people[hits[k].person])
        best = std::max(best, dot(e, query) / norm(e) / norm(query));
      EXPECT_NEAR(hits[k].best_face_similarity, best, 1e-5);
    }
  }
}

TEST(GalleryStore, TheSameFaceOfTheSameFileIsStoredOnce) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(2, false));
  EXPECT_EQ(g.enroll({face("ann", "a.jpg", {1, 0})}).added, 1);
  // Same file (SHA-256) and box: counted, not stored, whatever the name or path says.
  auto again = face("bob", "a.jpg", {1, 0});
  again.source_path = "/elsewhere/copy.jpg";
  const auto r = g.enroll({again, face("ann", "a.jpg", {0, 1}, 300)});
  EXPECT_EQ(r.added, 1);  // the second face of a.jpg is a different face
  EXPECT_EQ(r.duplicates, 1);
  // The ids line up with the faces given: none for the one already stored.
  ASSERT_EQ(r.face_ids.size(), 2u);
  EXPECT_FALSE(r.face_ids[0].has_value());
  EXPECT_TRUE(r.face_ids[1].has_value());
  const auto people = g.persons();
  ASSERT_EQ(people.size(), 1u);  // no empty "bob"
  EXPECT_EQ(people[0].faces, 2);
}

TEST(GalleryStore, AFailedBatchStoresNothing) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(2, false));
  g.enroll({face("ann", "a.jpg", {1, 0})});
  EXPECT_THROW(g.enroll({face("bob", "b.jpg", {1, 0}), face("cid", "c.jpg", {1, 0, 0})}),
               InvalidInput);
  ASSERT_EQ(g.persons().size(), 1u);
  EXPECT_EQ(g.faces().size(), 1u);
}

TEST(GalleryStore, RefusesAnotherModelNamingBoth) {
  test::TempDir tmp;
  const auto path = (tmp / "g.db").string();
  Gallery::create(path, toy_model(4, true));
  auto other = toy_model(4, true);
  other.weights_sha256 = std::string(64, 'b');
  try {
    Gallery::open(path, other);
    FAIL() << "opened with other weights";
  } catch (const GalleryError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("sha256 aaaaaaaaaaaa"), std::string::npos) << what;
    EXPECT_NE(what.find("sha256 bbbbbbbbbbbb"), std::string::npos) << what;
    EXPECT_NE(what.find("reembed"), std::string::npos) << what;
  }
  EXPECT_NO_THROW(Gallery::open(path, toy_model(4, true)));
  // A second create does not overwrite it.
  EXPECT_THROW(Gallery::create(path, toy_model(4, true)), GalleryError);
}

TEST(GalleryStore, ErrorsNameTheFileAndWhatIsWrong) {
  test::TempDir tmp;
  const auto text = tmp / "notes.db";
  test::write_file(text, "these are not the rows you are looking for\n");
  try {
    Gallery::open(text.string());
    FAIL();
  } catch (const GalleryError& e) {
    EXPECT_NE(std::string(e.what()).find(text.string() + ": not a facemag gallery"),
              std::string::npos)
        << e.what();
  }
  // An SQLite file of something else.
  const auto other = tmp / "other.db";
  sqlite3* db = nullptr;
  sqlite3_open(other.string().c_str(), &db);
  sqlite3_exec(db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_THROW(Gallery::open(other.string()), GalleryError);
  EXPECT_THROW(Gallery::open((tmp / "missing.db").string()), GalleryError);
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(2, false));
  g.enroll({face("ann", "a.jpg", {1, 0})});
  EXPECT_THROW(g.remove_person("nobody"), GalleryError);
  EXPECT_THROW(g.remove_face(999), GalleryError);
  EXPECT_THROW(g.faces("nobody"), GalleryError);
  EXPECT_THROW(g.rename_person("nobody", "x"), GalleryError);
  g.enroll({face("bob", "b.jpg", {0, 1})});
  EXPECT_THROW(g.rename_person("ann", "bob"), GalleryError);
  EXPECT_THROW(g.search({1, 0, 0}, 1), InvalidInput);
  g.rename_person("ann", "anna");
  EXPECT_EQ(g.search({1, 0}, 1).at(0).person, "anna");
}

// A gallery as facemag's schema version 1 wrote it: no templates table, no change counter.
void write_version1_gallery(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.string().c_str(), &db), SQLITE_OK);
  const char* schema = R"(
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE persons (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE faces (id INTEGER PRIMARY KEY,
      person_id BIGINT NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
      source_path TEXT NOT NULL, image_sha256 TEXT NOT NULL, face_key TEXT NOT NULL,
      box BLOB NOT NULL, landmarks BLOB NOT NULL, score REAL NOT NULL, quality REAL NOT NULL,
      embedding BLOB NOT NULL, enrolled_at TEXT NOT NULL, UNIQUE (image_sha256, face_key));
    CREATE INDEX faces_person ON faces (person_id);
    INSERT INTO meta VALUES ('schema_version', '1'), ('model_name', 'toy-magface'),
      ('architecture', 'iresnet18'), ('embedding_size', '2'), ('weights_sha256', ''),
      ('magnitude_is_quality', '1'), ('same_person_threshold', '0.3'),
      ('quality_threshold', '20'), ('weights_path', ''), ('created_at', '2026-01-01T00:00:00Z');
    INSERT INTO persons VALUES (1, 'ann'), (2, 'bob');)";
  ASSERT_EQ(sqlite3_exec(db, schema, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO faces (person_id, source_path, image_sha256, face_key, box, "
                     "landmarks, score, quality, embedding, enrolled_at) VALUES "
                     "(?, ?, ?, '0,0,1,1', ?, ?, 0.9, ?, ?, '2026-01-01T00:00:00Z')",
                     -1, &insert, nullptr);
  const std::vector<std::tuple<int, std::string, std::vector<float>>> faces{
      {1, "a1", {30, 0}}, {1, "a2", {0, 10}}, {2, "b1", {-5, 5}}};
  const float box[4] = {0, 0, 1, 1};
  const float marks[10] = {};
  for (const auto& [person, name, e] : faces) {
    sqlite3_reset(insert);
    sqlite3_bind_int(insert, 1, person);
    sqlite3_bind_text(insert, 2, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 3, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(insert, 4, box, sizeof box, SQLITE_TRANSIENT);
    sqlite3_bind_blob(insert, 5, marks, sizeof marks, SQLITE_TRANSIENT);
    sqlite3_bind_double(insert, 6, norm(e));
    sqlite3_bind_blob(insert, 7, e.data(), static_cast<int>(e.size() * sizeof(float)),
                      SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE) << sqlite3_errmsg(db);
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
}

TEST(GallerySchema, AVersion1GalleryIsMigratedOnOpen) {
  test::TempDir tmp;
  const auto path = tmp / "v1.db";
  write_version1_gallery(path);
  auto g = Gallery::open(path.string());
  EXPECT_EQ(g.schema_version(), Gallery::kSchemaVersion);
  EXPECT_TRUE(g.check().empty());
  const auto hits = g.search({3, 1}, 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].person, "ann");
  EXPECT_NEAR(hits[0].template_similarity, 1.0, 1e-6);  // (30 e1 + 10 e2) / 40
  EXPECT_EQ(hits[1].person, "bob");
  // Migrated once: the change counter goes on from there, the faces are all kept.
  EXPECT_EQ(g.faces().size(), 3u);
  g.enroll({face("cid", "c.jpg", {1, 1})});
  EXPECT_EQ(Gallery::open(path.string()).persons().size(), 3u);
}

// Templates weigh faces by their stored quality for every model from schema version 5 on. A
// version 4 gallery of a model that is not MagFace-trained weighted its faces equally: opening it
// computes its templates again, by the qualities its faces were stored with (their magnitudes).
TEST(GallerySchema, AVersion4GalleryOfAnotherModelWeighsItsTemplatesByQualityOnOpen) {
  test::TempDir tmp;
  const auto path = tmp / "v4.db";
  {
    auto g = Gallery::create(path.string(), toy_model(2, /*magface=*/false));
    g.enroll({face("ann", "a1.jpg", {30, 0}), face("ann", "a2.jpg", {0, 10}, 200)});
    auto bob = face("bob", "b1.jpg", {-30, 0});
    bob.quality = 1;  // enrolment's measure (magnitude x sharpness), not the magnitude
    auto bob2 = face("bob", "b2.jpg", {0, -10}, 200);
    bob2.quality = 3;
    g.enroll({bob, bob2});
    // Stored qualities weigh: ann (30 e1 + 10 e2) / 40, bob (1 (-e1) + 3 (-e2)) / 4.
    EXPECT_NEAR(g.search({3, 1}, 1)[0].template_similarity, 1.0, 1e-6);
    EXPECT_NEAR(g.search({-1, -3}, 1)[0].template_similarity, 1.0, 1e-6);
  }
  // As version 4 left it: ann's template the plain mean of her unit embeddings.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.string().c_str(), &db), SQLITE_OK);
  const float plain[] = {0.5f, 0.5f};
  sqlite3_stmt* update = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "UPDATE templates SET vector = ? WHERE person_id = (SELECT id FROM "
                               "persons WHERE name = 'ann')",
                               -1, &update, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(update, 1, plain, sizeof plain, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(update), SQLITE_DONE);
  sqlite3_finalize(update);
  // An hnsw index saved then holds that template, at the store's generation (v4.db.index).
  EXPECT_FALSE(Gallery::open(path.string(), std::nullopt, gallery::IndexKind::kHnsw)
                   .index_status()
                   .from_saved_file);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '4' WHERE key = 'schema_version'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  // Opened with an hnsw index saved before the migration (at the generation it found): the
  // migrated templates reach it through the log.
  auto g = Gallery::open(path.string(), std::nullopt, gallery::IndexKind::kHnsw);
  EXPECT_TRUE(g.index_status().from_saved_file);
  EXPECT_EQ(g.schema_version(), Gallery::kSchemaVersion);
  EXPECT_TRUE(g.check().empty());
  EXPECT_NEAR(g.search({3, 1}, 1)[0].template_similarity, 1.0, 1e-6);
  EXPECT_NEAR(g.search({-1, -3}, 1)[0].template_similarity, 1.0, 1e-6);
  const auto faces = g.faces("bob");
  ASSERT_EQ(faces.size(), 2u);
  EXPECT_FLOAT_EQ(faces[0].quality + faces[1].quality, 4.0f);  // as enrolment gave them
}

TEST(GallerySchema, ANewerSchemaIsRefused) {
  test::TempDir tmp;
  const auto path = tmp / "g.db";
  Gallery::create(path.string(), toy_model(2, false));
  sqlite3* db = nullptr;
  sqlite3_open(path.string().c_str(), &db);
  sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr, nullptr,
               nullptr);
  sqlite3_close(db);
  try {
    Gallery::open(path.string());
    FAIL();
  } catch (const GalleryError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99 is newer"), std::string::npos);
  }
}

TEST(GalleryCheck, FindsARowThatDoesNotDecodeAndAStaleTemplate) {
  test::TempDir tmp;
  const auto path = tmp / "g.db";
  {
    auto g = Gallery::create(path.string(), toy_model(2, true));
    g.enroll({face("ann", "a.jpg", {1, 0}), face("bob", "b.jpg", {0, 1})});
    EXPECT_TRUE(g.check().empty());
  }
  sqlite3* db = nullptr;
  sqlite3_open(path.string().c_str(), &db);
  sqlite3_exec(db, "UPDATE faces SET embedding = x'0000' WHERE source_path LIKE '%a.jpg'", nullptr,
               nullptr, nullptr);
  sqlite3_exec(db, "UPDATE templates SET vector = x'0000803f0000803f' WHERE person_id = 2", nullptr,
               nullptr, nullptr);
  sqlite3_close(db);
  const auto problems = Gallery::open(path.string()).check();
  ASSERT_EQ(problems.size(), 3u) << ::testing::PrintToString(problems);
  EXPECT_NE(problems[0].find("embedding of 2 bytes, expected 8"), std::string::npos);
  EXPECT_NE(problems[1].find("person 'ann': no faces"), std::string::npos);
  EXPECT_NE(problems[2].find("person 'bob': stored template differs"), std::string::npos);
}

TEST(PersonIndex, IvfAndHnswFindTheExactNeighboursOfASmallGallery) {
  std::mt19937 rng(3);
  constexpr int kDim = 32, kRows = 2000;
  std::vector<float> data;
  std::vector<std::int64_t> ids;
  for (int r = 0; r < kRows; ++r) {
    const auto v = random_vector(rng, kDim, 1);
    data.insert(data.end(), v.begin(), v.end());
    ids.push_back(1000 + 3 * r);  // ids are the caller's, not rows
  }
  gallery::PersonIndex exact, ivf, hnsw, automatic;
  exact.build(ids, data, kDim, gallery::IndexKind::kExact);
  ivf.build(ids, data, kDim, gallery::IndexKind::kIvf);
  hnsw.build(ids, data, kDim, gallery::IndexKind::kHnsw);
  automatic.build(ids, data, kDim, gallery::IndexKind::kAuto);
  EXPECT_EQ(automatic.kind(), gallery::IndexKind::kExact);  // 2000 <= kExactUpTo
  EXPECT_EQ(gallery::resolve_index_kind(gallery::IndexKind::kAuto, gallery::kExactUpTo + 1),
            gallery::IndexKind::kHnsw);
  // A stored vector, scaled, finds itself first with cosine 1.
  std::vector<float> q(data.begin() + 5 * kDim, data.begin() + 6 * kDim);
  for (auto& x : q) x *= 7;
  for (const auto* index : {&exact, &ivf, &hnsw}) {
    const auto hits = index->search(q, 3);
    ASSERT_EQ(hits.size(), 3u);
    EXPECT_EQ(hits[0].id, ids[5]);
    EXPECT_NEAR(hits[0].cosine, 1.0, 1e-5);
    EXPECT_GE(hits[0].cosine, hits[1].cosine);
  }
  EXPECT_EQ(exact.search(q, 5000).size(), std::size_t(kRows));
  EXPECT_THROW(exact.search(std::vector<float>(3), 1), InvalidInput);
  EXPECT_THROW(exact.build(std::vector<std::int64_t>{1, 1}, std::vector<float>(2 * kDim, 1.f), kDim,
                           gallery::IndexKind::kExact),
               InvalidInput);
  gallery::PersonIndex empty;
  empty.build({}, {}, kDim, gallery::IndexKind::kIvf);
  EXPECT_TRUE(empty.search(q, 3).empty());
  EXPECT_EQ(gallery::parse_index_kind("auto"), gallery::IndexKind::kAuto);
  EXPECT_THROW(gallery::parse_index_kind("flat"), InvalidInput);
}

// A build given a stop flag: unset, an hnsw graph of several chunks is built and searched as
// usual; set (a gallery closing while it rebuilds), the build stops and the index keeps what it
// had.
TEST(PersonIndex, ABuildStopsWhenToldAndLeavesTheIndexAsItWas) {
  std::mt19937 rng(5);
  constexpr int kDim = 8;
  const auto rows = static_cast<int>(2 * gallery::PersonIndex::kBuildChunk + 7);
  std::vector<float> data;
  std::vector<std::int64_t> ids;
  for (int r = 0; r < rows; ++r) {
    const auto v = random_vector(rng, kDim, 1);
    data.insert(data.end(), v.begin(), v.end());
    ids.push_back(r);
  }
  std::atomic<bool> stop{false};
  gallery::PersonIndex hnsw;
  hnsw.build(ids, data, kDim, gallery::IndexKind::kHnsw, &stop);
  ASSERT_EQ(hnsw.size(), std::size_t(rows));
  for (const int r : {0, rows / 2, rows - 1}) {  // one row of each chunk finds itself
    const std::vector<float> q(data.begin() + r * kDim, data.begin() + (r + 1) * kDim);
    EXPECT_EQ(hnsw.search(q, 1).at(0).id, r);
  }
  stop = true;
  for (const auto kind :
       {gallery::IndexKind::kHnsw, gallery::IndexKind::kExact, gallery::IndexKind::kIvf}) {
    EXPECT_THROW(
        hnsw.build(std::span(ids).first(10),
                   std::vector<float>(data.begin(), data.begin() + 10 * kDim), kDim, kind, &stop),
        gallery::IndexBuildStopped);
    EXPECT_EQ(hnsw.size(), std::size_t(rows));
    EXPECT_EQ(hnsw.kind(), gallery::IndexKind::kHnsw);
  }
}

// Random upserts and removals: each kind holds exactly the ids a map holds, never returns a
// removed id, finds every live vector first by itself, and the exact kind's scores equal a
// brute-force scan of the map.
TEST(PersonIndex, UpsertsAndRemovalsLeaveWhatARebuildHolds) {
  std::mt19937 rng(17);
  constexpr int kDim = 16, kStart = 600, kSteps = 1500;
  for (const auto kind :
       {gallery::IndexKind::kExact, gallery::IndexKind::kIvf, gallery::IndexKind::kHnsw}) {
    std::map<std::int64_t, std::vector<float>> truth;
    std::vector<std::int64_t> ids;
    std::vector<float> data;
    for (int r = 0; r < kStart; ++r) {
      truth[r] = random_vector(rng, kDim, 2);
      ids.push_back(r);
      data.insert(data.end(), truth[r].begin(), truth[r].end());
    }
    gallery::PersonIndex index;
    index.build(ids, data, kDim, kind);
    std::uniform_int_distribution<std::int64_t> pick(0, 2 * kStart);
    for (int step = 0; step < kSteps; ++step) {
      const auto id = pick(rng);
      if (rng() % 3 == 0) {
        index.remove(id);
        truth.erase(id);
      } else {
        truth[id] = random_vector(rng, kDim, 2);
        index.upsert(id, truth[id]);
      }
    }
    ASSERT_EQ(index.size(), truth.size()) << gallery::index_kind_name(kind);
    std::size_t first = 0;
    for (const auto& [id, v] : truth) {
      ASSERT_TRUE(index.contains(id));
      const auto hits = index.search(v, 5);
      ASSERT_FALSE(hits.empty());
      first += hits[0].id == id;
      for (const auto& h : hits) ASSERT_TRUE(truth.count(h.id)) << "removed id " << h.id;
    }
    EXPECT_EQ(first, truth.size()) << gallery::index_kind_name(kind);
    if (kind == gallery::IndexKind::kExact) {
      const auto q = random_vector(rng, kDim, 1);
      const auto all = index.search(q, static_cast<int>(truth.size()));
      ASSERT_EQ(all.size(), truth.size());
      for (const auto& h : all)
        EXPECT_NEAR(h.cosine, dot(truth[h.id], q) / (norm(truth[h.id]) * norm(q)), 1e-5);
    }
  }
}

// 100k random 512-d people. Face embeddings vary along far fewer directions than 512 (a few
// dozen), so the people here are random points of a random 32-d subspace of the 512-d space, and
// probes are enrolled people moved within it. (Isotropic 512-d noise has no neighbourhood
// structure for any graph index to use: there, faiss HNSW finds 78 % of the top 10 at efSearch
// 1024, slower than the exact scan; see the gallery section of the README.)
TEST(PersonIndexOnWholeDatasets, HnswRecallAt10IsAtLeast099AgainstExactOn100kPeople) {
  std::mt19937 rng(11);
  constexpr int kDim = 512, kIntrinsic = 32, kRows = 100000, kQueries = 200;
  std::normal_distribution<float> normal;
  std::vector<float> basis(std::size_t(kDim) * kIntrinsic);
  for (auto& x : basis) x = normal(rng);
  const auto embed = [&](const std::vector<float>& z, float* out) {
    for (int d = 0; d < kDim; ++d) {
      float s = 0;
      for (int j = 0; j < kIntrinsic; ++j) s += basis[std::size_t(d) * kIntrinsic + j] * z[j];
      out[d] = s;
    }
  };
  std::vector<std::vector<float>> latent(kRows, std::vector<float>(kIntrinsic));
  std::vector<float> data(std::size_t(kRows) * kDim);
  for (int r = 0; r < kRows; ++r) {
    for (auto& x : latent[r]) x = normal(rng);
    embed(latent[r], &data[std::size_t(r) * kDim]);
  }
  std::vector<std::int64_t> ids(kRows);
  std::iota(ids.begin(), ids.end(), 0);
  gallery::PersonIndex exact, hnsw;
  exact.build(ids, data, kDim, gallery::IndexKind::kExact);
  hnsw.build(ids, data, kDim, gallery::IndexKind::kHnsw);
  std::size_t found = 0;
  std::vector<float> query(kDim);
  for (int q = 0; q < kQueries; ++q) {
    auto z = latent[std::size_t(q) * 487];
    for (auto& x : z) x += 0.5f * normal(rng);
    embed(z, query.data());
    std::set<std::int64_t> truth;
    for (const auto& n : exact.search(query, 10)) truth.insert(n.id);
    ASSERT_EQ(truth.size(), 10u);
    for (const auto& n : hnsw.search(query, 10)) found += truth.count(n.id);
  }
  const double recall = double(found) / (10.0 * kQueries);
  EXPECT_GE(recall, 0.99);
  std::printf("HNSW recall@10 on 100k 512-d people: %.4f\n", recall);
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

TEST(GalleryEvaluate, RanksProbesAndGatesThemByQuality) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(3, true));  // gate: 20
  g.enroll({face("ann", "a.jpg", {30, 0, 0}), face("bob", "b.jpg", {0, 30, 0})});
  // Probes from a feature matrix: names from the labels, quality the rows' L2 norms.
  eval::LabelledFeatures features;
  features.features =
      torch::tensor(std::vector<float>{30, 1, 0, 1, 25, 0, 8, 6, 0, 0, 0, 40}).reshape({4, 3});
  features.labels.names = {"ann", "bob", "cid"};
  features.labels.identity = {0, 1, 1, 2};
  const auto probes = gallery::probes_from_features(features);
  ASSERT_EQ(probes.size(), 4u);
  EXPECT_EQ(probes[2].person, "bob");
  EXPECT_NEAR(probes[2].quality, 10.0, 1e-6);
  EXPECT_EQ(probes[1].embedding, (std::vector<float>{1, 25, 0}));

  const auto e = gallery::evaluate_identification(g, probes, {});
  EXPECT_EQ(e.probes, 4u);
  EXPECT_EQ(e.enrolled_people, 2u);
  EXPECT_DOUBLE_EQ(e.quality_gate, 20.0);
  EXPECT_EQ(e.all.mated, 3u);
  EXPECT_EQ(e.all.non_mated, 1u);
  // The poor bob probe (8, 6, 0) lies nearer ann: rank 2 of 2.
  EXPECT_NEAR(e.all.cmc[0], 2.0 / 3, 1e-9);
  EXPECT_NEAR(e.all.cmc[1], 1.0, 1e-9);
  // The gate (20) sets it aside: every mated probe kept is found first.
  EXPECT_EQ(e.kept, 3u);
  ASSERT_TRUE(e.gated.has_value());
  EXPECT_EQ(e.gated->mated, 2u);
  EXPECT_NEAR(e.gated->cmc[0], 1.0, 1e-9);

  // A reject rate sets the gate instead; a model without a quality has none.
  gallery::IdentificationEvalOptions rate;
  rate.reject_rate = 0.25;
  EXPECT_NEAR(gallery::evaluate_identification(g, probes, rate).quality_gate, std::sqrt(626.0),
              1e-5);
  auto plain = Gallery::create((tmp / "p.db").string(), toy_model(3, false));
  plain.enroll({face("ann", "a.jpg", {30, 0, 0})});
  const auto none = gallery::evaluate_identification(plain, probes, {});
  EXPECT_EQ(none.quality_gate, 0);
  EXPECT_FALSE(none.gated.has_value());
  EXPECT_EQ(none.kept, 4u);
}

}  // namespace
}  // namespace facemag
