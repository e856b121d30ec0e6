// The library functions the CLI's detect, embed, cluster and eval cluster commands call (JSON of
// detections and records, the evaluation of a clustering, people by folder), without the CLI.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "facemag/detect/json.hpp"
#include "facemag/embed_records.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster_evaluation.hpp"

namespace facemag {
namespace {

Detection a_detection() {
  Detection d;
  d.box = {1, 2, 30, 40};
  d.score = 0.5f;
  for (int i = 0; i < 5; ++i) d.landmarks.points[i] = {float(10 + i), float(20 + i)};
  return d;
}

TEST(DetectionJson, BoxScoreAndLandmarksAsEveryFrontEndWritesThem) {
  const auto d = a_detection();
  EXPECT_EQ(to_json(d.box).dump(), "[1.0,2.0,30.0,40.0]");
  const auto j = to_json(d);
  EXPECT_EQ(j["box"], to_json(d.box));
  EXPECT_EQ(j["score"], 0.5);
  ASSERT_EQ(j["landmarks"].size(), 5u);
  EXPECT_EQ(j["landmarks"][4].dump(), "[14.0,24.0]");
  const std::vector<Detection> faces{d};
  const auto photo = photo_detections_json("a.jpg", 64, 48, faces);
  EXPECT_EQ(photo["path"], "a.jpg");
  EXPECT_EQ(photo["width"], 64);
  EXPECT_EQ(photo["faces"][0], j);
  EXPECT_TRUE(photo_detections_json("b.jpg", 1, 1, {})["faces"].is_array());
}

TEST(FaceRecordWriter, SortsByQualityAndWritesTheMatrixWithItsRowIndex) {
  const auto dir = std::filesystem::temp_directory_path() / "facemag_face_records";
  std::filesystem::create_directories(dir);
  std::ostringstream out;
  FaceRecordWriter writer(out, 2, {"m", false, true, dir / "e.npy"});
  for (float q : {1.0f, 3.0f}) {
    FileFace face;
    face.path = "p" + std::to_string(int(q));
    face.embedding.raw = {q, 0};
    face.embedding.magnitude = q;
    writer.write(face);
  }
  EXPECT_EQ(out.str(), "");  // held until finish()
  writer.finish();
  EXPECT_EQ(out.str(), R"({"model":"m","path":"p3","quality":3.0})"
                       "\n"
                       R"({"model":"m","path":"p1","quality":1.0})"
                       "\n");
  EXPECT_TRUE(std::filesystem::exists(dir / "e.npy"));
  EXPECT_EQ(npy_row_index_path(dir / "e.npy"), dir / "e.jsonl");
  std::filesystem::remove_all(dir);
}

TEST(ClusterEvaluation, ScoresTheThresholdTheSweepAndThePoorFaces) {
  eval::LabelledFaces faces;
  faces.features =
      torch::tensor({{1.0f, 0.0f}, {0.9f, 0.1f}, {0.0f, 1.0f}, {0.1f, 0.9f}, {0.05f, 0.01f}});
  faces.identity = {0, 0, 1, 1, 0};
  faces.names = {"ann", "bob"};
  const auto norms = faces.features.norm(2, 1).to(torch::kFloat64).contiguous();
  faces.quality.assign(norms.data_ptr<double>(), norms.data_ptr<double>() + 5);
  eval::ClusterEvaluationOptions options;
  options.threshold = 0.5;
  options.sweep_from = 0.1;
  options.sweep_to = 0.9;
  options.sweep_step = 0.4;
  options.min_quality = 0.5;
  const auto e = eval::evaluate_clustering(faces, options);
  EXPECT_EQ(e.faces, 5u);
  EXPECT_EQ(e.identities, 2u);
  EXPECT_EQ(e.sweep.size(), 3u);
  ASSERT_TRUE(e.quality);
  EXPECT_EQ(e.quality->poor_faces, 1u);
  EXPECT_DOUBLE_EQ(e.quality->left_out.bcubed_f, 1.0);  // the four good faces, perfectly
  const auto j = eval::to_json(e);
  EXPECT_EQ(j["faces"], 5);
  EXPECT_EQ(j["sweep"].size(), 3u);
  EXPECT_EQ(j["scores"], eval::to_json(e.scores));
  EXPECT_EQ(j["quality"]["poor_faces"], 1);

  options.sweep_step = 0;
  EXPECT_THROW(eval::evaluate_clustering(faces, options), InvalidInput);
  options.sweep_step = 0.1;
  options.min_quality = 100;
  EXPECT_THROW(eval::evaluate_clustering(faces, options), InvalidInput);
}

TEST(ClusterEvaluation, PeoplePhotosAreTheirFirstFolderWithEnoughPhotos) {
  std::vector<io::InputFile> files{
      {"/d/ann/1.jpg", "ann/1.jpg"}, {"/d/bob/1.jpg", "bob/1.jpg"}, {"/d/ann/2.jpg", "ann/2.jpg"}};
  const auto people = eval::people_photos(files, 2);
  ASSERT_EQ(people.names, std::vector<std::string>{"ann"});
  EXPECT_EQ(people.files.size(), 2u);
  EXPECT_EQ(people.person_of_file, (std::vector<int>{0, 0}));
  EXPECT_THROW(eval::people_photos(files, 3), InvalidInput);
  EXPECT_THROW(eval::people_photos({{"/d/x.jpg", "x.jpg"}}, 1), InvalidInput);
}

}  // namespace
}  // namespace facemag
