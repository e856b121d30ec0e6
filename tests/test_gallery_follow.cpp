// Open galleries follow the store's change log: two handles on one store (as two processes hold
// it, each with its own connection) change it at random, and each one's index, after following
// the log, answers exactly as a gallery opened afresh; a handle that was away for many
// generations catches up without reading everything again; one the log no longer reaches reads
// everything again. On SQLite and on a PostgreSQL server of the test's own.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "facemag/gallery/gallery.hpp"
#include "gallery_downgrade.hpp"
#include "postgres_server.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using gallery::Gallery;

constexpr int kDim = 8;

gallery::ModelBinding toy_model() {
  gallery::ModelBinding m;
  m.model_name = "toy";
  m.architecture = "iresnet18";
  m.embedding_size = kDim;
  m.weights_sha256 = std::string(64, 'b');
  return m;
}

gallery::NewFace new_face(const std::string& person, int photo, std::vector<float> embedding) {
  gallery::NewFace f;
  f.person = person;
  f.source_path = "/photos/" + std::to_string(photo) + ".jpg";
  f.image_sha256 = "sha-" + std::to_string(photo);
  f.detection.box = {10, 20, 110, 140};
  f.embedding = std::move(embedding);
  return f;
}

class RandomChanges {
 public:
  explicit RandomChanges(unsigned seed) : rng_(seed) {}

  std::vector<float> vector() {
    std::normal_distribution<float> normal;
    std::vector<float> v(kDim);
    for (auto& x : v) x = normal(rng_);
    return v;
  }

  // One random change through `g`: enrol, remove a face or a person, rename, merge or split.
  void apply(Gallery& g) {
    const auto people = g.persons();
    const auto choice = people.size() < 3 ? 0 : rng_() % 6;
    const auto someone = [&] { return people[rng_() % people.size()].name; };
    switch (choice) {
      case 0:
      case 1: {
        const auto person = "p" + std::to_string(rng_() % 12);
        g.enroll({new_face(person, next_photo_++, vector())});
        break;
      }
      case 2: {
        const auto faces = g.faces(someone());
        g.remove_face(faces[rng_() % faces.size()].id);
        break;
      }
      case 3:
        g.remove_person(someone());
        break;
      case 4:
        g.rename_person(someone(), "renamed-" + std::to_string(next_photo_++));
        break;
      case 5: {
        const auto into = someone(), from = someone();
        if (into == from) {
          const auto faces = g.faces(into);
          if (faces.size() > 1) g.split_person(into, {faces.front().id});
        } else {
          g.merge_persons(into, from);
        }
        break;
      }
    }
  }

 private:
  std::mt19937 rng_;
  int next_photo_ = 0;
};

// Every person a query reaches, in order, with everything search reports: equal on `a` and `b`.
void expect_same_answers(const Gallery& a, const Gallery& b, const std::vector<float>& query,
                         const std::string& when) {
  const auto x = a.search(query, 1000), y = b.search(query, 1000);
  ASSERT_EQ(x.size(), y.size()) << when;
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].person, y[i].person) << when;
    EXPECT_NEAR(x[i].template_similarity, y[i].template_similarity, 1e-6) << when;
    EXPECT_EQ(x[i].faces, y[i].faces) << when;
    EXPECT_EQ(x[i].proposed, y[i].proposed) << when;
    EXPECT_EQ(x[i].best_face_id, y[i].best_face_id) << when;
  }
}

void two_handles_follow_each_other(const std::string& location) {
  auto a = Gallery::create(location, toy_model());
  auto b = Gallery::open(location);
  RandomChanges changes(7);
  for (int step = 0; step < 120; ++step) {
    changes.apply(step % 2 ? a : b);
    const auto fresh = Gallery::open(location);
    const auto query = changes.vector();
    const auto when = "after change " + std::to_string(step);
    expect_same_answers(a, fresh, query, when);
    expect_same_answers(b, fresh, query, when);
    if (::testing::Test::HasFailure()) return;
  }
  // Neither handle read every template again after its first search.
  for (const auto* g : {&a, &b}) {
    const auto status = g->index_status();
    EXPECT_EQ(status.full_loads, 1u);
    EXPECT_GT(status.people_followed, 60u);
    EXPECT_EQ(status.generation, g->generation());
    EXPECT_EQ(status.people, g->persons().size());
  }
  // A handle away for many generations catches up from the log.
  const auto away = Gallery::open(location);
  EXPECT_EQ(away.index_status().full_loads, 1u);
  for (int step = 0; step < 80; ++step) changes.apply(a);
  expect_same_answers(away, Gallery::open(location), changes.vector(), "after 80 changes away");
  EXPECT_EQ(away.index_status().full_loads, 1u);
  EXPECT_TRUE(a.check().empty());
}

TEST(GalleryFollow, SqliteHandlesFollowEachOther) {
  test::TempDir tmp;
  const auto path = (tmp / "g.db").string();
  two_handles_follow_each_other(path);
  // A handle further behind than the log reaches reads every template again.
  const auto behind = Gallery::open(path);
  EXPECT_EQ(behind.index_status().full_loads, 1u);
  auto writer = Gallery::open(path);
  RandomChanges more(9);
  more.apply(writer);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE state SET log_from = generation", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  expect_same_answers(behind, Gallery::open(path), more.vector(), "past the log");
  EXPECT_EQ(behind.index_status().full_loads, 2u);
}

TEST(GalleryFollow, PostgresHandlesFollowEachOther) {
  test::TempDir tmp;
  const test::PostgresServer server(tmp / "pg");
  FACEMAG_REQUIRE_POSTGRES(server);
  two_handles_follow_each_other(server.url());
}

// The log is pruned every 1024 generations to the last kLogKept (here 100, through meta
// 'log_kept'): a handle that saw a generation the log still reaches follows it; one further
// behind reads every template again; both then answer as a fresh gallery.
TEST(GalleryFollow, APrunedLogIsFollowedWhereItReachesAndReadAgainWhereNot) {
  test::TempDir tmp;
  const auto path = (tmp / "g.db").string();
  auto writer = Gallery::create(path, toy_model());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO meta (key, value) VALUES ('log_kept', '100')", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  RandomChanges changes(8);
  const auto far_behind = Gallery::open(path), close_behind = Gallery::open(path);
  far_behind.index_status();
  while (writer.generation() < 1000) changes.apply(writer);
  close_behind.index_status();  // at generation 1000: the log will keep 924 on
  while (writer.generation() < 1030) changes.apply(writer);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(
      sqlite3_prepare_v2(db, "SELECT log_from, (SELECT MIN(generation) FROM changes) FROM state",
                         -1, &stmt, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), 1024 - 100);
  EXPECT_GT(sqlite3_column_int64(stmt, 1), 1024 - 100);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  const auto fresh = Gallery::open(path);
  expect_same_answers(far_behind, fresh, changes.vector(), "behind the log");
  expect_same_answers(close_behind, fresh, changes.vector(), "within the log");
  EXPECT_EQ(far_behind.index_status().full_loads, 2u);
  EXPECT_EQ(close_behind.index_status().full_loads, 1u);
}

// A gallery of schema version 3 (made before the change log) gets the log on opening, and
// follows changes from then on.
TEST(GalleryFollow, AnOlderGalleryGetsTheLogWhenOpened) {
  test::TempDir tmp;
  const auto path = (tmp / "g.db").string();
  {
    auto g = Gallery::create(path, toy_model());
    RandomChanges changes(3);
    for (int i = 0; i < 10; ++i) changes.apply(g);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, test::kGalleryVersion4To3, nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto a = Gallery::open(path);
  auto b = Gallery::open(path);
  EXPECT_EQ(a.schema_version(), Gallery::kSchemaVersion);
  RandomChanges changes(4);
  for (int i = 0; i < 20; ++i) {
    changes.apply(a);
    expect_same_answers(b, Gallery::open(path), changes.vector(), "after migration");
  }
  EXPECT_EQ(b.index_status().full_loads, 1u);
}

// An hnsw index is saved next to a SQLite gallery and read back at the next open, which then
// follows only the changes made since; the saved index of another gallery, or a file cut short,
// is not used (the index is built from the templates instead).
TEST(GalleryFollow, ASavedHnswIndexIsReadBackWhenItIsThisGallerys) {
  test::TempDir tmp;
  const auto path = (tmp / "g.db").string();
  RandomChanges changes(5);
  {
    auto g = Gallery::create(path, toy_model());
    for (int i = 0; i < 40; ++i) changes.apply(g);
    const auto status = Gallery::open(path, std::nullopt, gallery::IndexKind::kHnsw).index_status();
    EXPECT_EQ(status.kind, gallery::IndexKind::kHnsw);
    EXPECT_FALSE(status.from_saved_file);
  }
  ASSERT_TRUE(std::filesystem::exists(path + ".index"));
  {
    auto writer = Gallery::open(path);  // auto: exact at this size, saves nothing
    for (int i = 0; i < 10; ++i) changes.apply(writer);
  }
  const auto reopened = Gallery::open(path, std::nullopt, gallery::IndexKind::kHnsw);
  expect_same_answers(reopened, Gallery::open(path), changes.vector(), "from the saved index");
  const auto status = reopened.index_status();
  EXPECT_TRUE(status.from_saved_file);
  EXPECT_GT(status.people_followed, 0u);

  const auto other = (tmp / "other.db").string();
  {
    // Further on than the saved index: only the gallery's uid tells that index is not its own.
    auto g = Gallery::create(other, toy_model());
    for (int i = 0; i < 80; ++i) changes.apply(g);
  }
  std::filesystem::copy_file(path + ".index", other + ".index");
  const auto foreign = Gallery::open(other, std::nullopt, gallery::IndexKind::kHnsw);
  expect_same_answers(foreign, Gallery::open(other), changes.vector(), "another's index");
  EXPECT_FALSE(foreign.index_status().from_saved_file);

  std::filesystem::resize_file(path + ".index", std::filesystem::file_size(path + ".index") / 2);
  const auto cut = Gallery::open(path, std::nullopt, gallery::IndexKind::kHnsw);
  expect_same_answers(cut, Gallery::open(path), changes.vector(), "a cut index file");
  EXPECT_FALSE(cut.index_status().from_saved_file);
}

// Replacing templates leaves tombstones in an hnsw graph; past a quarter of the live rows the
// index is built again on a thread of its own while searches go on, then swapped in.
TEST(GalleryFollow, AnHnswIndexFullOfTombstonesIsRebuiltOffTheRequestPath) {
  test::TempDir tmp;
  const auto path = (tmp / "g.db").string();
  RandomChanges changes(6);
  auto writer = Gallery::create(path, toy_model());
  for (int p = 0; p < 40; ++p)
    writer.enroll({new_face("p" + std::to_string(p), p, changes.vector())});
  const auto searcher =
      Gallery::open(path, std::nullopt, gallery::IndexKind::kHnsw, (tmp / "saved.index").string());
  EXPECT_EQ(searcher.index_status().people, 40u);
  // A second face for everyone: 40 templates replaced, 40 tombstones.
  for (int p = 0; p < 40; ++p)
    writer.enroll({new_face("p" + std::to_string(p), 100 + p, changes.vector())});
  const auto fresh = Gallery::open(path);
  expect_same_answers(searcher, fresh, changes.vector(), "while rebuilding");
  for (int wait = 0; wait < 3000 && searcher.index_status().rebuilds == 0; ++wait)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto status = searcher.index_status();
  EXPECT_EQ(status.rebuilds, 1u);
  EXPECT_FALSE(status.rebuilding);
  EXPECT_EQ(status.full_loads, 1u);
  expect_same_answers(searcher, fresh, changes.vector(), "after the rebuild");
}

}  // namespace
}  // namespace facemag
