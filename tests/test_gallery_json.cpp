// The gallery's rules and JSON forms shared by the CLI and the server: which model opens a
// gallery, and the fields each typed result is written with (no shared data needed).
#include <gtest/gtest.h>

#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/json.hpp"

namespace facemag {
namespace {

gallery::ModelBinding bound_model() {
  gallery::ModelBinding m;
  m.model_name = "toy";
  m.architecture = "iresnet18";
  m.embedding_size = 2 * builtin_manifest("iresnet18").embedding_size;  // mirror features
  m.weights_path = "/models/toy.pth";
  return m;
}

TEST(GalleryModelRequest, WithoutWeightsTheGalleryOpensWithItsOwnModel) {
  ModelRequest given;
  given.architecture = "mobilefacenet";  // a command's default, not chosen
  const auto r = gallery::gallery_model_request(given, bound_model());
  EXPECT_EQ(r.weights, "/models/toy.pth");
  EXPECT_EQ(r.architecture, "iresnet18");
  EXPECT_TRUE(r.architecture_given);
  EXPECT_TRUE(r.concat_flipped);
}

TEST(GalleryModelRequest, TheUsersWeightsKeepTheirArchitectureOnlyWhenChosen) {
  ModelRequest given;
  given.weights = "/elsewhere/w.pth";
  given.architecture = "mobilefacenet";
  auto r = gallery::gallery_model_request(given, bound_model());
  EXPECT_EQ(r.weights, "/elsewhere/w.pth");
  EXPECT_EQ(r.architecture, "iresnet18");
  EXPECT_FALSE(r.concat_flipped);
  given.architecture_given = true;
  r = gallery::gallery_model_request(given, bound_model());
  EXPECT_EQ(r.architecture, "mobilefacenet");
}

TEST(GalleryJson, AnIdentificationHasTheFieldsEachFrontEndAsksFor) {
  gallery::Identification found;
  found.candidates.push_back({"ann", 0.8, 0.9, 42, 3});
  found.decision = gallery::Decision::kMatch;
  found.person = "ann";
  found.threshold = 0.3;
  const auto full = gallery::to_json(found);
  EXPECT_EQ(full["decision"], "match");
  EXPECT_EQ(full["person"], "ann");
  EXPECT_EQ(full["threshold"], 0.3);
  EXPECT_EQ(full["candidates"][0]["best_face_id"], 42);
  EXPECT_EQ(full["candidates"][0]["similarity"], 0.8);
  EXPECT_EQ(full["candidates"][0]["faces"], 3);
  const auto served = gallery::to_json(found, {.face_ids = false, .threshold = false});
  EXPECT_FALSE(served.contains("threshold"));
  EXPECT_FALSE(served["candidates"][0].contains("best_face_id"));
  EXPECT_EQ(served["candidates"][0]["best_face_similarity"], 0.9);
}

TEST(GalleryJson, AnEnrolmentSaysWhetherTheFaceWasNew) {
  gallery::EnrolledFace face{"ann", "/photos/ann/1.jpg", 25.0f, 7};
  EXPECT_EQ(gallery::to_json(face)["face_id"], 7);
  face.face_id.reset();
  const auto again = gallery::to_json(face);
  EXPECT_EQ(again["already_enrolled"], true);
  EXPECT_FALSE(again.contains("face_id"));
}

TEST(GalleryJson, AStoredFaceHasItsDetectionAndNoEmbedding) {
  gallery::StoredFace f;
  f.id = 5;
  f.person = "bo";
  f.detection.box = {1, 2, 3, 4};
  f.embedding = {1, 2};
  const auto j = gallery::to_json(f);
  EXPECT_EQ(j["box"], nlohmann::json({1.0, 2.0, 3.0, 4.0}));
  EXPECT_EQ(j["landmarks"].size(), 5u);
  EXPECT_EQ(j["id"], 5);
  EXPECT_FALSE(j.contains("embedding"));
}

TEST(GalleryJson, AnEvaluationNamesItsGatedSet) {
  gallery::IdentificationEvaluation e;
  e.probes = 4;
  e.kept = 3;
  e.quality_gate = 20;
  e.all.cmc = {0.5, 1.0};
  e.all.open_set = {{0.1, std::nullopt, 0}};
  e.gated = e.all;
  e.gated->open_set = {{0.1, 0.7, 0.75}};
  const auto sets = gallery::labelled_results(e);
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].label, "quality >= 20.000 (75.0 % kept)");
  const auto j = gallery::to_json(e, "g.db");
  EXPECT_EQ(j["results"][0]["open_set"][0]["fnir"], nullptr);
  EXPECT_DOUBLE_EQ(j["results"][1]["open_set"][0]["fnir"].get<double>(), 0.25);
  EXPECT_EQ(j["results"][1]["rank5"], 1.0);
}

}  // namespace
}  // namespace facemag
