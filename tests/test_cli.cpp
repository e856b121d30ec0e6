// The `facemag` command line end to end: checkpoints written by facemag's own writer in the
// layout of a MagFace training checkpoint, run through the CLI and compared with the goldens.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "bf16_error_model.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "facemag/runtime.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using nlohmann::json;
using pickle::Value;

using test::json_lines;
using test::run_cli;

// {'epoch', 'arch', 'state_dict': OrderedDict('features.module.*' backbone + 'fc.weight'
// classifier), 'optimizer'}: what MagFace's trainer saves.
void write_magface_checkpoint(const std::filesystem::path& path, const std::string& arch,
                              nn::IResNetDepth depth) {
  nn::IResNet net(depth);
  nn::fill_formula_weights(*net);
  io::NamedTensors sd;
  for (const auto& [name, t] : nn::state_dict(*net)) sd.emplace_back("features.module." + name, t);
  sd.emplace_back("fc.weight",
                  torch::zeros({512, 10}));  // MagLinear classifier, ignored at inference
  pickle::Dict root;
  pickle::dict_set(root, Value::make(std::string("epoch")), Value::make(std::int64_t{25}));
  pickle::dict_set(root, Value::make(std::string("arch")), Value::make(arch));
  pickle::dict_set(root, Value::make(std::string("state_dict")), io::make_state_dict_value(sd));
  pickle::dict_set(root, Value::make(std::string("optimizer")), Value::make(pickle::Dict{}));
  io::save_checkpoint(path, Value(std::move(root)));
}

// Each `quality` record against the golden magnitude of its input (matched by file name), within
// `relative[i]` of it for golden input i.
void expect_golden_qualities(const std::vector<json>& records, const json& golden,
                             const std::vector<double>& relative) {
  std::map<std::string, std::pair<double, double>> expected;  // file -> (norm, bound)
  for (std::size_t i = 0; i < golden["inputs"].size(); ++i) {
    const std::string file =
        std::filesystem::path(golden["inputs"][i].get<std::string>()).filename();
    expected[file] = {golden["norms"][i].get<double>(), relative.at(i)};
  }
  for (const auto& rec : records) {
    const std::string file = std::filesystem::path(rec["path"].get<std::string>()).filename();
    ASSERT_TRUE(expected.count(file)) << file;
    const auto [norm, bound] = expected.at(file);
    EXPECT_NEAR(rec["quality"].get<double>(), norm, bound * norm) << file;
  }
}
void expect_golden_qualities(const std::vector<json>& records, const json& golden,
                             double relative) {
  expect_golden_qualities(records, golden, std::vector<double>(golden["inputs"].size(), relative));
}

TEST(CliGolden, QualityOfAMagFaceTrainingCheckpointMatchesGoldens) {
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / "iresnet18.json");
  const auto golden = test::read_json(dir / "iresnet18.json");
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "magface_epoch_00025.pth", "iresnet18", nn::IResNetDepth::k18);

  const auto r = run_cli("quality --aligned --arch iresnet18 --weights " +
                             (tmp / "magface_epoch_00025.pth").string() + " --npy " +
                             (tmp / "feats.npy").string() + " " + (dir / "inputs").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("ignored the training classifier 'fc.weight'"), std::string::npos) << r.err;
  const auto records = json_lines(r.out);
  ASSERT_EQ(records.size(), golden["inputs"].size());
  expect_golden_qualities(records, golden, 1e-4);
  for (const auto& rec : records) {
    EXPECT_EQ(rec["model"], "magface-iresnet18");
    EXPECT_FALSE(rec.contains("embedding"));
  }
  // The matrix and its index agree with the records.
  const auto matrix = io::read_npy(tmp / "feats.npy");
  EXPECT_EQ(matrix.sizes().vec(), (std::vector<std::int64_t>{10, 512}));
  const auto index = json_lines(test::read_file(tmp / "feats.jsonl"));
  ASSERT_EQ(index.size(), 10u);
  for (const auto& row : index) {
    const double norm = matrix[row["row"].get<std::int64_t>()].norm().item<double>();
    EXPECT_NEAR(norm, row["quality"].get<double>(), 1e-4 * norm);
  }
}

// The golden iResNet faces as MagFace feeds the network (BGR, x / 255), N x 3 x 112 x 112.
torch::Tensor golden_network_input(const json& golden) {
  std::vector<torch::Tensor> inputs;
  for (const auto& input : golden["inputs"]) {
    const cv::Mat face = cv::imread((test::golden_dir() / input.get<std::string>()).string());
    inputs.push_back(
        torch::from_blob(face.data, {112, 112, 3}, torch::kUInt8).permute({2, 0, 1}).div(255.0));
  }
  return torch::stack(inputs);
}

nn::IResNet formula_iresnet18() {
  nn::IResNet net(nn::IResNetDepth::k18);
  nn::fill_formula_weights(*net);
  net->eval();
  return net;
}

// --precision bf16 through the CLI: each quality within the bound of the bf16 error model
// (bf16_error_model.hpp) around the golden magnitude.
TEST(CliGolden, QualityInBfloat16StaysCloseToTheGoldens) {
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / "iresnet18.json");
  if (!nn::OneDnnGraph::available(torch::kBFloat16))
    GTEST_SKIP() << "CPU without AVX-512: bf16 refused (CliDispatch.APrecision...RefusedByName)";
  const auto golden = test::read_json(dir / "iresnet18.json");
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const auto r = run_cli("quality --aligned --precision bf16 --arch iresnet18 --weights " +
                             (tmp / "m.pth").string() + " " + (dir / "inputs").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = json_lines(r.out);
  ASSERT_EQ(records.size(), golden["inputs"].size());

  const auto inputs = golden_network_input(golden);
  const auto net = formula_iresnet18();
  const auto expected = io::read_npy(dir / "iresnet18.npy");
  auto bounds = test::relative_errors(test::emulated_bf16_iresnet(*net, inputs), expected);
  for (auto& b : bounds) b *= test::kBf16ErrorFactor;
  expect_golden_qualities(records, golden, bounds);
}

// --precision int8 through the CLI: refused without a calibration (naming the command that
// makes one), calibrate-int8 on the golden crops, then each quality within the bound of the int8
// emulation (bf16_error_model.hpp) of that same calibration; a calibration of another
// architecture refused by name.
TEST(CliGolden, Int8NeedsACalibrationAndThenStaysCloseToTheGoldens) {
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / "iresnet18.json");
  if (!nn::OneDnnGraph::available(torch::kChar)) GTEST_SKIP() << "CPU without VNNI: no int8";
  const auto golden = test::read_json(dir / "iresnet18.json");
  test::TempDir tmp;
  const auto weights = (tmp / "m.pth").string();
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const auto quality = "quality --aligned --precision int8 --arch iresnet18 --weights " + weights +
                       " " + (dir / "inputs").string();
  const auto refused = run_cli(quality, tmp);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("facemag calibrate-int8"), std::string::npos) << refused.err;

  const auto calibrated = run_cli(
      "calibrate-int8 --arch iresnet18 --weights " + weights + " " + (dir / "inputs").string(),
      tmp);
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.err;
  EXPECT_EQ(json::parse(calibrated.out)["faces"].get<int>(), 10);
  ASSERT_TRUE(std::filesystem::exists(weights + ".int8.json"));

  const auto r = run_cli(quality, tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = json_lines(r.out);
  ASSERT_EQ(records.size(), golden["inputs"].size());
  const auto inputs = golden_network_input(golden);
  const auto net = formula_iresnet18();
  torch::NoGradGuard no_grad;
  const auto calibration =
      read_int8_calibration(weights + ".int8.json", builtin_manifest("iresnet18"));
  test::Int8EmulationSink sink(calibration);
  const auto emulated = sink.value(net->describe(sink, sink.input(inputs)));
  auto bounds = test::relative_errors(emulated, io::read_npy(dir / "iresnet18.npy"));
  for (auto& b : bounds) b *= test::kInt8ErrorFactor;
  expect_golden_qualities(records, golden, bounds);

  write_magface_checkpoint(tmp / "m34.pth", "iresnet34", nn::IResNetDepth::k34);
  const auto other = run_cli("quality --aligned --precision int8 --arch iresnet34 --weights " +
                                 (tmp / "m34.pth").string() + " --int8-calibration " + weights +
                                 ".int8.json " + (dir / "inputs").string(),
                             tmp);
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.err.find("an int8 calibration of iresnet18, not of iresnet34"), std::string::npos)
      << other.err;
}

// This CPU's flags, as /proc/cpuinfo lists them.
std::set<std::string> cpu_flags() {
  std::set<std::string> flags;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  return flags;
}

// The convolutions one `facemag quality` of an iResNet-18 in `precision` ran on oneDNN, from its
// verbose log ("onednn_verbose,exec,cpu,convolution,<impl>,..."): implementation -> executions.
std::map<std::string, int> onednn_convolutions(const std::string& precision) {
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const auto r = run_cli("quality --aligned --precision " + precision +
                             " --arch iresnet18 --weights " + (tmp / "m.pth").string() + " " +
                             (test::golden_dir() / "iresnet" / "inputs" / "0.png").string(),
                         tmp, "ONEDNN_VERBOSE=1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, int> kernels;
  std::istringstream log(r.out + r.err);
  for (std::string line; std::getline(log, line);) {
    if (line.rfind("onednn_verbose,exec,cpu,convolution,", 0) != 0) continue;
    std::istringstream fields(line);
    std::string field;
    for (int i = 0; i < 5; ++i) std::getline(fields, field, ',');
    ++kernels[field];
  }
  for (const auto& [impl, count] : kernels)
    std::cout << "[ kernels ] " << precision << ": " << count << " x " << impl << "\n";
  return kernels;
}

// Which oneDNN kernels a bf16 forward ran on, against the best family this CPU's flags allow:
// AMX tiles, AVX512-BF16 instructions, or AVX-512 with bf16 emulated.
TEST(CliDispatch, Bf16ConvolutionsRunOnTheBestKernelsOfThisCpu) {
  const auto flags = cpu_flags();
  const auto has = [&](std::initializer_list<const char*> names) {
    return std::all_of(names.begin(), names.end(), [&](const char* n) { return flags.count(n); });
  };
  std::string expected;
  if (has({"amx_bf16", "amx_tile"})) {
    expected = "avx512_core_amx";
  } else if (has({"avx512_bf16"})) {
    expected = "avx512_core_bf16";
  } else if (has({"avx512f", "avx512bw", "avx512vl", "avx512dq"})) {
    expected = "avx512_core";
  } else {
    GTEST_SKIP() << "CPU without AVX-512: bf16 convolutions do not run on oneDNN here";
  }
  EXPECT_EQ(cpu_kernel_family(), expected) << "oneDNN's effective ISA (facemag bench reports it)";
  const auto kernels = onednn_convolutions("bf16");
  ASSERT_FALSE(kernels.empty()) << "no oneDNN convolution in the log";
  for (const auto& [impl, count] : kernels) {
    EXPECT_NE(impl.find(expected), std::string::npos)
        << impl << " is not a " << expected << " kernel";
  }
}

// float32 iResNet's 3x3 stride-1 convolutions run Winograd on every CPU with AVX2: oneDNN's
// F(4x4)/F(2x2) kernels on AVX-512 ("jit_wino_*" in its log), else facemag's F(4x4) (up to 128 x
// 128 channels) and F(2x2) (up to 256 x 256) for the layers of 64 channels or more in and out,
// which then are absent from oneDNN's log. iResNet-18 has 21 convolutions (stem, 16 in blocks, 4
// downsampling 1x1); 9 of them are such layers (in stages 1-3 each block's first convolution and
// the second block's second; stage 4's 256 -> 512 and 512 -> 512 stay direct).
TEST(CliDispatch, Float32IResNetRunsWinogradWhereTheCpuHasAvx2) {
  const auto flags = cpu_flags();
  if (!flags.count("avx2")) GTEST_SKIP() << "CPU without AVX2: direct convolutions only";
  const auto kernels = onednn_convolutions("fp32");
  int executions = 0, winograd = 0;
  for (const auto& [impl, count] : kernels) {
    executions += count;
    if (impl.find("wino") != std::string::npos) winograd += count;
  }
  if (cpu_kernel_family().starts_with("avx512")) {
    EXPECT_EQ(executions, 21);
    EXPECT_GT(winograd, 0) << "no oneDNN Winograd kernel ran";
  } else {
    EXPECT_EQ(executions, 21 - 9) << "facemag's Winograd should have taken 9 convolutions";
    EXPECT_EQ(winograd, 0);
  }
}

// Where the CPU lacks what a precision needs (AVX-512 for bf16, VNNI for int8), asking for it is
// one line naming what is missing and what to use instead, exit code 2, nothing on stdout.
TEST(CliDispatch, APrecisionTheCpuCannotRunIsRefusedByName) {
  const auto flags = cpu_flags();
  const bool avx512 = flags.count("avx512f") && flags.count("avx512bw") && flags.count("avx512vl");
  const bool vnni =
      flags.count("avx512_vnni") || flags.count("avx_vnni") || flags.count("amx_int8");
  if (avx512 && vnni) GTEST_SKIP() << "this CPU runs bf16 and int8";
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const auto quality = [&](const std::string& precision) {
    return run_cli("quality --aligned --precision " + precision + " --arch iresnet18 --weights " +
                       (tmp / "m.pth").string() + " " +
                       (test::golden_dir() / "iresnet" / "inputs" / "0.png").string(),
                   tmp);
  };
  const auto suggestion = avx512 ? "use bf16 or fp32" : "use fp32";
  const auto int8 = quality("int8");
  EXPECT_EQ(int8.exit_code, 2);
  EXPECT_TRUE(int8.out.empty()) << int8.out;
  EXPECT_NE(int8.err.find("--precision int8 needs a CPU with VNNI"), std::string::npos) << int8.err;
  EXPECT_NE(int8.err.find(suggestion), std::string::npos) << int8.err;
  if (avx512) return;
  const auto bf16 = quality("bf16");
  EXPECT_EQ(bf16.exit_code, 2);
  EXPECT_TRUE(bf16.out.empty()) << bf16.out;
  EXPECT_NE(
      bf16.err.find("--precision bf16 runs on oneDNN with AVX-512, which this CPU lacks: use fp32"),
      std::string::npos)
      << bf16.err;
}

TEST(CliGolden, SortListsBestQualityFirstAndEmbedPrintsVectors) {
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / "iresnet18.json");
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const auto sorted =
      json_lines(run_cli("quality --aligned --sort --arch iresnet18 --weights " +
                             (tmp / "m.pth").string() + " " + (dir / "inputs").string(),
                         tmp)
                     .out);
  ASSERT_EQ(sorted.size(), 10u);
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    EXPECT_GE(sorted[i - 1]["quality"].get<double>(), sorted[i]["quality"].get<double>());
  }
  EXPECT_EQ(std::filesystem::path(sorted[0]["path"].get<std::string>()).filename(),
            "8.png");  // norm 12.64

  const auto embedded =
      json_lines(run_cli("embed --aligned --arch iresnet18 --weights " + (tmp / "m.pth").string() +
                             " " + (dir / "inputs" / "0.png").string(),
                         tmp)
                     .out);
  ASSERT_EQ(embedded.size(), 1u);
  const auto golden = io::read_npy(dir / "iresnet18.npy");
  ASSERT_EQ(embedded[0]["embedding"].size(), 512u);
  for (int k = 0; k < 8; ++k) {
    EXPECT_NEAR(embedded[0]["embedding"][k].get<double>(), golden[0][k].item<double>(), 1e-4);
  }
}

TEST(CliGolden, BadImagesAreSkippedAndTheRestFinish) {
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / "inputs" / "0.png");
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const auto faces = tmp / "faces";
  std::filesystem::create_directories(faces);
  std::filesystem::copy_file(dir / "inputs" / "0.png", faces / "a_good.png");
  const std::string jpeg = test::read_file(test::shared_dir() / "data" / "magface-toy" / "0.jpg");
  test::write_file(faces / "b_truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
  test::write_file(faces / "c_empty.jpg", "");
  test::write_file(faces / "d_text.png", "this is not an image\n");
  const std::string png = test::read_file(dir / "inputs" / "1.png");
  test::write_file(faces / "e_cut.png", png.substr(0, 200));
  std::filesystem::copy_file(test::shared_dir() / "data" / "facenet-test-images" / "multiface.jpg",
                             faces / "f_big.jpg");
  std::filesystem::copy_file(dir / "inputs" / "2.png", faces / "g_good.png");

  const auto r =
      run_cli("quality --aligned --batch 2 --arch iresnet18 --weights " + (tmp / "m.pth").string() +
                  " " + faces.string() + " --out " + (tmp / "q.jsonl").string(),
              tmp);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto records = json_lines(test::read_file(tmp / "q.jsonl"));
  ASSERT_EQ(records.size(), 2u) << r.err;
  EXPECT_NE(r.err.find("b_truncated.jpg: truncated JPEG"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("c_empty.jpg: empty file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("d_text.png: not a decodable image"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("e_cut.png: not a decodable image"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("f_big.jpg: image is"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("5 of 7 input(s) failed"), std::string::npos) << r.err;
}

TEST(CliGolden, ModelErrorsAreOneClearLine) {
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / "inputs" / "0.png");
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "r18.pth", "iresnet18", nn::IResNetDepth::k18);
  const std::string input = (dir / "inputs").string();

  auto r = run_cli(
      "quality --aligned --arch iresnet50 --weights " + (tmp / "r18.pth").string() + " " + input,
      tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("trained as 'iresnet18', not 'iresnet50'"), std::string::npos) << r.err;

  // The same weights without the 'arch' entry: the strict loader names what does not fit.
  io::save_checkpoint(
      tmp / "bare.pth",
      *io::make_state_dict_value(io::find_state_dict(io::load_checkpoint(tmp / "r18.pth"))));
  r = run_cli(
      "quality --aligned --arch iresnet34 --weights " + (tmp / "bare.pth").string() + " " + input,
      tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("checkpoint does not fit the architecture: missing"), std::string::npos)
      << r.err;

  const std::string full = test::read_file(tmp / "r18.pth");
  test::write_file(tmp / "cut.pth", full.substr(0, full.size() / 2));
  r = run_cli(
      "quality --aligned --arch iresnet18 --weights " + (tmp / "cut.pth").string() + " " + input,
      tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cut.pth"), std::string::npos) << r.err;

  r = run_cli(
      "quality --aligned --arch iresnet18 --weights " + (tmp / "none.pth").string() + " " + input,
      tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("none.pth: no such file"), std::string::npos) << r.err;

  r = run_cli("quality --aligned --arch iresnet18 --weights " + (tmp / "r18.pth").string() +
                  " /nonexistent/dir",
              tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent/dir: no such file or directory"), std::string::npos) << r.err;

  std::filesystem::create_directories(tmp / "docs");
  test::write_file(tmp / "docs" / "readme.txt", "text");
  r = run_cli("quality --aligned --arch iresnet18 --weights " + (tmp / "r18.pth").string() + " " +
                  (tmp / "docs").string(),
              tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no image files found"), std::string::npos) << r.err;
  for (const auto* text : {"error:"})
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << text << r.err;

  // --out naming the row index that --npy writes beside its matrix: both would write one file.
  r = run_cli("embed --aligned --arch iresnet18 --weights " + (tmp / "r18.pth").string() +
                  " --npy " + (tmp / "f.npy").string() + " --out " + (tmp / "f.jsonl").string() +
                  " " + input,
              tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("f.jsonl is where --npy writes its row index: choose another"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

std::string mtcnn_dir() { return (test::shared_dir() / "weights" / "mtcnn").string(); }

TEST(CliGolden, DetectPrintsTheGoldenFacesAndDraws) {
  const auto golden_path = test::golden_dir() / "mtcnn" / "detections.json";
  FACEMAG_REQUIRE_FILE(golden_path);
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  const auto golden = test::read_json(golden_path);
  test::TempDir tmp;
  const auto r = run_cli("detect --mtcnn " + mtcnn_dir() + " --draw " + (tmp / "drawn").string() +
                             " " + (test::shared_dir() / "data" / "faces-casia" / "neil").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = json_lines(r.out);
  ASSERT_EQ(records.size(), 15u);
  std::size_t compared = 0;
  for (const auto& g : golden["images"]) {
    for (const auto& rec : records) {
      if (!std::string(rec["path"]).ends_with(g["image"].get<std::string>())) continue;
      EXPECT_EQ(rec["width"], g["size_wh"][0]);
      EXPECT_EQ(rec["height"], g["size_wh"][1]);
      ASSERT_EQ(rec["faces"].size(), g["faces"].size()) << rec["path"];
      for (std::size_t k = 0; k < g["faces"].size(); ++k) {
        for (int c = 0; c < 4; ++c) {
          EXPECT_NEAR(rec["faces"][k]["box"][c].get<double>(),
                      g["faces"][k]["box"][c].get<double>(), 1.0);
        }
        EXPECT_NEAR(rec["faces"][k]["score"].get<double>(), g["faces"][k]["prob"].get<double>(),
                    1e-4);
        EXPECT_NEAR(rec["faces"][k]["landmarks"][2][1].get<double>(),
                    g["faces"][k]["landmarks"][2][1].get<double>(), 1.0);
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 15u);
  EXPECT_TRUE(std::filesystem::exists(tmp / "drawn" / "010.jpg"));
  EXPECT_FALSE(cv::imread((tmp / "drawn" / "010.jpg").string()).empty());
}

TEST(CliGolden, AlignWritesTheGoldenCrops) {
  FACEMAG_REQUIRE_FILE(test::golden_dir() / "align" / "faces-casia__neil__010__face1.png");
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  test::TempDir tmp;
  const auto r =
      run_cli("align --mtcnn " + mtcnn_dir() + " --out " + (tmp / "crops").string() + " " +
                  (test::shared_dir() / "data" / "faces-casia" / "neil" / "010.jpg").string(),
              tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_lines(r.out).size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const cv::Mat ours =
        cv::imread((tmp / "crops" / ("010_face" + std::to_string(k) + ".png")).string());
    const cv::Mat golden =
        cv::imread((test::golden_dir() / "align" /
                    ("faces-casia__neil__010__face" + std::to_string(k) + ".png"))
                       .string());
    ASSERT_EQ(ours.size(), cv::Size(112, 112));
    cv::Mat diff;
    cv::absdiff(ours, golden, diff);
    const cv::Scalar mean = cv::mean(diff);
    EXPECT_LE((mean[0] + mean[1] + mean[2]) / 3, 1.0) << "face " << k;
  }
  // facenet-style margin crops.
  const auto f = run_cli(
      "align --facenet --margin 20 --mtcnn " + mtcnn_dir() + " --out " + (tmp / "fn").string() +
          " " + (test::shared_dir() / "data" / "faces-casia" / "neil" / "010.jpg").string(),
      tmp);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(cv::imread((tmp / "fn" / "010_face0.png").string()).size(), cv::Size(160, 160));
}

TEST(CliGolden, QualityOfPhotosDetectsAlignsAndEmbeds) {
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "data" / "faces-casia" / "neil" / "010.jpg");
  test::TempDir tmp;
  write_magface_checkpoint(tmp / "m.pth", "iresnet18", nn::IResNetDepth::k18);
  const std::string base = "quality --arch iresnet18 --weights " + (tmp / "m.pth").string() +
                           " --mtcnn " + mtcnn_dir() + " ";
  const std::string photo =
      (test::shared_dir() / "data" / "faces-casia" / "neil" / "010.jpg").string();
  auto all = json_lines(run_cli(base + photo, tmp).out);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]["face"], 0);
  EXPECT_EQ(all[1]["face"], 1);
  EXPECT_EQ(all[0]["box"].size(), 4u);
  EXPECT_GT(all[0]["score"].get<double>(), 0.99);
  const auto largest = json_lines(run_cli(base + "--keep largest " + photo, tmp).out);
  ASSERT_EQ(largest.size(), 1u);
  EXPECT_EQ(largest[0]["face"], 0);
  const auto best = json_lines(run_cli(base + "--keep best " + photo, tmp).out);
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0]["quality"],
            std::max(all[0]["quality"].get<double>(), all[1]["quality"].get<double>()));

  // The magnitude of a detected, aligned face equals that of the golden crop run with --aligned.
  const auto crop = test::golden_dir() / "align" / "faces-casia__neil__010__face0.png";
  const auto aligned = json_lines(run_cli("quality --aligned --arch iresnet18 --weights " +
                                              (tmp / "m.pth").string() + " " + crop.string(),
                                          tmp)
                                      .out);
  ASSERT_EQ(aligned.size(), 1u);
  EXPECT_NEAR(aligned[0]["quality"].get<double>(), all[0]["quality"].get<double>(),
              1e-3 * aligned[0]["quality"].get<double>());
}

TEST(CliGolden, DetectSkipsBadImagesAndRefusesDecompressionBombs) {
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  test::TempDir tmp;
  const auto dir = tmp / "photos";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(test::shared_dir() / "data" / "faces-casia" / "pam" / "001.jpg",
                             dir / "a.jpg");
  test::write_file(dir / "b_empty.png", "");
  // A PNG header that declares 100000 x 100000 pixels.
  std::string bomb = "\x89PNG\r\n\x1a\n" + std::string("\0\0\0\x0dIHDR", 8) +
                     std::string("\x00\x01\x86\xa0\x00\x01\x86\xa0", 8) +
                     std::string("\x08\x02\0\0\0", 5);
  test::write_file(dir / "c_bomb.png", bomb);
  cv::imwrite((dir / "d_blank.png").string(), cv::Mat(100, 100, CV_8UC3, cv::Scalar::all(127)));
  const auto r = run_cli("detect --mtcnn " + mtcnn_dir() + " " + dir.string(), tmp);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto records = json_lines(r.out);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["faces"].size(), 1u);
  EXPECT_EQ(records[1]["faces"].size(), 0u);  // no face: a normal, empty result
  EXPECT_NE(r.err.find("b_empty.png: empty file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("c_bomb.png: 100000x100000 pixels exceed the limit"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

TEST(CliGolden, ClusterFindsThePeopleInRealPhotos) {
  const auto weights = test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt";
  FACEMAG_REQUIRE_FILE(weights);
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  test::TempDir tmp;
  const auto r = run_cli("cluster --weights " + weights.string() + " --mtcnn " + mtcnn_dir() +
                             " --out " + (tmp / "groups.jsonl").string() + " " +
                             (test::shared_dir() / "data" / "faces-casia").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("model: mobilefacenet-casia"), std::string::npos) << r.out;
  // The default is the manifest's clustering threshold (calibrated on lfw-half), not the
  // same-person threshold 0.20, at which a group held two people.
  EXPECT_NE(r.out.find("(mean cosine similarity >= 0.48)"), std::string::npos) << r.out;
  const auto records = json_lines(test::read_file(tmp / "groups.jsonl"));
  ASSERT_EQ(records.size(), 46u);
  // Every group is one person (the photo folder; a photo's second face, neil/010.jpg's, may be
  // someone else and is not counted); the three largest are the three people, with at least 10
  // of their 15 photos each (measured: 12, 11, 10; the rest in groups of 1-2).
  std::map<int, std::set<std::string>> people_of_group;
  std::map<int, int> members;
  for (const auto& rec : records) {
    const int g = rec["group"].get<int>();
    ++members[g];
    if (rec["face"].get<int>() > 0) continue;
    people_of_group[g].insert(
        std::filesystem::path(rec["path"].get<std::string>()).parent_path().filename().string());
  }
  for (const auto& [g, people] : people_of_group) EXPECT_EQ(people.size(), 1u) << "group " << g;
  std::set<std::string> largest;
  for (int g = 1; g <= 3; ++g) {
    largest.insert(*people_of_group[g].begin());
    EXPECT_GE(members[g], 10) << "group " << g;
  }
  EXPECT_EQ(largest.size(), 3u);
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

TEST(CliGolden, FacenetEmbedsCropsAndPhotosAndClassifies) {
  const auto dir = test::golden_dir() / "inception_resnet_v1";
  FACEMAG_REQUIRE_FILE(dir / "embeddings.npy");
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");
  test::TempDir tmp;
  const auto weights = (tmp / "irv1.pth").string();
  ASSERT_EQ(
      run_cli("formula-weights --arch inception_resnet_v1 --classes 8631 --out " + weights, tmp)
          .exit_code,
      0);
  test::write_file(
      tmp / "labels.csv", "name\n" + [] {
        std::string s;
        for (int i = 0; i < 8631; ++i)
          s += "n" + std::to_string(i) + ",person " + std::to_string(i) + "\n";
        return s;
      }());
  // Aligned 160x160 crops: facenet-pytorch's embedding (after its L2 normalisation) and argmax.
  const auto r = run_cli("embed --aligned --arch inception_resnet_v1 --weights " + weights +
                             " --classify 1 --labels " + (tmp / "labels.csv").string() + " " +
                             (dir / "inputs").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = json_lines(r.out);
  ASSERT_EQ(records.size(), 6u);
  const auto golden = test::read_json(dir / "inception_resnet_v1.json");
  const auto expected = io::read_npy(dir / "embeddings.npy");
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::string file =
        std::filesystem::path(golden["inputs"][i]["file"].get<std::string>()).filename();
    ASSERT_TRUE(std::string(records[i]["path"]).ends_with(file));
    const auto v = torch::tensor(records[i]["embedding"].get<std::vector<float>>());
    const double cos = (v.dot(expected[static_cast<std::int64_t>(i)]) / v.norm()).item<double>();
    EXPECT_GE(cos, 0.9999999) << file;
    EXPECT_EQ(records[i]["classes"][0]["class"], golden["logits_argmax"][i]);
    EXPECT_EQ(records[i]["classes"][0]["name"], "person 7003");
  }
  // Photos: MTCNN + facenet margin crop, end to end over faces-casia.
  const auto photos =
      run_cli("embed --arch inception_resnet_v1 --weights " + weights + " --mtcnn " + mtcnn_dir() +
                  " " + (test::shared_dir() / "data" / "faces-casia").string(),
              tmp);
  ASSERT_EQ(photos.exit_code, 0) << photos.err;
  const auto faces = json_lines(photos.out);
  ASSERT_EQ(faces.size(), 46u);
  for (const auto& f : faces) EXPECT_EQ(f["embedding"].size(), 512u);
  // A model without a classifier head cannot --classify.
  ASSERT_EQ(
      run_cli("formula-weights --arch inception_resnet_v1 --out " + (tmp / "plain.pth").string(),
              tmp)
          .exit_code,
      0);
  const auto bad = run_cli("embed --aligned --arch inception_resnet_v1 --classify 1 --weights " +
                               (tmp / "plain.pth").string() + " " + (dir / "inputs").string(),
                           tmp);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("no classifier layer"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace facemag
