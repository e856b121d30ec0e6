// New photos joining known people (gallery/assign.hpp): assignment by the gallery's rule,
// unassigned faces grouped into proposed people, stable "unnamed-N" names, the quality gate, merge
// / split / rename / recluster, the schema migration, bad input; on PostgreSQL too; and the proof
// on real faces: lfw-half's photos join their own person or wait, and every proposed person is one
// person.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <thread>

#include "facemag/gallery/assign.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/json.hpp"
#include "facemag/io/npy.hpp"
#include "gallery_downgrade.hpp"
#include "postgres_server.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using gallery::AssignOptions;
using gallery::AssignStatus;
using gallery::FaceToAssign;
using gallery::Gallery;
using gallery::GalleryError;
using gallery::ModelBinding;
using gallery::NewFace;
using nlohmann::json;

constexpr int kDim = 8;

// A toy model: 8-d, match at cosine 0.3, proposed people grouped at average cosine 0.5; for
// MagFace a quality gate at magnitude 20.
ModelBinding toy_model(bool magface = false) {
  ModelBinding m;
  m.model_name = magface ? "toy-magface" : "toy";
  m.architecture = "iresnet18";
  m.embedding_size = kDim;
  m.weights_sha256 = std::string(64, 'a');
  m.magnitude_is_quality = magface;
  m.same_person_threshold = 0.3;
  m.quality_threshold = magface ? 20 : 0;
  m.cluster_threshold = 0.5;
  return m;
}

// scale * (e_axis + sum of (offset axis, weight)).
std::vector<float> vec(int axis, std::vector<std::pair<int, float>> offsets = {},
                       float scale = 30) {
  std::vector<float> v(kDim, 0.0f);
  v[static_cast<std::size_t>(axis)] = 1;
  for (const auto& [a, w] : offsets) v[static_cast<std::size_t>(a)] += w;
  for (auto& x : v) x *= scale;
  return v;
}

NewFace new_face(const std::string& person, const std::string& file, std::vector<float> e) {
  NewFace f;
  f.person = person;
  f.source_path = "/photos/" + file;
  f.image_sha256 = file + "-sha";
  f.detection.box = {10, 20, 110, 140};
  f.detection.score = 0.99f;
  for (int i = 0; i < 5; ++i) f.detection.landmarks[i] = {10.0f + 10 * i, 60.0f + i};
  f.embedding = std::move(e);
  return f;
}

FaceToAssign to_assign(const std::string& file, std::vector<float> e) {
  return {file, 0, new_face("", file, std::move(e))};
}

std::map<std::string, gallery::PersonSummary> persons_of(const Gallery& g) {
  std::map<std::string, gallery::PersonSummary> out;
  for (const auto& p : g.persons()) out[p.name] = p;
  return out;
}

std::vector<std::int64_t> face_ids(const Gallery& g, const std::string& person) {
  std::vector<std::int64_t> out;
  for (const auto& f : g.faces(person)) out.push_back(f.id);
  return out;
}

TEST(GalleryAssign, AMatchJoinsItsPersonAndFacesOfNobodyAreProposedTogether) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model());
  g.enroll({new_face("ann", "ann0.jpg", vec(0))});
  const auto done = gallery::assign_faces(
      g,
      {to_assign("a.jpg", vec(0, {{3, 0.2f}})), to_assign("b1.jpg", vec(1, {{4, 0.1f}})),
       to_assign("b2.jpg", vec(1, {{4, -0.1f}})), to_assign("c.jpg", vec(2))},
      {});
  ASSERT_EQ(done.faces.size(), 4u);
  EXPECT_EQ(done.faces[0].status, AssignStatus::kKnown);
  EXPECT_EQ(done.faces[0].person, "ann");
  EXPECT_NEAR(*done.faces[0].similarity, 1 / std::sqrt(1.04), 1e-5);  // the decision's cosine
  for (const int i : {1, 2}) {
    EXPECT_EQ(done.faces[i].status, AssignStatus::kProposed);
    EXPECT_EQ(done.faces[i].person, "unnamed-1");
    EXPECT_TRUE(done.faces[i].grouped);
    EXPECT_NEAR(*done.faces[i].similarity, 1 / std::sqrt(1.01), 1e-5);  // to the new template
  }
  EXPECT_EQ(done.faces[3].status, AssignStatus::kUnassigned);
  EXPECT_EQ(done.faces[3].nearest, "ann");
  EXPECT_NEAR(*done.faces[3].similarity, 0, 1e-6);
  ASSERT_EQ(done.proposed.size(), 1u);
  EXPECT_EQ(done.proposed[0].faces.size(), 2u);

  auto people = persons_of(g);
  ASSERT_EQ(people.size(), 2u);
  EXPECT_FALSE(people["ann"].proposed);
  EXPECT_EQ(people["ann"].faces, 2);
  EXPECT_TRUE(people["unnamed-1"].proposed);
  EXPECT_EQ(people["unnamed-1"].faces, 2);
  ASSERT_EQ(g.unassigned().size(), 1u);
  EXPECT_EQ(g.unassigned()[0].source_path, "/photos/c.jpg");
  EXPECT_EQ(g.unassigned()[0].id, done.faces[3].id);
  // Proposed people take part in search, flagged.
  const auto hits = g.search(vec(1), 2);
  EXPECT_EQ(hits[0].person, "unnamed-1");
  EXPECT_TRUE(hits[0].proposed);
  EXPECT_FALSE(hits[1].proposed);

  // Next batch: a face of unnamed-1 joins it by the match rule; a second face like c groups with
  // the older unassigned c into unnamed-2.
  const auto next = gallery::assign_faces(
      g, {to_assign("b3.jpg", vec(1, {{5, 0.1f}})), to_assign("c2.jpg", vec(2, {{6, 0.1f}}))}, {});
  EXPECT_EQ(next.faces[0].status, AssignStatus::kProposed);
  EXPECT_EQ(next.faces[0].person, "unnamed-1");
  EXPECT_FALSE(next.faces[0].grouped);
  EXPECT_EQ(next.faces[1].person, "unnamed-2");
  ASSERT_EQ(next.proposed.size(), 1u);
  ASSERT_EQ(next.proposed[0].faces.size(), 2u);
  EXPECT_EQ(next.proposed[0].faces[0].unassigned_id, done.faces[3].id);  // the older face
  EXPECT_TRUE(g.unassigned().empty());
  EXPECT_EQ(persons_of(g)["unnamed-1"].faces, 3);
  EXPECT_TRUE(g.check().empty());

  // The JSON record of each kind.
  const auto known = gallery::to_json(done.faces[0]);
  EXPECT_EQ(known["status"], "known");
  EXPECT_EQ(known["person"], "ann");
  EXPECT_TRUE(known.contains("face_id"));
  EXPECT_EQ(known["already_stored"], false);
  const auto waiting = gallery::to_json(done.faces[3]);
  EXPECT_EQ(waiting["status"], "unassigned");
  EXPECT_TRUE(waiting["person"].is_null());
  EXPECT_EQ(waiting["nearest"], "ann");
  EXPECT_TRUE(waiting.contains("unassigned_id"));
  EXPECT_EQ(gallery::to_json(done.faces[1])["grouped"], true);
}

TEST(GalleryAssign, NamesAreNumberedByTheStoreNeverReusedAndTheSameForTheSameInput) {
  test::TempDir tmp;
  const std::vector<FaceToAssign> batch{to_assign("x1.jpg", vec(1)), to_assign("y1.jpg", vec(2)),
                                        to_assign("x2.jpg", vec(1, {{4, 0.1f}})),
                                        to_assign("y2.jpg", vec(2, {{4, 0.1f}}))};
  std::vector<std::vector<std::string>> names;
  for (const char* db : {"a.db", "b.db"}) {
    auto g = Gallery::create((tmp / db).string(), toy_model());
    std::vector<std::string> got;
    for (const auto& f : gallery::assign_faces(g, batch, {}).faces) got.push_back(f.person);
    names.push_back(got);
  }
  // Groups numbered by their oldest face: x's group first.
  EXPECT_EQ(names[0],
            (std::vector<std::string>{"unnamed-1", "unnamed-2", "unnamed-1", "unnamed-2"}));
  EXPECT_EQ(names[0], names[1]);

  auto g = Gallery::open((tmp / "a.db").string());
  g.remove_person("unnamed-2");
  g.enroll({new_face("unnamed-4", "z.jpg", vec(7))});  // a user's own name, in the way
  auto more = gallery::assign_faces(
      g, {to_assign("w1.jpg", vec(3)), to_assign("w2.jpg", vec(3, {{4, 0.1f}}))}, {});
  EXPECT_EQ(more.faces[0].person, "unnamed-3");  // 2 is not given again
  more = gallery::assign_faces(
      g, {to_assign("v1.jpg", vec(5)), to_assign("v2.jpg", vec(5, {{4, 0.1f}}))}, {});
  EXPECT_EQ(more.faces[0].person, "unnamed-5");  // 4 is taken
  EXPECT_FALSE(persons_of(g)["unnamed-4"].proposed);
}

TEST(GalleryAssign, APoorFaceIsNeverMatchedAndNeverSeedsAPerson) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model(/*magface=*/true));
  g.enroll({new_face("ann", "ann0.jpg", vec(0))});
  // Magnitude 10 is below the gate of 20: near ann, and two alike, yet nobody's and no group.
  const auto poor = gallery::assign_faces(
      g,
      {to_assign("p0.jpg", vec(0, {}, 10)), to_assign("p1.jpg", vec(1, {}, 10)),
       to_assign("p2.jpg", vec(1, {{4, 0.1f}}, 10))},
      {});
  for (const auto& f : poor.faces) {
    EXPECT_EQ(f.status, AssignStatus::kTooPoor);
    EXPECT_NE(f.why.find("below 20"), std::string::npos) << f.why;
  }
  EXPECT_TRUE(poor.proposed.empty());
  // A good face like the poor pair stays alone: poor faces are not grouped with it.
  const auto good = gallery::assign_faces(g, {to_assign("g1.jpg", vec(1, {{5, 0.1f}}))}, {});
  EXPECT_EQ(good.faces[0].status, AssignStatus::kUnassigned);
  EXPECT_TRUE(good.proposed.empty());
  EXPECT_EQ(persons_of(g).size(), 1u);
  const auto waiting = g.unassigned();
  ASSERT_EQ(waiting.size(), 4u);
  EXPECT_EQ(std::count_if(waiting.begin(), waiting.end(), [](const auto& f) { return f.too_poor; }),
            3);
  // Regrouping applies the same gate.
  const auto regrouped = gallery::recluster(g, {});
  EXPECT_TRUE(regrouped.people.empty());
  EXPECT_EQ(regrouped.unassigned, 4u);
  EXPECT_EQ(gallery::to_json(poor.faces[0])["status"], "too poor");
  EXPECT_TRUE(g.check().empty());
}

TEST(GalleryAssign, AFaceAssignedAgainStaysWhereItIsOrJoinsThePersonItNowMatches) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model());
  g.enroll({new_face("ann", "ann0.jpg", vec(0))});
  const auto a = to_assign("a.jpg", vec(0, {{3, 0.2f}}));
  const auto c = to_assign("c.jpg", vec(2));
  const auto first = gallery::assign_faces(g, {a, c}, {});
  const auto again = gallery::assign_faces(g, {a, c}, {});
  EXPECT_TRUE(again.faces[0].already);
  EXPECT_EQ(again.faces[0].id, first.faces[0].id);
  EXPECT_EQ(again.faces[0].person, "ann");
  EXPECT_TRUE(again.faces[1].already);
  EXPECT_EQ(again.faces[1].status, AssignStatus::kUnassigned);
  EXPECT_EQ(again.faces[1].id, first.faces[1].id);
  EXPECT_EQ(g.faces().size(), 2u);
  EXPECT_EQ(g.unassigned().size(), 1u);
  // Once cid is enrolled, c assigned again joins cid.
  g.enroll({new_face("cid", "cid0.jpg", vec(2, {{6, 0.1f}}))});
  const auto later = gallery::assign_faces(g, {c}, {});
  EXPECT_EQ(later.faces[0].status, AssignStatus::kKnown);
  EXPECT_EQ(later.faces[0].person, "cid");
  EXPECT_TRUE(later.faces[0].already);
  EXPECT_TRUE(g.unassigned().empty());
  // Enrolling an unassigned face takes it out of the unassigned faces.
  gallery::assign_faces(g, {to_assign("d.jpg", vec(5))}, {});
  ASSERT_EQ(g.unassigned().size(), 1u);
  g.enroll({new_face("dee", "d.jpg", vec(5))});
  EXPECT_TRUE(g.unassigned().empty());
  EXPECT_TRUE(g.check().empty());
}

TEST(GalleryPeople, RenameMergeAndSplitProposedPeople) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model());
  g.enroll({new_face("ann", "ann0.jpg", vec(0)), new_face("ann", "ann1.jpg", vec(0, {{6, 0.1f}}))});
  gallery::assign_faces(g,
                        {to_assign("b1.jpg", vec(1)), to_assign("b2.jpg", vec(1, {{4, 0.1f}})),
                         to_assign("b3.jpg", vec(1, {{4, -0.1f}})), to_assign("c1.jpg", vec(2)),
                         to_assign("c2.jpg", vec(2, {{4, 0.1f}}))},
                        {});
  ASSERT_EQ(persons_of(g).size(), 3u);
  // Naming a proposed person makes it known.
  g.rename_person("unnamed-1", "bob");
  auto people = persons_of(g);
  EXPECT_FALSE(people["bob"].proposed);
  EXPECT_EQ(people["bob"].faces, 3);
  EXPECT_THROW(g.rename_person("bob", "ann"), GalleryError);
  // Merge: unnamed-2's faces join bob, whose template is recomputed.
  const auto c_faces = face_ids(g, "unnamed-2");
  g.merge_persons("bob", "unnamed-2");
  people = persons_of(g);
  EXPECT_EQ(people.count("unnamed-2"), 0u);
  EXPECT_EQ(people["bob"].faces, 5);
  EXPECT_FALSE(people["bob"].proposed);
  EXPECT_TRUE(g.check().empty());  // templates equal their faces' means
  // Split: those faces become a new proposed person.
  const auto name = g.split_person("bob", c_faces);
  EXPECT_EQ(name, "unnamed-3");
  people = persons_of(g);
  EXPECT_TRUE(people[name].proposed);
  EXPECT_EQ(people[name].faces, 2);
  EXPECT_EQ(people["bob"].faces, 3);
  EXPECT_EQ(face_ids(g, name), c_faces);
  EXPECT_EQ(g.search(vec(2), 1)[0].person, name);
  EXPECT_TRUE(g.check().empty());

  // Each mistake is one clear error, and changes nothing.
  const auto ann_face = face_ids(g, "ann")[0];
  const auto expect_error = [&](auto call, const std::string& words) {
    try {
      call();
      ADD_FAILURE() << "no error; expected: " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_error([&] { g.split_person("bob", {ann_face}); }, "is ann's, not bob's");
  expect_error([&] { g.split_person("bob", {999}); }, "no face 999");
  expect_error([&] { g.split_person("bob", face_ids(g, "bob")); }, "rename it instead");
  expect_error([&] { g.split_person("bob", {}); }, "name the faces");
  const auto bob = face_ids(g, "bob");
  expect_error([&] { g.split_person("bob", {bob[0], bob[0]}); }, "named twice");
  expect_error([&] { g.split_person("nobody", {bob[0]}); }, "no person 'nobody'");
  expect_error([&] { g.merge_persons("bob", "bob"); }, "into itself");
  expect_error([&] { g.merge_persons("bob", "nobody"); }, "no person 'nobody'");
  expect_error([&] { g.merge_persons("nobody", "bob"); }, "no person 'nobody'");
  EXPECT_EQ(persons_of(g).size(), 3u);
  EXPECT_EQ(face_ids(g, "bob"), bob);
  EXPECT_TRUE(g.check().empty());
}

// Two tight pairs of faces whose mean cosine across pairs is about 0.47: one person at a
// clustering threshold of 0.3, two at 0.7, nobody at 0.999 (with two faces needed per person).
std::vector<FaceToAssign> two_pairs() {
  return {to_assign("p1.jpg", vec(1, {{4, 0.6f}})),
          to_assign("p2.jpg", vec(1, {{4, 0.6f}, {5, 0.1f}})),
          to_assign("q1.jpg", vec(1, {{4, -0.6f}})),
          to_assign("q2.jpg", vec(1, {{4, -0.6f}, {5, 0.1f}}))};
}

TEST(GalleryPeople, ReclusterKeepsTheNamesOfUnchangedGroupsAndRegroupsAtAnotherThreshold) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model());
  g.enroll({new_face("ann", "ann0.jpg", vec(0))});
  AssignOptions loose;
  loose.cluster_threshold = 0.3;
  const auto first = gallery::assign_faces(g, two_pairs(), loose);
  ASSERT_EQ(first.proposed.size(), 1u);
  const auto ids = face_ids(g, "unnamed-1");
  ASSERT_EQ(ids.size(), 4u);

  // The same threshold: the same person, the same name, the same face ids.
  auto regrouped = gallery::recluster(g, loose);
  ASSERT_EQ(regrouped.people.size(), 1u);
  EXPECT_EQ(regrouped.kept, std::vector<std::string>{"unnamed-1"});
  EXPECT_TRUE(regrouped.dissolved.empty());
  EXPECT_EQ(face_ids(g, "unnamed-1"), ids);

  // Stricter: two people; the first keeps the name, the second is new.
  AssignOptions strict;
  strict.cluster_threshold = 0.7;
  regrouped = gallery::recluster(g, strict);
  ASSERT_EQ(regrouped.people.size(), 2u);
  EXPECT_EQ(regrouped.people[0].name, "unnamed-1");
  EXPECT_EQ(regrouped.people[1].name, "unnamed-2");
  EXPECT_EQ(face_ids(g, "unnamed-1"), (std::vector<std::int64_t>{ids[0], ids[1]}));
  EXPECT_EQ(face_ids(g, "unnamed-2").size(), 2u);
  EXPECT_TRUE(g.check().empty());

  // Strictest: nobody has two faces; both are dissolved, every face waits unassigned.
  AssignOptions strictest;
  strictest.cluster_threshold = 0.999;
  regrouped = gallery::recluster(g, strictest);
  EXPECT_TRUE(regrouped.people.empty());
  EXPECT_EQ(regrouped.dissolved, (std::vector<std::string>{"unnamed-1", "unnamed-2"}));
  EXPECT_EQ(regrouped.unassigned, 4u);
  EXPECT_EQ(g.unassigned().size(), 4u);
  // And back: one new person (names are never given twice); the named person was not touched.
  regrouped = gallery::recluster(g, loose);
  ASSERT_EQ(regrouped.people.size(), 1u);
  EXPECT_EQ(regrouped.people[0].name, "unnamed-3");
  EXPECT_EQ(regrouped.people[0].faces.size(), 4u);
  EXPECT_EQ(persons_of(g)["ann"].faces, 1);
  EXPECT_TRUE(g.unassigned().empty());
  EXPECT_TRUE(g.check().empty());
}

TEST(GalleryAssign, BadInputIsOneClearErrorAndStoresNothing) {
  test::TempDir tmp;
  auto g = Gallery::create((tmp / "g.db").string(), toy_model());
  const auto expect_invalid = [&](const std::vector<FaceToAssign>& faces,
                                  const AssignOptions& options, const std::string& words) {
    try {
      gallery::assign_faces(g, faces, options);
      ADD_FAILURE() << "no error; expected: " << words;
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_invalid({to_assign("ok.jpg", vec(1)), to_assign("short.jpg", {1, 2, 3})}, {},
                 "short.jpg: an embedding of 3 values for a gallery of 8-d toy embeddings");
  AssignOptions bad;
  bad.min_faces = 0;
  expect_invalid({to_assign("ok.jpg", vec(1))}, bad, "at least 1 face, not 0");
  bad = {};
  bad.cluster_threshold = 1.5;
  expect_invalid({to_assign("ok.jpg", vec(1))}, bad, "clustering threshold is a cosine");
  bad = {};
  bad.same_person_threshold = std::nan("");
  expect_invalid({to_assign("ok.jpg", vec(1))}, bad, "same-person threshold is a cosine");
  EXPECT_TRUE(g.unassigned().empty());
  EXPECT_TRUE(g.persons().empty());
}

// A gallery as schema version 2 left it: no unassigned faces, proposed people or clustering
// threshold.
void downgrade_to_version2(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.string().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, test::kGalleryVersion4To3, nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(
      sqlite3_exec(db,
                   "DROP TABLE unassigned; DROP TABLE proposed; DELETE FROM meta WHERE key IN "
                   "('next_unnamed', 'cluster_threshold'); UPDATE meta SET value = '2' "
                   "WHERE key = 'schema_version';",
                   nullptr, nullptr, nullptr),
      SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
}

TEST(GallerySchema, AVersion2GalleryGainsUnassignedFacesAndItsClusteringThresholdOnOpen) {
  test::TempDir tmp;
  const auto path = tmp / "v2.db";
  Gallery::create(path.string(), toy_model()).enroll({new_face("ann", "a.jpg", vec(0))});
  downgrade_to_version2(path);
  auto g = Gallery::open(path.string());
  EXPECT_EQ(g.schema_version(), Gallery::kSchemaVersion);
  // A model of no built-in manifest: its same-person threshold, as clustering_threshold() says.
  EXPECT_DOUBLE_EQ(g.model().cluster_threshold, 0.3);
  EXPECT_EQ(g.search(vec(0), 1)[0].person, "ann");
  const auto done = gallery::assign_faces(
      g, {to_assign("b1.jpg", vec(1)), to_assign("b2.jpg", vec(1, {{4, 0.1f}}))}, {});
  EXPECT_EQ(done.faces[0].person, "unnamed-1");
  EXPECT_TRUE(g.check().empty());

  // The bundled MobileFaceNet's gallery gets its calibrated clustering threshold.
  auto m = toy_model();
  m.model_name = "mobilefacenet-casia";
  m.architecture = "mobilefacenet";
  m.cluster_threshold = 0;
  const auto mobile = tmp / "mobile.db";
  Gallery::create(mobile.string(), m);
  EXPECT_DOUBLE_EQ(Gallery::open(mobile.string()).model().cluster_threshold,
                   clustering_threshold(builtin_manifest("mobilefacenet")));
  downgrade_to_version2(mobile);
  EXPECT_DOUBLE_EQ(Gallery::open(mobile.string()).model().cluster_threshold,
                   clustering_threshold(builtin_manifest("mobilefacenet")));
}

// ---- PostgreSQL ----

using test::PostgresServer;

TEST(GalleryAssignPostgres, ProposesMergesSplitsRegroups) {
  test::TempDir tmp;
  const PostgresServer server(tmp / "pg");
  FACEMAG_REQUIRE_POSTGRES(server);
  auto g = Gallery::create(server.url(), toy_model());
  g.enroll({new_face("ann", "ann0.jpg", vec(0))});
  const auto done =
      gallery::assign_faces(g,
                            {to_assign("a.jpg", vec(0, {{3, 0.2f}})), to_assign("b1.jpg", vec(1)),
                             to_assign("b2.jpg", vec(1, {{4, 0.1f}})), to_assign("c.jpg", vec(2))},
                            {});
  EXPECT_EQ(done.faces[0].person, "ann");
  EXPECT_EQ(done.faces[1].person, "unnamed-1");
  EXPECT_EQ(done.faces[3].status, AssignStatus::kUnassigned);
  // Another process sees the proposed person, flagged.
  auto other = Gallery::open(server.url());
  EXPECT_TRUE(persons_of(other)["unnamed-1"].proposed);
  EXPECT_EQ(other.unassigned().size(), 1u);
  const auto split = other.split_person("unnamed-1", {face_ids(other, "unnamed-1")[1]});
  EXPECT_EQ(split, "unnamed-2");
  other.merge_persons("unnamed-1", split);
  other.rename_person("unnamed-1", "bob");
  EXPECT_EQ(g.search(vec(1), 1)[0].person, "bob");
  EXPECT_FALSE(g.search(vec(1), 1)[0].proposed);
  const auto regrouped = gallery::recluster(g, {});
  EXPECT_TRUE(regrouped.people.empty());  // bob is named: only c waits, alone
  EXPECT_EQ(regrouped.unassigned, 1u);
  EXPECT_TRUE(g.check().empty());
  EXPECT_EQ(g.schema_version(), Gallery::kSchemaVersion);
}

// ---- real faces: lfw-half through MTCNN and MobileFaceNet ----

std::filesystem::path lfw() { return test::shared_dir() / "data" / "lfw-half"; }
std::string mobilefacenet() {
  return (test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt").string();
}
// The real MobileFaceNet with mirror features (as its clustering threshold was calibrated), the
// real MTCNN.
std::string model() {
  return " --arch mobilefacenet --flip --weights " + mobilefacenet() + " --mtcnn " +
         (test::shared_dir() / "weights" / "mtcnn").string() + " ";
}

// The smallest k with P(X <= k) >= p for X ~ Poisson(mean).
std::size_t poisson_quantile(double mean, double p) {
  double term = std::exp(-mean), cdf = term;
  std::size_t k = 0;
  while (cdf < p) {
    ++k;
    term *= mean / double(k);
    cdf += term;
  }
  return k;
}

// The folder (person) a photo path is in.
std::string folder_of(const std::string& path) {
  return std::filesystem::path(path).parent_path().filename().string();
}

// The proof of issue 38 on real faces. Every 5th person of lfw-half (418 people); of them, every
// other one enrolled from their first photo (209 people; those with one photo only are
// distractors), the others never. Probes: the other photos of the enrolled people (up to 8 each)
// and the photos of the others (up to 8), one face each (--keep center, the face LFW labels).
// The match threshold is 0.55, where this model's false-match rate on lfw-half's 14 M impostor
// pairs is 1.6e-5 (docs/gallery.md): a gallery's same-person threshold is a 1:1 cut, and the
// model's own 0.20 (FMR 5e-2) puts nearly every face of a gallery of hundreds on someone.
// A face lands on a wrong person by a false match (cosine >= 0.55 to another person's template)
// or by grouping (mean cosine >= the clustering threshold, 0.48, to faces of another person).
// Each has a probability bounded by the false-match rate at its threshold times the number of
// others it is compared with, FMR measured here on every impostor pair of the faces stored: the
// faces on a wrong known person plus the faces of a proposed person that are not of its majority
// may not exceed the 99.9 % Poisson quantile of the sum of those probabilities. Measured (Intel
// Xeon, 2 cores, 12 s): 0 faces on a wrong known person, 164 of 206 faces of enrolled people on
// them, 70 of 72 proposed people pure (2 faces misplaced); 30.6 expected, the bound 49.
TEST(CliGalleryAssign, LfwPhotosJoinTheirOwnPersonOrWaitAndProposedPeopleArePure) {
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  FACEMAG_REQUIRE_FILE(lfw() / "images");
  constexpr double kMatch = 0.55;
  test::TempDir tmp;
  std::vector<std::filesystem::path> people;
  for (const auto& p : std::filesystem::directory_iterator(lfw() / "images"))
    people.push_back(p.path());
  std::sort(people.begin(), people.end());
  std::set<std::string> enrolled;
  std::size_t mated = 0, non_mated = 0;
  for (std::size_t i = 0; i < people.size(); i += 5) {
    std::vector<std::filesystem::path> photos;
    for (const auto& photo : std::filesystem::directory_iterator(people[i]))
      photos.push_back(photo.path());
    std::sort(photos.begin(), photos.end());
    const auto name = people[i].filename().string();
    const bool enrol = (i / 5) % 2 == 0;
    std::filesystem::create_directories(tmp / "probes" / name);
    if (enrol) {
      enrolled.insert(name);
      std::filesystem::create_directories(tmp / "enroll" / name);
      std::filesystem::create_symlink(photos[0], tmp / "enroll" / name / photos[0].filename());
    }
    const std::size_t first = enrol ? 1 : 0, last = std::min(photos.size(), first + 8);
    for (std::size_t k = first; k < last; ++k)
      std::filesystem::create_symlink(photos[k], tmp / "probes" / name / photos[k].filename());
    (enrol ? mated : non_mated) += last - first;
  }
  const auto db = (tmp / "g.db").string();
  ASSERT_EQ(test::run_cli("gallery create " + db + model(), tmp).exit_code, 0);
  auto r = test::run_cli(
      "gallery enroll " + db + " " + (tmp / "enroll").string() + " --by-folder" + model(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("gallery assign " + db + " " + (tmp / "probes").string() +
                        " --keep center --threshold " + std::to_string(kMatch) + " --out " +
                        (tmp / "a.jsonl").string() + model(),
                    tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = test::json_lines(test::read_file(tmp / "a.jsonl"));
  ASSERT_EQ(records.size(), mated + non_mated);
  // One text line per face on stdout, as the JSON lines.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'),
            static_cast<std::ptrdiff_t>(records.size()));

  std::size_t right = 0, wrong = 0, waiting = 0, grouped = 0, outside_known = 0;
  std::map<std::string, std::map<std::string, std::size_t>> proposed;  // person -> truth -> faces
  for (const auto& a : records) {
    const auto truth = folder_of(a["path"]);
    const auto status = a["status"].get<std::string>();
    grouped += a.value("grouped", false);
    outside_known += status != "known";
    if (status == "known") {
      (a["person"] == truth ? right : wrong) += 1;
      if (a["person"] != truth) std::printf("on another person: %s\n", a.dump().c_str());
    } else if (status == "proposed") {
      ++proposed[a["person"]][truth];
    } else {
      EXPECT_EQ(status, "unassigned") << a;  // MobileFaceNet's gallery has no quality gate
      ++waiting;
    }
  }
  std::size_t pure = 0, misplaced = 0;
  for (const auto& [person, truths] : proposed) {
    std::size_t all = 0, most = 0;
    for (const auto& [truth, n] : truths) {
      all += n;
      most = std::max(most, n);
    }
    pure += truths.size() == 1;
    misplaced += all - most;
    if (truths.size() > 1)
      std::printf("%s holds faces of %zu people\n", person.c_str(), truths.size());
  }
  std::printf(
      "%zu probes (%zu of %zu enrolled people, %zu of others): %zu right, %zu wrong, "
      "%zu unassigned, %zu proposed people (%zu pure, %zu faces misplaced)\n",
      records.size(), mated, enrolled.size(), non_mated, right, wrong, waiting, proposed.size(),
      pure, misplaced);

  // The false-match rates at both thresholds on the faces stored (every face on a person), by
  // their folders.
  ASSERT_EQ(test::run_cli("gallery export " + db + " " + (tmp / "x").string(), tmp).exit_code, 0);
  const auto rows = test::json_lines(test::read_file(tmp / "x.jsonl"));
  const auto unit =
      torch::nn::functional::normalize(io::read_npy(tmp / "x.npy").to(torch::kFloat32),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  ASSERT_EQ(unit.size(0), static_cast<std::int64_t>(rows.size()));
  std::map<std::string, std::int64_t> label_of;
  std::vector<std::int64_t> labels;
  for (const auto& row : rows)
    labels.push_back(label_of.emplace(folder_of(row["source"]), label_of.size()).first->second);
  const auto label = torch::tensor(labels);
  const auto impostor = label.unsqueeze(1).ne(label.unsqueeze(0)).triu(1);  // each pair once
  const auto cosines = torch::mm(unit, unit.t());
  const double pairs = impostor.sum().item<double>();
  // Three more false matches than seen: a rate of 0 is not claimed from a finite sample.
  const auto fmr = [&](double t) {
    return (cosines.ge(t).logical_and(impostor).sum().item<double>() + 3) / pairs;
  };
  const double cluster = clustering_threshold(builtin_manifest("mobilefacenet"));
  const auto persons = test::json_lines(test::run_cli("gallery list " + db, tmp).out).size();
  // A match: each face against every other person of the gallery as it ended. Grouping: each
  // grouped face against every other face that was not on a known person.
  const double expected =
      double(records.size()) * std::min(1.0, double(persons - 1) * fmr(kMatch)) +
      double(grouped) * std::min(1.0, double(outside_known - 1) * fmr(cluster));
  const auto bound = poisson_quantile(expected, 0.999);
  std::printf(
      "FMR(%.2f) <= %.3g, FMR(%.2f) <= %.3g over %.0f impostor pairs; %zu people, %zu "
      "faces grouped of %zu; %.2f misplaced expected, bound %zu\n",
      kMatch, fmr(kMatch), cluster, fmr(cluster), pairs, persons, grouped, outside_known, expected,
      bound);
  EXPECT_LE(wrong + misplaced, bound);
  EXPECT_GE(pure, proposed.size() * 9 / 10);      // measured 70 of 72: a floor against a regression
  EXPECT_GE(double(right), 0.7 * double(mated));  // measured 0.80: a floor, not the proof

  // The People page: proposed people listed as such; named, split; mistakes are one line.
  const auto listed = test::json_lines(test::run_cli("gallery list " + db, tmp).out);
  const auto proposed_listed = std::count_if(
      listed.begin(), listed.end(), [](const json& p) { return p.value("proposed", false); });
  EXPECT_EQ(proposed_listed, static_cast<std::ptrdiff_t>(proposed.size()));
  ASSERT_FALSE(proposed.empty());
  const auto& [first, truths] = *proposed.begin();
  const auto named = truths.begin()->first + "-named";
  r = test::run_cli("gallery rename " + db + " " + first + " " + named, tmp);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("gallery split " + db + " " + named + " --faces 999999", tmp);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("no face 999999"), std::string::npos) << r.err;
  r = test::run_cli("gallery merge " + db + " nobody " + *enrolled.begin(), tmp);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no person 'nobody'"), std::string::npos) << r.err;
  // Regrouping at the same threshold keeps the proposed people it finds again.
  r = test::run_cli("gallery recluster " + db, tmp);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("kept their names"), std::string::npos) << r.err;
  r = test::run_cli("gallery check " + db, tmp);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("schema version 5: sound"), std::string::npos) << r.out;
}

// A store survives a kill at any moment: `gallery assign` SIGKILLed while it works leaves a sound
// gallery (each chunk of photos is one transaction), and the same command again completes it,
// with no face stored twice.
TEST(CliGalleryAssign, ASigkillLeavesASoundGalleryThatTheNextRunCompletes) {
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  const auto casia = test::shared_dir() / "data" / "faces-casia";
  FACEMAG_REQUIRE_FILE(casia / "pam" / "001.jpg");
  test::TempDir tmp;
  const auto db = (tmp / "g.db").string();
  ASSERT_EQ(test::run_cli("gallery create " + db + model(), tmp).exit_code, 0);
  ASSERT_EQ(test::run_cli("gallery enroll " + db + " " + (casia / "bruce" / "001.jpg").string() +
                              " --person bruce" + model(),
                          tmp)
                .exit_code,
            0);
  const std::string assign = std::string(FACEMAG_CLI_PATH) + " gallery assign " + db + " " +
                             casia.string() + " --keep center" + model();
  const pid_t child = fork();
  if (child == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + assign + " >/dev/null 2>&1").c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Killed as soon as its first chunk (32 photos) is committed, while it works on the second.
  int status = 0;
  for (int waited = 0; waited < 6000 && waitpid(child, &status, WNOHANG) == 0; ++waited) {
    const auto g = Gallery::open(db);
    if (g.faces().size() + g.unassigned().size() > 1) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(WIFSIGNALED(status)) << "assign ended before it could be killed";
  auto r = test::run_cli("gallery check " + db, tmp);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = test::run_cli("gallery assign " + db + " " + casia.string() + " --keep center --out " +
                        (tmp / "a.jsonl").string() + model(),
                    tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = test::json_lines(test::read_file(tmp / "a.jsonl"));
  ASSERT_EQ(records.size(), 45u);
  std::set<std::pair<std::string, std::int64_t>> places;
  for (const auto& a : records)
    places.emplace(a.contains("face_id") ? "face" : "unassigned",
                   a.value("face_id", a.value("unassigned_id", std::int64_t{-1})));
  EXPECT_EQ(places.size(), 45u);  // every face in one place of its own
  const auto g = Gallery::open(db);
  EXPECT_EQ(g.faces().size() + g.unassigned().size(), 45u);  // bruce/001.jpg: enrolled, again
  EXPECT_TRUE(g.check().empty());
}

}  // namespace
}  // namespace facemag
