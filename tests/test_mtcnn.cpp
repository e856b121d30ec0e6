// MTCNN and alignment against facenet-pytorch / skimage+OpenCV outputs (../shared/golden).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <iostream>

#include "facemag/align/align.hpp"
#include "facemag/detect/mtcnn.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/nn/mtcnn_nets.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

const MtcnnDetector& detector() {
  static const MtcnnDetector d = MtcnnDetector::load(test::shared_dir() / "weights" / "mtcnn");
  return d;
}

// The three networks against LibTorch's own operators (torch::prelu, max_pool2d in ceil mode),
// written out layer by layer: random weights with PReLU slopes of both signs (the real MTCNN
// weights have negative slopes in every layer), channels-last and NCHW inputs. The hand-written
// PReLU + pooling pass must give the same values exactly.
TEST(MtcnnNets, SameValuesAsLibTorchOperators) {
  torch::manual_seed(7);
  c10::InferenceMode guard;
  const auto randomise = [](torch::nn::Module& net) {
    for (auto& p : net.parameters()) p.uniform_(-0.5, 0.5);
    net.eval();
  };
  const auto pool = [](const torch::Tensor& x, std::int64_t kernel) {
    return torch::max_pool2d(x, kernel, 2, 0, 1, /*ceil_mode=*/true);
  };
  const auto caffe_flat = [](const torch::Tensor& x) {
    return x.permute({0, 3, 2, 1}).contiguous().view({x.size(0), -1});
  };
  nn::PNet pnet;
  nn::RNet rnet;
  nn::ONet onet;
  randomise(*pnet);
  randomise(*rnet);
  randomise(*onet);
  for (const auto format : {torch::MemoryFormat::ChannelsLast, torch::MemoryFormat::Contiguous}) {
    SCOPED_TRACE(format == torch::MemoryFormat::ChannelsLast ? "channels-last" : "NCHW");
    const auto x12 = torch::randn({3, 3, 31, 45}).contiguous(format);
    auto y = pool(torch::prelu(pnet->conv1(x12), pnet->prelu1->weight), 2);
    y = torch::prelu(pnet->conv2(y), pnet->prelu2->weight);
    y = torch::prelu(pnet->conv3(y), pnet->prelu3->weight);
    const auto [p_reg, p_prob] = pnet->forward(x12);
    EXPECT_TRUE(torch::equal(p_reg, pnet->conv4_2(y)));
    EXPECT_TRUE(torch::equal(p_prob, torch::softmax(pnet->conv4_1(y), 1)));

    const auto x24 = torch::randn({5, 3, 24, 24}).contiguous(format);
    y = pool(torch::prelu(rnet->conv1(x24), rnet->prelu1->weight), 3);
    y = pool(torch::prelu(rnet->conv2(y), rnet->prelu2->weight), 3);
    y = torch::prelu(rnet->conv3(y), rnet->prelu3->weight);
    y = torch::prelu(rnet->dense4(caffe_flat(y)), rnet->prelu4->weight);
    const auto [r_reg, r_prob] = rnet->forward(x24);
    EXPECT_TRUE(torch::equal(r_reg, rnet->dense5_2(y)));
    EXPECT_TRUE(torch::equal(r_prob, torch::softmax(rnet->dense5_1(y), 1)));

    const auto x48 = torch::randn({4, 3, 48, 48}).contiguous(format);
    y = pool(torch::prelu(onet->conv1(x48), onet->prelu1->weight), 3);
    y = pool(torch::prelu(onet->conv2(y), onet->prelu2->weight), 3);
    y = pool(torch::prelu(onet->conv3(y), onet->prelu3->weight), 2);
    y = torch::prelu(onet->conv4(y), onet->prelu4->weight);
    y = torch::prelu(onet->dense5(caffe_flat(y)), onet->prelu5->weight);
    const auto [o_reg, o_marks, o_prob] = onet->forward(x48);
    EXPECT_TRUE(torch::equal(o_reg, onet->dense6_2(y)));
    EXPECT_TRUE(torch::equal(o_marks, onet->dense6_3(y)));
    EXPECT_TRUE(torch::equal(o_prob, torch::softmax(onet->dense6_1(y), 1)));
  }
}

// Each image alone (detect) and all images at once (detect_batch: same-size images share the
// network passes) both give facenet-pytorch's faces.
TEST(MtcnnGolden, SameFacesAsFacenetPytorchOnEveryImage) {
  const auto golden_path = test::golden_dir() / "mtcnn" / "detections.json";
  FACEMAG_REQUIRE_FILE(golden_path);
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  const auto golden = test::read_json(golden_path);
  std::vector<cv::Mat> images;
  for (const auto& entry : golden["images"]) {
    const auto path = test::shared_dir() / "data" / entry["image"].get<std::string>();
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    images.push_back(io::read_image_bgr(path));
  }
  const auto single = [&] {
    std::vector<std::vector<Detection>> found;
    for (const auto& image : images) found.push_back(detector().detect(image));
    return found;
  }();
  const auto batched = detector().detect_batch(images);
  for (const auto* results : {&single, &batched}) {
    const std::string mode = results == &single ? "detect" : "detect_batch";
    double worst_box = 0, worst_landmark = 0, worst_prob = 0;
    std::size_t faces = 0;
    for (std::size_t i = 0; i < images.size(); ++i) {
      const auto& entry = golden["images"][i];
      const auto& found = (*results)[i];
      ASSERT_EQ(found.size(), entry["faces"].size()) << mode << " " << entry["image"];
      for (std::size_t k = 0; k < found.size(); ++k) {
        const auto& g = entry["faces"][k];
        const auto& d = found[k];
        const float box[4] = {d.box.x1, d.box.y1, d.box.x2, d.box.y2};
        for (int c = 0; c < 4; ++c)
          worst_box = std::max(worst_box, std::abs(box[c] - g["box"][c].get<double>()));
        for (int p = 0; p < 5; ++p) {
          worst_landmark = std::max(
              worst_landmark, std::abs(d.landmarks[p].x - g["landmarks"][p][0].get<double>()));
          worst_landmark = std::max(
              worst_landmark, std::abs(d.landmarks[p].y - g["landmarks"][p][1].get<double>()));
        }
        worst_prob = std::max(worst_prob, std::abs(d.score - g["prob"].get<double>()));
        ++faces;
      }
    }
    std::cout << "[ parity ] MTCNN " << mode << ", " << faces << " faces: worst box " << worst_box
              << " px, landmark " << worst_landmark << " px, probability " << worst_prob << "\n";
    EXPECT_EQ(faces, golden["num_faces"].get<std::size_t>());
    EXPECT_LE(worst_box, 1.0);
    EXPECT_LE(worst_landmark, 1.0);
    EXPECT_LE(worst_prob, 1e-4);
  }
}

double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  const cv::Scalar s = cv::mean(diff);
  return (s[0] + s[1] + s[2]) / 3.0;
}

TEST(AlignGolden, MatricesAndCropsMatchSkimageAndOpenCV) {
  const auto golden_path = test::golden_dir() / "align" / "align.json";
  FACEMAG_REQUIRE_FILE(golden_path);
  const auto golden = test::read_json(golden_path);
  const auto& tmpl = arcface_template();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(tmpl.points[i].x, golden["template"][i][0].get<double>());
    EXPECT_EQ(tmpl.points[i].y, golden["template"][i][1].get<double>());
  }
  double worst_matrix = 0, worst_crop = 0;
  for (const auto& face : golden["faces"]) {
    Landmarks5 marks;
    for (int p = 0; p < 5; ++p)
      marks[p] = {face["landmarks"][p][0].get<float>(), face["landmarks"][p][1].get<float>()};
    const cv::Mat image =
        io::read_image_bgr(test::shared_dir() / "data" / face["image"].get<std::string>());
    const AlignedFace aligned = align_face(image, marks, tmpl);
    for (int r = 0; r < 2; ++r) {
      for (int c = 0; c < 3; ++c) {
        const double g = face["matrix"][r][c];
        worst_matrix =
            std::max(worst_matrix, std::abs(aligned.matrix(r, c) - g) / std::max(1.0, std::abs(g)));
      }
    }
    const cv::Mat expected = cv::imread(
        (test::golden_dir() / face["png"].get<std::string>()).string(), cv::IMREAD_COLOR);
    worst_crop = std::max(worst_crop, mean_abs_diff(aligned.image, expected));
  }
  std::cout << "[ parity ] alignment: worst matrix error " << worst_matrix
            << ", worst crop mean |diff| " << worst_crop << "\n";
  EXPECT_LE(worst_matrix, 1e-6);
  EXPECT_LE(worst_crop, 1.0);
}

TEST(AlignGolden, DetectThenAlignReproducesTheCrops) {
  const auto golden_path = test::golden_dir() / "align" / "align.json";
  FACEMAG_REQUIRE_FILE(golden_path);
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  const auto golden = test::read_json(golden_path);
  double worst = 0;
  for (const auto& face : golden["faces"]) {
    const cv::Mat image =
        io::read_image_bgr(test::shared_dir() / "data" / face["image"].get<std::string>());
    const auto found = detector().detect(image);
    const auto index = face["face"].get<std::size_t>();
    ASSERT_LT(index, found.size());
    const AlignedFace aligned = align_face(image, found[index].landmarks, arcface_template());
    const cv::Mat expected = cv::imread(
        (test::golden_dir() / face["png"].get<std::string>()).string(), cv::IMREAD_COLOR);
    worst = std::max(worst, mean_abs_diff(aligned.image, expected));
  }
  std::cout << "[ parity ] detect+align: worst crop mean |diff| " << worst << "\n";
  EXPECT_LE(worst, 1.0);
}

TEST(Align, UmeyamaRecoversAKnownSimilarity) {
  // to = s R from + t with s = 0.5, 30 degrees, t = (10, -4).
  const double s = 0.5, a = M_PI / 6, tx = 10, ty = -4;
  std::array<cv::Point2d, 5> from{{{10, 20}, {50, 22}, {30, 40}, {15, 60}, {45, 61}}}, to;
  for (int i = 0; i < 5; ++i) {
    to[i] = {s * (std::cos(a) * from[i].x - std::sin(a) * from[i].y) + tx,
             s * (std::sin(a) * from[i].x + std::cos(a) * from[i].y) + ty};
  }
  const auto m = similarity_transform(from, to);
  EXPECT_NEAR(m(0, 0), s * std::cos(a), 1e-12);
  EXPECT_NEAR(m(0, 1), -s * std::sin(a), 1e-12);
  EXPECT_NEAR(m(1, 0), s * std::sin(a), 1e-12);
  EXPECT_NEAR(m(0, 2), tx, 1e-10);
  EXPECT_NEAR(m(1, 2), ty, 1e-10);
}

TEST(Align, DegenerateLandmarksAreAnError) {
  Landmarks5 same;
  for (int p = 0; p < 5; ++p) same[p] = {5, 5};
  EXPECT_THROW(align_face(cv::Mat(50, 50, CV_8UC3, cv::Scalar::all(0)), same, arcface_template()),
               InvalidInput);
}

TEST(Align, SpherefaceTemplateIsArcfaceShiftedLeft) {
  const auto& s = sphereface_template();
  EXPECT_EQ(s.width, 96);
  EXPECT_EQ(s.height, 112);
  EXPECT_DOUBLE_EQ(s.points[0].x, 38.2946 - 8);
  EXPECT_DOUBLE_EQ(s.points[0].y, 51.6963);
}

TEST(Align, MarginCropFollowsExtractFace) {
  cv::Mat image(100, 200, CV_8UC3, cv::Scalar(1, 2, 3));
  const cv::Mat crop = margin_crop(image, Box{20, 10, 80, 70}, 160, 32);
  EXPECT_EQ(crop.rows, 160);
  EXPECT_EQ(crop.cols, 160);
  EXPECT_EQ(crop.at<cv::Vec3b>(0, 0), cv::Vec3b(1, 2, 3));
}

TEST(MtcnnGolden, NoFaceIsAnEmptyResult) {
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  EXPECT_TRUE(detector().detect(cv::Mat(200, 300, CV_8UC3, cv::Scalar::all(128))).empty());
  EXPECT_TRUE(detector()
                  .detect(cv::Mat(5, 5, CV_8UC3, cv::Scalar::all(0)))
                  .empty());  // smaller than a face
  EXPECT_THROW(detector().detect(cv::Mat()), InvalidInput);
}

}  // namespace
}  // namespace facemag
