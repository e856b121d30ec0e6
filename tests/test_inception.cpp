// FaceNet InceptionResnetV1 against facenet-pytorch with formula weights
// (../shared/golden/inception_resnet_v1): embeddings (also in int8, within its error model) and
// classifier logits.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <iostream>
#include <thread>

#include "bf16_error_model.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/nn/inception_resnet_v1.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

std::filesystem::path golden() { return test::golden_dir() / "inception_resnet_v1"; }

std::vector<cv::Mat> golden_inputs(const nlohmann::json& json) {
  std::vector<cv::Mat> faces;
  for (const auto& input : json["inputs"]) {
    faces.push_back(cv::imread((test::golden_dir() / input["file"].get<std::string>()).string(),
                               cv::IMREAD_COLOR));
  }
  return faces;
}

TEST(InceptionGolden, StateDictSizesMatchTheReference) {
  FACEMAG_REQUIRE_FILE(golden() / "inception_resnet_v1.json");
  const auto json = test::read_json(golden() / "inception_resnet_v1.json");
  EXPECT_EQ(nn::state_dict(*nn::InceptionResnetV1(0)).size(),
            json["state_dict_entries"]["classify_false"].get<std::size_t>());
  EXPECT_EQ(nn::state_dict(*nn::InceptionResnetV1(8631)).size(),
            json["state_dict_entries"]["classify_true"].get<std::size_t>());
}

TEST(InceptionGolden, EmbeddingsMatchFacenetPytorch) {
  FACEMAG_REQUIRE_FILE(golden() / "embeddings.npy");
  const auto json = test::read_json(golden() / "inception_resnet_v1.json");
  const auto faces = golden_inputs(json);
  const auto expected = io::read_npy(golden() / "embeddings.npy").to(torch::kFloat64);
  // reference: module by module; fp32: BatchNorm and residual scales folded, channels-last.
  for (const Precision precision : {Precision::kReference, Precision::kFloat32}) {
    const Embedder embedder =
        Embedder::with_formula_weights(builtin_manifest("inception_resnet_v1"), {precision});
    const auto embeddings = embedder.embed(faces);
    double worst = 0;
    for (std::size_t i = 0; i < faces.size(); ++i) {
      const auto ours =
          torch::tensor(embeddings[i].normalized(), torch::kFloat32).to(torch::kFloat64);
      const auto ref = expected[static_cast<std::int64_t>(i)];
      worst = std::max(worst, 1.0 - (ours.dot(ref) / (ours.norm() * ref.norm())).item<double>());
    }
    std::cout << "[ parity ] inception_resnet_v1 " << precision_name(precision)
              << " embeddings: 1 - min cosine " << worst << "\n";
    EXPECT_LE(worst, 1e-7);  // the golden's own, tighter tolerance (inputs differ by only ~1e-3)
  }
}

TEST(InceptionGolden, LogitsMatchFacenetPytorch) {
  FACEMAG_REQUIRE_FILE(golden() / "logits.npy");
  const auto json = test::read_json(golden() / "inception_resnet_v1.json");
  const auto faces = golden_inputs(json);
  ModelManifest manifest = builtin_manifest("inception_resnet_v1");
  manifest.num_classes = 8631;
  const auto expected = io::read_npy(golden() / "logits.npy").to(torch::kFloat64);
  for (const Precision precision : {Precision::kReference, Precision::kFloat32}) {
    const Embedder embedder = Embedder::with_formula_weights(manifest, {precision});
    const auto logits = embedder.logits(embedder.preprocess(faces)).to(torch::kFloat64);
    ASSERT_EQ(logits.sizes(), expected.sizes());
    const double max_err = (logits - expected).abs().max().item<double>();
    const double scale = expected.abs().max().item<double>();
    std::cout << "[ parity ] inception_resnet_v1 " << precision_name(precision)
              << " logits: max |error| " << max_err << " (" << max_err / scale
              << " of max |logit|)\n";
    EXPECT_LE(max_err, 1e-4 * scale);
    const auto argmax = logits.argmax(1);
    for (std::int64_t i = 0; i < argmax.size(0); ++i) {
      EXPECT_EQ(argmax[i].item<std::int64_t>(), json["logits_argmax"][i].get<std::int64_t>());
    }
  }
  // Without a classifier head, asking for logits is a clear error.
  EXPECT_THROW(Embedder::with_formula_weights(builtin_manifest("inception_resnet_v1"))
                   .logits(torch::zeros({1, 3, 160, 160})),
               InvalidInput);
}

// int8 through the Embedder, calibrated on the golden faces: each embedding's direction within
// the bound of the int8 emulation (bf16_error_model.hpp) of that calibration, both against the
// golden (facenet-pytorch normalises its embeddings, so directions are what it records).
TEST(InceptionGolden, Int8StaysWithinItsErrorModel) {
  FACEMAG_REQUIRE_FILE(golden() / "embeddings.npy");
  if (!nn::OneDnnGraph::available(torch::kChar)) GTEST_SKIP() << "CPU without VNNI: no int8";
  const auto json = test::read_json(golden() / "inception_resnet_v1.json");
  const auto faces = golden_inputs(json);
  const auto manifest = builtin_manifest("inception_resnet_v1");
  const Embedder fp32 = Embedder::with_formula_weights(manifest);
  const auto calibration = fp32.calibrate_int8(faces);
  test::TempDir tmp;
  write_int8_calibration(tmp / "inception.int8.json", manifest, calibration);
  const Embedder int8 = Embedder::with_formula_weights(
      manifest, {Precision::kInt8, true, tmp / "inception.int8.json"});
  std::vector<float> rows;
  for (const auto& e : int8.embed(faces)) rows.insert(rows.end(), e.raw.begin(), e.raw.end());
  const auto expected = io::read_npy(golden() / "embeddings.npy");
  const auto direction = [](const torch::Tensor& t) {
    return torch::nn::functional::normalize(t.to(torch::kFloat64),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  const auto ours = direction(torch::from_blob(rows.data(), expected.sizes(), torch::kFloat32));

  torch::NoGradGuard no_grad;
  nn::InceptionResnetV1 net(0);
  nn::fill_formula_weights(*net);
  net->eval();
  test::Int8EmulationSink sink(calibration);
  const auto emulated =
      direction(sink.value(net->describe(sink, sink.input(fp32.preprocess(faces)), false).front()));
  const auto errors = test::relative_errors(ours, direction(expected));
  const auto model_errors = test::relative_errors(emulated, direction(expected));
  for (std::size_t i = 0; i < errors.size(); ++i) {
    EXPECT_LE(errors[i], test::kInt8ErrorFactor * model_errors[i])
        << "face " << i << ", emulated int8 " << model_errors[i];
  }
  std::cout << "[ parity ] inception_resnet_v1 int8: relative error of the direction "
            << *std::max_element(errors.begin(), errors.end()) << " (emulated "
            << *std::max_element(model_errors.begin(), model_errors.end()) << ")\n";
}

// prepare_inference() against the module as PyTorch runs it: 160 x 160 batches of several
// sizes from two threads at once (the oneDNN stem compiles per batch size and keeps three), and
// another input size, which the stem leaves to the LibTorch modules.
TEST(Inception, PreparedNetworkAgreesWithTheModuleForEveryBatchSize) {
  nn::InceptionResnetV1 reference, prepared;
  nn::fill_formula_weights(*reference);
  nn::fill_formula_weights(*prepared);
  reference->eval();
  prepared->eval();
  prepared->prepare_inference();
  torch::NoGradGuard no_grad;
  const auto generator = torch::Generator(at::detail::createCPUGenerator(11));
  const auto input = torch::rand({5, 3, 160, 160}, generator) * 2 - 1;
  const auto expected = reference->forward(input);
  const std::vector<std::int64_t> batches{1, 2, 5, 3, 4, 1};
  std::vector<double> worst(2, 0.0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      torch::NoGradGuard thread_no_grad;
      for (std::size_t i = t; i < batches.size() + t; ++i) {
        const auto n = batches[i % batches.size()];
        worst[t] =
            std::max(worst[t], test::relative_difference(prepared->forward(input.slice(0, 0, n)),
                                                         expected.slice(0, 0, n)));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LT(std::max(worst[0], worst[1]), 1e-5);
  const auto small = torch::rand({2, 3, 128, 128}, generator) * 2 - 1;
  EXPECT_LT(test::relative_difference(prepared->forward(small), reference->forward(small)), 1e-5);
}

TEST(Inception, PrewhitenStandardisesEachFaceByItsOwnStatistics) {
  ModelManifest manifest = builtin_manifest("inception_resnet_v1");
  manifest.prewhiten = true;
  const Embedder embedder = Embedder::with_formula_weights(manifest);
  cv::Mat face(160, 160, CV_8UC3);
  cv::randu(face, 0, 256);
  const cv::Mat flat(160, 160, CV_8UC3, cv::Scalar(7, 7, 7));
  const auto batch = embedder.preprocess({face, flat}).to(torch::kFloat64);
  // Independent computation: mean 0 and unbiased std 1 over all values of the face.
  EXPECT_NEAR(batch[0].mean().item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(batch[0].std().item<double>(), 1.0, 1e-5);
  // A constant face: std 0 is clamped to 1/sqrt(n), so the result is all zeros, not NaN.
  EXPECT_EQ(batch[1].abs().max().item<double>(), 0.0);
  // RGB order is kept: the first channel of the tensor is the image's red (OpenCV's last).
  cv::Mat red(160, 160, CV_8UC3, cv::Scalar(0, 0, 255));
  manifest.prewhiten = false;
  const auto fixed = Embedder::with_formula_weights(manifest).preprocess({red});
  EXPECT_FLOAT_EQ(fixed[0][0][0][0].item<float>(), (255 - 127.5f) / 128);
  EXPECT_FLOAT_EQ(fixed[0][2][0][0].item<float>(), (0 - 127.5f) / 128);
}

}  // namespace
}  // namespace facemag
