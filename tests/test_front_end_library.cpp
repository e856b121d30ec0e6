// The library functions the CLI's detect, embed, cluster and eval cluster commands call (JSON of
// detections and records, the evaluation of a clustering, people by folder), without the CLI.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <sstream>

#include "facemag/detect/json.hpp"
#include "facemag/embed/face_quality.hpp"
#include "facemag/embed_records.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster_evaluation.hpp"
#include "facemag/model/manifest.hpp"

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
  FaceRecordWriter writer(out, 2, {"m", false, true, dir / "e.npy", "magnitude*sharpness"});
  // Sorted by quality, not by magnitude (the larger magnitude has the poorer quality here).
  for (float q : {1.0f, 3.0f}) {
    FileFace face;
    face.path = "p" + std::to_string(int(q));
    face.embedding.raw = {8 - q, 0};
    face.embedding.magnitude = 8 - q;
    face.embedding.quality = q;
    writer.write(face);
  }
  EXPECT_EQ(out.str(), "");  // held until finish()
  writer.finish();
  EXPECT_EQ(
      out.str(),
      R"({"magnitude":5.0,"model":"m","path":"p3","quality":3.0,"quality_source":"magnitude*sharpness"})"
      "\n"
      R"({"magnitude":7.0,"model":"m","path":"p1","quality":1.0,"quality_source":"magnitude*sharpness"})"
      "\n");
  EXPECT_TRUE(std::filesystem::exists(dir / "e.npy"));
  EXPECT_EQ(npy_row_index_path(dir / "e.npy"), dir / "e.jsonl");
  std::filesystem::remove_all(dir);
}

// The quality rule every front end shares (face_quality.hpp), on images whose Laplacian is
// known: one bright pixel v on black has Laplacian -4v there and v at its 4 neighbours (mean 0),
// so a variance of 20 v^2 / pixels.
TEST(FaceQuality, SharpnessOfKnownImagesAndTheRuleOfEachKindOfModel) {
  cv::Mat dot = cv::Mat::zeros(112, 96, CV_8UC3);
  dot.at<cv::Vec3b>(56, 48) = {100, 100, 100};
  const double dot_sharpness = 20.0 * 100 * 100 / (112 * 96);
  EXPECT_NEAR(crop_sharpness(dot), dot_sharpness, 1e-9 * dot_sharpness);
  cv::Mat grey_dot = cv::Mat::zeros(112, 96, CV_8UC1);
  grey_dot.at<std::uint8_t>(56, 48) = 100;
  EXPECT_NEAR(crop_sharpness(grey_dot), dot_sharpness, 1e-9 * dot_sharpness);
  // Any height is measured at 112 rows: a flat crop stays flat.
  EXPECT_EQ(crop_sharpness(cv::Mat(160, 160, CV_8UC3, cv::Scalar::all(77))), 0.0);
  EXPECT_EQ(crop_sharpness(cv::Mat(56, 48, CV_8UC3, cv::Scalar::all(77))), 0.0);
  // A fine checkerboard is as sharp as a crop gets: the factor saturates at 1.
  cv::Mat board(112, 112, CV_8UC1);
  for (int y = 0; y < board.rows; ++y)
    for (int x = 0; x < board.cols; ++x) board.at<std::uint8_t>(y, x) = (x + y) % 2 ? 255 : 0;
  EXPECT_GT(crop_sharpness(board), kSharpnessReference);
  EXPECT_EQ(sharpness_factor(board), 1.0);
  EXPECT_NEAR(sharpness_factor(dot), dot_sharpness / kSharpnessReference, 1e-9);

  ModelManifest magface, other;
  magface.magnitude_is_quality = true;
  other.magnitude_is_quality = false;
  EXPECT_EQ(face_quality(magface, 23.5f, dot), 23.5f);
  EXPECT_FLOAT_EQ(face_quality(other, 5.0f, dot), 5.0f * dot_sharpness / kSharpnessReference);
  EXPECT_EQ(face_quality(other, 5.0f, board), 5.0f);
  EXPECT_EQ(quality_source(magface), "magnitude");
  EXPECT_EQ(quality_source(other), "magnitude*sharpness");
  EXPECT_THROW(crop_sharpness(cv::Mat(112, 96, CV_32FC3)), InvalidInput);
  EXPECT_THROW(crop_sharpness(cv::Mat()), InvalidInput);
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
