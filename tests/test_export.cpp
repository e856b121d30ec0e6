// ONNX export: every network facemag has, written by the exporter and run by OpenCV DNN (and ONNX
// Runtime where npm installed it), against the goldens and facemag's own outputs; the CLI's bad
// inputs; and the model store (add / list / verify / remove, SHA-256 checked on every load,
// --model in every command).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <onnx/onnx_pb.h>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdlib>
#include <fstream>
#include <optional>

#include "facemag/error.hpp"
#include "facemag/export/onnx.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/model/network.hpp"
#include "facemag/model/store.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/mtcnn_nets.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

namespace fs = std::filesystem;

// The goldens' own bounds (README of ../shared/golden): per row, cosine and relative norm error.
constexpr double kMinCosine = 0.99999;
constexpr double kMaxNormError = 1e-4;

std::vector<cv::Mat> read_images(const std::vector<fs::path>& paths) {
  std::vector<cv::Mat> images;
  for (const auto& p : paths) {
    images.push_back(cv::imread(p.string(), cv::IMREAD_COLOR));
    if (images.back().empty()) ADD_FAILURE() << "cannot read " << p;
  }
  return images;
}

// OpenCV images as the "image" input of a --with-preprocessing graph: uint8 N x H x W x 3, BGR.
cv::Mat nhwc_blob(const std::vector<cv::Mat>& images) {
  const int dims[] = {static_cast<int>(images.size()), images[0].rows, images[0].cols, 3};
  cv::Mat blob(4, dims, CV_8U);
  const std::size_t each = images[0].total() * 3;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const cv::Mat image = images[i].isContinuous() ? images[i] : images[i].clone();
    std::memcpy(blob.ptr<std::uint8_t>() + i * each, image.data, each);
  }
  return blob;
}

cv::Mat float_blob(const torch::Tensor& t) {
  const auto c = t.contiguous();
  std::vector<int> dims(c.sizes().begin(), c.sizes().end());
  cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F);
  std::memcpy(blob.ptr<float>(), c.data_ptr<float>(), c.nbytes());
  return blob;
}

torch::Tensor to_tensor(const cv::Mat& m) {
  std::vector<std::int64_t> dims(m.size.p, m.size.p + m.dims);
  return torch::from_blob(const_cast<float*>(m.ptr<float>()), dims, torch::kFloat32).clone();
}

// Runs serialized ONNX in OpenCV DNN; outputs in the order of `names`.
std::vector<torch::Tensor> run_opencv(const std::string& onnx, const cv::Mat& input,
                                      const std::vector<std::string>& names) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(onnx.data(), onnx.size());
  net.setInput(input);
  std::vector<cv::Mat> outs;
  net.forward(outs, std::vector<cv::String>(names.begin(), names.end()));
  std::vector<torch::Tensor> tensors;
  for (const auto& m : outs) tensors.push_back(to_tensor(m));
  return tensors;
}

// ONNX Runtime through npm's onnxruntime-node (scripts/test.sh installs it into the build
// folder), in a folder of its own; nullopt with the reason in `skipped` when it is not there.
std::optional<std::vector<torch::Tensor>> run_onnxruntime(const std::string& onnx,
                                                          const cv::Mat& input,
                                                          const std::vector<std::string>& names,
                                                          std::string& skipped) {
  const fs::path npm = fs::path(FACEMAG_BINARY_DIR) / "npm";
  if (!fs::exists(npm / "node_modules" / "onnxruntime-node")) {
    skipped = "onnxruntime-node is absent from " + npm.string() +
              " (scripts/test.sh installs it with npm)";
    return std::nullopt;
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    skipped = "node is absent";
    return std::nullopt;
  }
  static int runs = 0;
  const fs::path dir =
      fs::temp_directory_path() /
      ("facemag-onnxruntime-" + std::to_string(::getpid()) + "-" + std::to_string(++runs));
  fs::create_directories(dir);
  test::write_file(dir / "model.onnx", onnx);
  const bool uint8 = input.depth() == CV_8U;
  test::write_file(dir / "input.bin", std::string(reinterpret_cast<const char*>(input.data),
                                                  input.total() * input.elemSize()));
  std::string dims;
  for (int d = 0; d < input.dims; ++d) dims += (d ? "," : "") + std::to_string(input.size[d]);
  const std::string command =
      "node " + (fs::path(FACEMAG_SOURCE_DIR) / "tests/onnx/run_onnxruntime.cjs").string() + " " +
      npm.string() + " " + (dir / "model.onnx").string() + " " + (dir / "input.bin").string() +
      " " + (uint8 ? "uint8" : "float32") + " " + dims + " " + dir.string() + " > " +
      (dir / "shapes.json").string();
  std::optional<std::vector<torch::Tensor>> outputs;
  if (std::system(command.c_str()) == 0) {
    const auto shapes = test::read_json(dir / "shapes.json");
    outputs.emplace();
    for (const auto& name : names) {
      const auto bytes = test::read_file(dir / (name + ".bin"));
      outputs->push_back(torch::from_blob(const_cast<char*>(bytes.data()),
                                          shapes.at(name).get<std::vector<std::int64_t>>(),
                                          torch::kFloat32)
                             .clone());
    }
  } else {
    ADD_FAILURE() << "ONNX Runtime failed: " << command;
  }
  fs::remove_all(dir);
  return outputs;
}

// The graph's outputs (in the order of `names`) from every runtime here: OpenCV DNN always, ONNX
// Runtime where it is installed (else the test says it skipped that one).
std::vector<std::pair<std::string, std::vector<torch::Tensor>>> run_everywhere(
    const std::string& onnx, const cv::Mat& input, const std::vector<std::string>& names,
    const std::string& what) {
  std::vector<std::pair<std::string, std::vector<torch::Tensor>>> runs{
      {"OpenCV DNN", run_opencv(onnx, input, names)}};
  std::string skipped;
  if (auto ort = run_onnxruntime(onnx, input, names, skipped)) {
    runs.emplace_back("ONNX Runtime", std::move(*ort));
  } else if (!skipped.empty()) {
    std::cout << "[ SKIPPED  ] ONNX Runtime check of " << what << ": " << skipped << "\n";
  }
  return runs;
}

// Per row: cosine >= min_cosine and |norm / expected norm - 1| <= max_norm_error.
void expect_rows_match(const torch::Tensor& actual, const torch::Tensor& expected,
                       double min_cosine, double max_norm_error, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const auto a = actual.to(torch::kFloat64), e = expected.to(torch::kFloat64);
  const auto cos = (a * e).sum(1) / (a.norm(2, 1) * e.norm(2, 1));
  const auto norm_error = (a.norm(2, 1) / e.norm(2, 1) - 1).abs();
  EXPECT_GE(cos.min().item<double>(), min_cosine) << what;
  EXPECT_LE(norm_error.max().item<double>(), max_norm_error) << what;
}

// The "features" of every runtime against the expected rows.
void expect_runtimes_match(const std::string& onnx, const cv::Mat& input,
                           const torch::Tensor& expected, double min_cosine, double max_norm_error,
                           const std::string& what) {
  for (const auto& [runtime, outs] : run_everywhere(onnx, input, {"features"}, what))
    expect_rows_match(outs[0], expected, min_cosine, max_norm_error, what + " in " + runtime);
}

TrainableNetwork formula_network(const ModelManifest& manifest) {
  auto network = build_network(manifest);
  nn::fill_formula_weights(*network.module);
  network.module->eval();
  return network;
}

OnnxExportOptions with_preprocessing() {
  OnnxExportOptions o;
  o.with_preprocessing = true;
  return o;
}

class OnnxExportIResNetGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(OnnxExportIResNetGolden, RawBgrCropsGiveMagFaceFeatures) {
  const std::string arch = GetParam();
  const auto golden = test::golden_dir() / "iresnet" / (arch + ".npy");
  FACEMAG_REQUIRE_FILE(golden);
  const auto spec = test::read_json(test::golden_dir() / "iresnet" / (arch + ".json"));
  std::vector<fs::path> paths;
  for (const auto& p : spec.at("inputs"))
    paths.push_back(test::golden_dir() / p.get<std::string>());
  const auto faces = read_images(paths);
  const auto expected = io::read_npy(golden);
  const auto manifest = builtin_manifest(arch);
  const auto network = formula_network(manifest);

  const auto onnx = embedding_network_to_onnx(*network.module, manifest, with_preprocessing());
  expect_runtimes_match(onnx, nhwc_blob(faces), expected, kMinCosine, kMaxNormError,
                        arch + " --with-preprocessing");
  if (arch == "iresnet18") {  // the float input, fed facemag's own preprocessing
    const auto plain = embedding_network_to_onnx(*network.module, manifest, {});
    expect_runtimes_match(plain, float_blob(preprocess_faces(manifest, faces)), expected,
                          kMinCosine, kMaxNormError, arch);
  }
}

INSTANTIATE_TEST_SUITE_P(Depths, OnnxExportIResNetGolden,
                         ::testing::Values("iresnet18", "iresnet34", "iresnet50", "iresnet100"));

fs::path mobilefacenet_weights() {
  return test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt";
}

// The real MobileFaceNet on the faces-casia crops: the golden features, from raw BGR crops and
// from facemag's preprocessing alike.
TEST(OnnxExportGolden, RealMobileFaceNetGivesTheGoldenFeatures) {
  const auto dir = test::golden_dir() / "mobilefacenet";
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  FACEMAG_REQUIRE_FILE(dir / "embeddings.npy");
  const auto spec = test::read_json(dir / "mobilefacenet.json");
  std::vector<fs::path> paths;
  for (const auto& f : spec.at("faces")) paths.push_back(dir / f.at("png").get<std::string>());
  const auto faces = read_images(paths);
  const auto expected = io::read_npy(dir / "embeddings.npy");
  const auto manifest = builtin_manifest("mobilefacenet");
  const auto network = load_network(manifest, mobilefacenet_weights());
  network.module->eval();

  const auto onnx = embedding_network_to_onnx(*network.module, manifest, with_preprocessing());
  expect_runtimes_match(onnx, nhwc_blob(faces), expected, kMinCosine, kMaxNormError,
                        "mobilefacenet --with-preprocessing");
  const auto plain = embedding_network_to_onnx(*network.module, manifest, {});
  expect_runtimes_match(plain, float_blob(preprocess_faces(manifest, faces)), expected, kMinCosine,
                        kMaxNormError, "mobilefacenet");
}

// facenet-pytorch's network with its 8631-class classifier: the golden embeddings (to the
// golden's own tighter bound) and logits; without the classifier only "features" remains.
TEST(OnnxExportGolden, InceptionResnetV1WithAndWithoutItsClassifier) {
  const auto dir = test::golden_dir() / "inception_resnet_v1";
  FACEMAG_REQUIRE_FILE(dir / "embeddings.npy");
  const auto spec = test::read_json(dir / "inception_resnet_v1.json");
  std::vector<fs::path> paths;
  for (const auto& in : spec.at("inputs"))
    paths.push_back(test::golden_dir() / in.at("file").get<std::string>());
  const auto faces = read_images(paths);  // RGB PNGs, read by OpenCV as BGR
  auto manifest = builtin_manifest("inception_resnet_v1");
  manifest.num_classes = 8631;
  const auto network = formula_network(manifest);

  const auto onnx = embedding_network_to_onnx(*network.module, manifest, with_preprocessing());
  const auto embeddings = io::read_npy(dir / "embeddings.npy");
  const auto logits = io::read_npy(dir / "logits.npy");
  const double bound = 1e-4 * logits.abs().max().item<double>();
  for (const auto& [runtime, outs] :
       run_everywhere(onnx, nhwc_blob(faces), {"features", "logits"}, "inception_resnet_v1")) {
    // The golden embeddings are facenet-pytorch's, L2-normalised: compare directions.
    expect_rows_match(outs[0], embeddings, 1 - 1e-7, 1e30, "features in " + runtime);
    EXPECT_LE((outs[1] - logits).abs().max().item<double>(), bound) << runtime;
    EXPECT_TRUE(outs[1].argmax(1).equal(logits.argmax(1))) << runtime;
  }

  OnnxExportOptions no_classifier = with_preprocessing();
  no_classifier.with_classifier = false;
  onnx::ModelProto model;
  ASSERT_TRUE(
      model.ParseFromString(embedding_network_to_onnx(*network.module, manifest, no_classifier)));
  ASSERT_EQ(model.graph().output_size(), 1);
  EXPECT_EQ(model.graph().output(0).name(), "features");
}

// MTCNN's networks with the real weights: the ONNX maps equal facemag's forward() (1e-4) on
// a real photo (P-Net at the photo's own size: dynamic height and width) and on crops of it.
TEST(OnnxExportGolden, MtcnnNetworksGiveFacemagsMaps) {
  const auto weights = test::shared_dir() / "weights" / "mtcnn";
  const auto photo_path = test::shared_dir() / "data" / "faces-casia" / "bruce" / "001.jpg";
  FACEMAG_REQUIRE_FILE(weights / "pnet.pt");
  FACEMAG_REQUIRE_FILE(photo_path);
  const cv::Mat photo = cv::imread(photo_path.string());
  // facemag's (and facenet-pytorch's) input: RGB, (x - 127.5) / 128, NCHW.
  const auto reference_input = [](const std::vector<cv::Mat>& images) {
    std::vector<torch::Tensor> rows;
    for (const auto& image : images) {
      const cv::Mat im = image.clone();  // continuous, and alive while hwc is read
      const auto hwc = torch::from_blob(im.data, {im.rows, im.cols, 3}, torch::kUInt8);
      rows.push_back(((hwc.permute({2, 0, 1}).flip(0).to(torch::kFloat32) - 127.5) / 128));
    }
    return torch::stack(rows);
  };
  const auto expect_maps = [&](torch::nn::Module& net, const std::vector<cv::Mat>& images,
                               const std::vector<std::string>& names,
                               const std::vector<torch::Tensor>& expected) {
    const auto check = [&](const std::string& onnx, const cv::Mat& input, const char* what) {
      for (const auto& [runtime, outs] : run_everywhere(onnx, input, names, what)) {
        for (std::size_t i = 0; i < names.size(); ++i) {
          ASSERT_EQ(outs[i].sizes(), expected[i].sizes()) << names[i] << " in " << runtime;
          EXPECT_LE((outs[i] - expected[i]).abs().max().item<double>(), 1e-4)
              << what << " " << names[i] << " in " << runtime;
        }
      }
    };
    check(mtcnn_network_to_onnx(net, "", with_preprocessing()), nhwc_blob(images),
          "MTCNN --with-preprocessing");
    check(mtcnn_network_to_onnx(net, "", {}), float_blob(reference_input(images)), "MTCNN");
  };
  torch::NoGradGuard no_grad;
  nn::PNet pnet;
  nn::load_mtcnn_weights(*pnet, weights / "pnet.pt");
  cv::Mat scaled;
  cv::resize(photo, scaled, {photo.cols * 3 / 5, photo.rows * 3 / 5}, 0, 0, cv::INTER_AREA);
  const auto [p_boxes, p_prob] = pnet->forward(reference_input({scaled}));
  expect_maps(*pnet, {scaled}, {"boxes", "prob"}, {p_boxes, p_prob});

  std::vector<cv::Mat> crops24, crops48;
  for (int k = 0; k < 4; ++k) {
    const cv::Rect box(20 + 15 * k, 30 + 10 * k, 90 + 10 * k, 100 + 5 * k);
    cv::Mat c24, c48;
    cv::resize(photo(box), c24, {24, 24}, 0, 0, cv::INTER_AREA);
    cv::resize(photo(box), c48, {48, 48}, 0, 0, cv::INTER_AREA);
    crops24.push_back(c24);
    crops48.push_back(c48);
  }
  nn::RNet rnet;
  nn::load_mtcnn_weights(*rnet, weights / "rnet.pt");
  const auto [r_boxes, r_prob] = rnet->forward(reference_input(crops24));
  expect_maps(*rnet, crops24, {"boxes", "prob"}, {r_boxes, r_prob});
  nn::ONet onet;
  nn::load_mtcnn_weights(*onet, weights / "onet.pt");
  const auto [o_boxes, o_landmarks, o_prob] = onet->forward(reference_input(crops48));
  expect_maps(*onet, crops48, {"boxes", "landmarks", "prob"}, {o_boxes, o_landmarks, o_prob});
}

TEST(OnnxExportGolden, MetadataCarriesTheManifestAndTheInputIsDeclared) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  auto manifest = builtin_manifest("mobilefacenet");
  const auto network = load_network(manifest, mobilefacenet_weights());
  network.module->eval();
  manifest.sha256 = io::sha256_file(mobilefacenet_weights());
  OnnxExportOptions options = with_preprocessing();
  options.batch = 8;
  options.opset = 13;
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(embedding_network_to_onnx(*network.module, manifest, options)));
  std::map<std::string, std::string> meta;
  for (const auto& p : model.metadata_props()) meta[p.key()] = p.value();
  EXPECT_EQ(meta["color_order"], "RGB");
  EXPECT_EQ(meta["pixel_offset"], "127.5");
  EXPECT_EQ(meta["pixel_scale"], "128.0");
  EXPECT_EQ(meta["input_height"], "112");
  EXPECT_EQ(meta["input_width"], "96");
  EXPECT_EQ(meta["alignment_template"], "sphereface-96x112");
  EXPECT_EQ(meta["embedding_size"], "128");
  EXPECT_EQ(meta["magnitude_is_quality"], "false");
  EXPECT_EQ(meta["weights_sha256"], manifest.sha256);
  EXPECT_EQ(manifest_from_json(meta["manifest"], "metadata").licence, manifest.licence);
  EXPECT_EQ(model.opset_import(0).version(), 13);
  const auto& input = model.graph().input(0);
  EXPECT_EQ(input.name(), "image");
  EXPECT_EQ(input.type().tensor_type().elem_type(), onnx::TensorProto::UINT8);
  const auto& dims = input.type().tensor_type().shape().dim();
  ASSERT_EQ(dims.size(), 4);
  EXPECT_EQ(dims[0].dim_value(), 8);
  EXPECT_EQ(dims[1].dim_value(), 112);
  EXPECT_EQ(dims[2].dim_value(), 96);
  EXPECT_EQ(dims[3].dim_value(), 3);
}

TEST(OnnxExport, RefusesWhatItCannotWriteFaithfully) {
  const auto manifest = builtin_manifest("mobilefacenet");
  const auto network = formula_network(manifest);
  for (const int opset : {12, 18}) {
    OnnxExportOptions o;
    o.opset = opset;
    EXPECT_THROW(embedding_network_to_onnx(*network.module, manifest, o), InvalidInput);
  }
  auto prewhitened = manifest;
  prewhitened.prewhiten = true;
  EXPECT_THROW(embedding_network_to_onnx(*network.module, prewhitened, with_preprocessing()),
               InvalidInput);
  EXPECT_THROW(embedding_network_to_onnx(*network.module, builtin_manifest("iresnet18"), {}),
               InvalidInput);  // a MobileFaceNet is not an iResNet
}

// ---- the CLI ----

// Files left in a folder besides the captured stderr (no partial output may remain).
std::vector<std::string> files_in(const test::TempDir& tmp) {
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(tmp.path())) {
    if (e.is_regular_file() && e.path().filename() != "stderr.txt")
      names.push_back(e.path().lexically_relative(tmp.path()).string());
  }
  return names;
}

TEST(ExportCli, WritesAnOnnxFileThatOpenCvRuns) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  test::TempDir tmp;
  const auto r = test::run_cli(
      "export onnx --arch mobilefacenet --weights " + mobilefacenet_weights().string() + " --out " +
          (tmp / "m.onnx").string() + " --opset 15 --batch 2 --with-preprocessing",
      tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto dir = test::golden_dir() / "mobilefacenet";
  const auto spec = test::read_json(dir / "mobilefacenet.json");
  const auto faces = read_images({dir / spec["faces"][0]["png"].get<std::string>(),
                                  dir / spec["faces"][1]["png"].get<std::string>()});
  const auto onnx = test::read_file(tmp / "m.onnx");
  expect_rows_match(run_opencv(onnx, nhwc_blob(faces), {"features"})[0],
                    io::read_npy(dir / "embeddings.npy").slice(0, 0, 2), kMinCosine, kMaxNormError,
                    "CLI export");
  EXPECT_EQ(files_in(tmp), std::vector<std::string>{"m.onnx"});
}

TEST(ExportCli, BadInputIsOneClearErrorAndNoFile) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  const auto mfn = mobilefacenet_weights().string();
  const auto pnet = (test::shared_dir() / "weights" / "mtcnn" / "pnet.pt").string();
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases{
      {"--arch iresnet18 --weights " + mfn + " --out OUT/x.onnx", "068.ckpt"},
      {"--arch mobilefacenet --weights " + mfn + " --out OUT/missing/x.onnx", "does not exist"},
      {"--arch mobilefacenet --weights " + mfn + " --out OUT/x.onnx --opset 12",
       "outside the supported 13..17"},
      {"--arch mobilefacenet --weights " + mfn + " --out OUT/x.onnx --opset 18",
       "outside the supported 13..17"},
      {"--arch mobilefacenet --weights " + mfn + " --out OUT/x.onnx --batch 0", "--batch"},
      {"--arch mtcnn-rnet --weights " + pnet + " --out OUT/x.onnx", "pnet.pt"},
  };
  for (const auto& c : cases) {
    test::TempDir tmp;
    auto args = c.args;
    args.replace(args.find("OUT"), 3, tmp.path().string());
    const auto r = test::run_cli("export onnx " + args, tmp);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find("facemag: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(files_in(tmp).empty()) << args;
  }
}

// ---- the model store ----

// Flips one bit 100 bytes before the end: inside a tensor's values, so the checkpoint still loads
// (only its hash tells).
void change_one_byte(const fs::path& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-100, std::ios::end);
  char c = 0;
  f.read(&c, 1);
  f.seekp(-100, std::ios::end);
  c = static_cast<char>(c ^ 0x10);
  f.write(&c, 1);
}

TEST(ModelStoreCli, AddListVerifyPathRemoveRoundTrip) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  test::TempDir tmp;
  const std::string env = "FACEMAG_HOME=" + tmp.path().string();
  auto r = test::run_cli("models add mfn " + mobilefacenet_weights().string() +
                             " --arch mobilefacenet --licence 'CC BY-NC 4.0 (research only)'",
                         tmp, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto sha = io::sha256_file(mobilefacenet_weights());
  EXPECT_NE(r.out.find(sha), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("research only"), std::string::npos) << r.err;

  r = test::run_cli("models list", tmp, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("mfn\tmobilefacenet\t", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("[RESEARCH ONLY]"), std::string::npos) << r.out;
  r = test::run_cli("models list --json", tmp, env);
  const auto listed = test::json_lines(r.out);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["sha256"], sha);
  EXPECT_EQ(listed[0]["research_only"], true);

  r = test::run_cli("models path mfn", tmp, env);
  const fs::path stored = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(test::read_file(stored), test::read_file(mobilefacenet_weights()));
  EXPECT_EQ(test::run_cli("models verify", tmp, env).exit_code, 0);
  r = test::run_cli("models add mfn " + mobilefacenet_weights().string() + " --arch mobilefacenet",
                    tmp, env);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already"), std::string::npos) << r.err;

  r = test::run_cli("models remove mfn", tmp, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::run_cli("models list --json", tmp, env).out, "");
  EXPECT_FALSE(fs::exists(stored));
  r = test::run_cli("models path mfn", tmp, env);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no model 'mfn'"), std::string::npos) << r.err;
}

TEST(ModelStoreCli, AddRefusesACheckpointOfAnotherArchitecture) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  test::TempDir tmp;
  const auto r =
      test::run_cli("models add wrong " + mobilefacenet_weights().string() + " --arch iresnet18",
                    tmp, "FACEMAG_HOME=" + tmp.path().string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("068.ckpt"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "models" / "wrong"));
}

// `models add mfn` of the real MobileFaceNet into the store under tmp.
void add_mobilefacenet_to_store(const test::TempDir& tmp, const std::string& env) {
  const auto r = test::run_cli(
      "models add mfn " + mobilefacenet_weights().string() + " --arch mobilefacenet", tmp, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// After the install step (`models add ... --default`, the detector in $FACEMAG_HOME/mtcnn) the main
// job needs no flags, and gives what the same model named by flags gives; an architecture the
// default model is not is refused naming where weights were looked for.
TEST(ModelStoreCli, TheDefaultModelLetsTheMainJobRunWithoutFlags) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  const auto mtcnn = test::shared_dir() / "weights" / "mtcnn";
  FACEMAG_REQUIRE_FILE(mtcnn / "onet.pt");
  const auto photos = test::shared_dir() / "data" / "faces-casia" / "neil";
  FACEMAG_REQUIRE_FILE(photos / "001.jpg");
  test::TempDir tmp;
  const std::string env = "FACEMAG_HOME=" + tmp.path().string();
  fs::copy(mtcnn, tmp / "mtcnn");
  auto r = test::run_cli(
      "models add mfn " + mobilefacenet_weights().string() + " --arch mobilefacenet --default", tmp,
      env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("models default", tmp, env);
  EXPECT_EQ(r.out, "mfn\n") << r.err;
  EXPECT_NE(test::run_cli("models list", tmp, env).out.find("\tdefault\n"), std::string::npos);

  const auto bare = test::run_cli("cluster " + photos.string(), tmp, env);
  ASSERT_EQ(bare.exit_code, 0) << bare.err;
  const auto flagged =
      test::run_cli("cluster " + photos.string() + " --arch mobilefacenet --weights " +
                        mobilefacenet_weights().string() + " --mtcnn " + mtcnn.string(),
                    tmp, env);
  ASSERT_EQ(flagged.exit_code, 0) << flagged.err;
  // The stored model's manifest is named after it; the groups are the same.
  auto strip_model_line = [](const std::string& out) { return out.substr(out.find('\n') + 1); };
  EXPECT_EQ(strip_model_line(bare.out), strip_model_line(flagged.out));
  EXPECT_NE(bare.out.find("mfn"), std::string::npos) << bare.out;

  r = test::run_cli("embed --arch iresnet18 " + (photos / "001.jpg").string(), tmp, env);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("magface-iresnet18.pth does not exist"), std::string::npos) << r.err;

  r = test::run_cli("models remove mfn", tmp, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::run_cli("models default", tmp, env).exit_code, 1);
}

// One changed byte: every load refuses it naming both hashes, `models verify` fails, and
// --no-verify loads it with a warning.
TEST(ModelStoreCli, AChangedByteIsRefusedNamingBothHashes) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  test::TempDir tmp;
  const std::string env = "FACEMAG_HOME=" + tmp.path().string();
  ASSERT_NO_FATAL_FAILURE(add_mobilefacenet_to_store(tmp, env));
  const auto crop =
      test::golden_dir() / "mobilefacenet" / "inputs" / "faces-casia__bruce__001__face0.png";
  auto r = test::run_cli("embed --aligned --model mfn " + crop.string(), tmp, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto by_name = test::json_lines(r.out);
  r = test::run_cli("embed --aligned --arch mobilefacenet --weights " +
                        mobilefacenet_weights().string() + " " + crop.string(),
                    tmp, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(by_name.at(0)["embedding"], test::json_lines(r.out).at(0)["embedding"]);

  const fs::path stored = ModelStore(tmp / "models").get("mfn").weights;
  const auto good = io::sha256_file(stored);
  change_one_byte(stored);
  const auto bad = io::sha256_file(stored);
  r = test::run_cli("embed --aligned --model mfn " + crop.string(), tmp, env);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(good), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  r = test::run_cli("models verify mfn", tmp, env);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("FAILED\tmfn"), std::string::npos) << r.out;
  r = test::run_cli("embed --aligned --no-verify --model mfn " + crop.string(), tmp, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("--no-verify"), std::string::npos) << r.err;
}

// A gallery bound through --model records the SHA-256 checked while loading; with --no-verify it
// records the file's own hash, never the manifest's unchecked one.
TEST(ModelStoreCli, GalleryBindingRecordsOnlyAVerifiedHash) {
  FACEMAG_REQUIRE_FILE(mobilefacenet_weights());
  test::TempDir tmp;
  const std::string env = "FACEMAG_HOME=" + tmp.path().string();
  ASSERT_NO_FATAL_FAILURE(add_mobilefacenet_to_store(tmp, env));
  const fs::path stored = ModelStore(tmp / "models").get("mfn").weights;
  const auto good = io::sha256_file(stored);
  auto r = test::run_cli("gallery create " + (tmp / "a.db").string() + " --model mfn", tmp, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sha256 " + good.substr(0, 12)), std::string::npos) << r.out;

  change_one_byte(stored);
  const auto changed = io::sha256_file(stored);
  r = test::run_cli("gallery create " + (tmp / "b.db").string() + " --model mfn --no-verify", tmp,
                    env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sha256 " + changed.substr(0, 12)), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(good.substr(0, 12)), std::string::npos) << r.out;
}

// Every command that takes --arch/--weights takes --model: an unknown name is the store's error
// (so the option reached the store), never a parse error or a silent default.
TEST(ModelStoreCli, ModelOptionResolvesInEveryCommand) {
  test::TempDir tmp;
  const std::string env = "FACEMAG_HOME=" + tmp.path().string();
  const auto img = (tmp / "x.png").string();
  const auto db = (tmp / "g.db").string();
  const auto out = (tmp / "out").string();
  for (const std::string& command : std::vector<std::string>{
           "embed " + img, "quality " + img, "verify " + img + " " + img,
           "calibrate --lfw-pairs " + img + " " + img, "eval pairs --lfw-pairs " + img + " " + img,
           "eval erc --lfw-pairs " + img + " " + img,
           "eval ijb " + img + " --meta " + img + " --images " + img,
           "eval identify " + img + " --gallery " + img, "eval cluster " + img, "cluster " + img,
           "bench embed", "train " + img + " --out " + out, "export onnx --out " + out,
           "gallery create " + db, "gallery enroll " + db + " " + img,
           "gallery search " + db + " " + img, "video " + img + " --out " + out, "serve",
           "report " + img + " --out " + out}) {
    const auto r = test::run_cli(command + " --model nosuch", tmp, env);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("no model 'nosuch'"), std::string::npos) << command << ": " << r.err;
  }
}

}  // namespace
}  // namespace facemag
