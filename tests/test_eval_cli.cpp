// `facemag eval`, `calibrate`, `verify` and `report` end to end: golden numbers through the
// CLI, the real MobileFaceNet on real faces, and wrong inputs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "facemag/io/npy.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using nlohmann::json;
using test::run_cli;

std::filesystem::path eval_dir() { return test::golden_dir() / "eval"; }
std::string mobilefacenet() {
  return (test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt").string();
}
std::string real_model() {
  return " --arch mobilefacenet --flip --weights " + mobilefacenet() + " --mtcnn " +
         (test::shared_dir() / "weights" / "mtcnn").string() + " ";
}

TEST(CliGolden, EvalPairsPrintsUpstreamsLineAndGoldenFolds) {
  FACEMAG_REQUIRE_FILE(eval_dir() / "eval.json");
  test::TempDir tmp;
  const auto r = run_cli(
      "eval pairs --features " + (eval_dir() / "pairs600_features.npy").string() + " --labels " +
          (eval_dir() / "pairs600_issame.npy").string() + " --json " + (tmp / "out.json").string(),
      tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto golden = test::read_json(eval_dir() / "eval.json")["pairs600"]["verification"];
  EXPECT_NE(r.out.find(golden["printed"].get<std::string>()), std::string::npos) << r.out;
  const auto out = test::read_json(tmp / "out.json");
  EXPECT_EQ(out["kfold"]["fold_accuracies"], golden["fold_accuracies"]);
  EXPECT_NEAR(out["kfold"]["std"].get<double>(), golden["std"].get<double>(), 1e-12);
  // 300 different pairs measure FMR 1e-1 and 1e-2, not 1e-3.
  EXPECT_EQ(out["roc"]["tar_at_fmr"].size(), 2u);
  EXPECT_NE(r.out.find("TAR@FMR=1e-03: not measurable (300 different pairs, needs 1000)"),
            std::string::npos);
}

TEST(CliGolden, EvalErcMatchesGoldenCurveAndPlotsIt) {
  FACEMAG_REQUIRE_FILE(eval_dir() / "eval.json");
  test::TempDir tmp;
  const auto r =
      run_cli("eval erc --features " + (eval_dir() / "erc_features.npy").string() + " --labels " +
                  (eval_dir() / "erc_issame.npy").string() + " --pair-index " +
                  (eval_dir() / "erc_pairs.npy").string() + " --fmr 1e-2,1e-3 --json " +
                  (tmp / "erc.json").string() + " --plot " + (tmp / "erc.png").string(),
              tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto golden = test::read_json(eval_dir() / "eval.json")["erc4000"]["error_versus_reject"];
  const auto out = test::read_json(tmp / "erc.json");
  ASSERT_EQ(out["steps"].size(), golden["fnmr_at_fmr_1e-3"].size());
  for (std::size_t s = 0; s < out["steps"].size(); ++s) {
    const auto& points = out["steps"][s]["points"];
    ASSERT_EQ(points.size(), 2u);
    EXPECT_EQ(points[1]["fmr"].get<double>(), 1e-3);
    EXPECT_EQ(points[1]["fnmr"].get<double>(), golden["fnmr_at_fmr_1e-3"][s].get<double>());
  }
  const cv::Mat plot = cv::imread((tmp / "erc.png").string());
  EXPECT_EQ(plot.cols, 900);
  EXPECT_EQ(plot.rows, 520);
}

// Any quality given per feature row ranks the pairs: the features' own norms as a --quality file
// give the magnitude's curve exactly; their negation (the best faces rejected first) a worse one;
// a file of another length, or a photo source, is refused in one line.
TEST(CliGolden, EvalErcRanksByAQualityFileOfOneValuePerRow) {
  FACEMAG_REQUIRE_FILE(eval_dir() / "erc_features.npy");
  test::TempDir tmp;
  const auto features = io::read_npy(eval_dir() / "erc_features.npy");
  const auto norms = features.to(torch::kFloat64).norm(2, 1).contiguous();
  io::write_npy(tmp / "norms.npy", norms);
  io::write_npy(tmp / "negated.npy", -norms);
  io::write_npy(tmp / "short.npy", norms.slice(0, 0, 10).contiguous());
  const std::string source = "eval erc --features " + (eval_dir() / "erc_features.npy").string() +
                             " --labels " + (eval_dir() / "erc_issame.npy").string() +
                             " --pair-index " + (eval_dir() / "erc_pairs.npy").string() +
                             " --fmr 1e-3 --random-repeats 2 ";
  const auto erc = [&](const std::string& extra, const std::string& json) {
    const auto r = run_cli(source + extra + " --json " + (tmp / json).string(), tmp);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return test::read_json(tmp / json);
  };
  const auto magnitude = erc("", "m.json");
  const auto given = erc("--quality " + (tmp / "norms.npy").string(), "q.json");
  const auto negated = erc("--quality " + (tmp / "negated.npy").string(), "n.json");
  EXPECT_EQ(magnitude["quality_source"], "magnitude");
  EXPECT_EQ(given["quality_source"], "norms.npy");
  ASSERT_EQ(given["steps"].size(), magnitude["steps"].size());
  for (std::size_t s = 0; s < given["steps"].size(); ++s)
    for (std::size_t k = 0; k < given["steps"][s]["points"].size(); ++k)
      EXPECT_EQ(given["steps"][s]["points"][k]["fnmr"], magnitude["steps"][s]["points"][k]["fnmr"])
          << s;
  EXPECT_GT(negated["mean_fnmr_0_40"]["1e-03"].get<double>(),
            magnitude["mean_fnmr_0_40"]["1e-03"].get<double>());
  const auto refused = [&](const std::string& args, const std::string& message) {
    const auto r = run_cli(args, tmp);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  refused(source + "--quality " + (tmp / "short.npy").string(),
          "short.npy: 10 qualities for " + std::to_string(features.size(0)) + " feature rows");
  refused("eval erc --pair-list " + (tmp / "none.txt").string() + " --quality " +
              (tmp / "norms.npy").string(),
          "one quality per row of --features");
}

// `eval erc --quality model` on photos ranks the pairs by the quality the model measures on each
// face (MobileFaceNet: magnitude x sharpness): the same curve as the saved features ranked by the
// qualities `facemag quality` reports for the same photos.
TEST(CliGolden, EvalErcRanksPhotoPairsByTheModelsOwnQuality) {
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  const auto casia = test::shared_dir() / "data" / "faces-casia";
  FACEMAG_REQUIRE_FILE(casia / "pam" / "005.jpg");
  test::TempDir tmp;
  const auto photo = [&](const std::string& person, int n) {
    char name[16];
    std::snprintf(name, sizeof name, "%03d.jpg", n);
    return (casia / person / name).string();
  };
  // 12 pairs: 6 of one person, 6 of two.
  std::vector<std::array<std::string, 2>> pairs;
  std::vector<std::int64_t> same;
  const std::array<std::string, 3> people{"bruce", "neil", "pam"};
  for (int i = 0; i < 6; ++i) {
    const auto& p = people[static_cast<std::size_t>(i % 3)];
    pairs.push_back({photo(p, 1 + i / 3), photo(p, 3 + i / 3)});
    same.push_back(1);
    pairs.push_back(
        {photo(p, 1 + i / 3), photo(people[static_cast<std::size_t>((i + 1) % 3)], 2 + i / 3)});
    same.push_back(0);
  }
  std::string list;
  for (std::size_t p = 0; p < pairs.size(); ++p)
    list += pairs[p][0] + " " + pairs[p][1] + " " + std::to_string(same[p]) + "\n";
  test::write_file(tmp / "pairs.txt", list);
  const std::string common = " --fmr 1e-1 --random-repeats 2 ";
  auto r = run_cli("eval erc --pair-list " + (tmp / "pairs.txt").string() + common +
                       "--quality model --save-features " + (tmp / "f.npy").string() + " --json " +
                       (tmp / "model.json").string() + real_model(),
                   tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto by_model = test::read_json(tmp / "model.json");
  EXPECT_EQ(by_model["quality_source"], "magnitude*sharpness");

  // Each photo's quality as `facemag quality` reports it, one value per saved feature row.
  std::set<std::string> photos;
  for (const auto& p : pairs) photos.insert({p[0], p[1]});
  std::string inputs;
  for (const auto& p : photos) inputs += p + " ";
  r = run_cli("quality " + inputs + "--keep" + real_model(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, double> quality;
  for (const auto& record : test::json_lines(r.out)) {
    EXPECT_EQ(record["quality_source"], "magnitude*sharpness");
    EXPECT_LE(record["quality"].get<double>(), record["magnitude"].get<double>());
    quality[record["path"].get<std::string>()] = record["quality"].get<double>();
  }
  std::vector<double> rows;
  for (const auto& p : pairs) rows.insert(rows.end(), {quality.at(p[0]), quality.at(p[1])});
  io::write_npy(tmp / "q.npy", torch::tensor(rows, torch::kFloat64));
  io::write_npy(tmp / "same.npy", torch::tensor(same, torch::kInt64));
  r = run_cli("eval erc --features " + (tmp / "f.npy").string() + " --labels " +
                  (tmp / "same.npy").string() + common + "--quality " + (tmp / "q.npy").string() +
                  " --json " + (tmp / "file.json").string(),
              tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto by_file = test::read_json(tmp / "file.json");
  ASSERT_EQ(by_model["steps"].size(), by_file["steps"].size());
  for (std::size_t s = 0; s < by_model["steps"].size(); ++s) {
    EXPECT_EQ(by_model["steps"][s]["rejected"], by_file["steps"][s]["rejected"]);
    for (std::size_t k = 0; k < by_model["steps"][s]["points"].size(); ++k)
      EXPECT_EQ(by_model["steps"][s]["points"][k]["fnmr"], by_file["steps"][s]["points"][k]["fnmr"])
          << s;
  }
  // A features source has no photos to measure.
  r = run_cli("eval erc --features " + (tmp / "f.npy").string() + " --labels " +
                  (tmp / "same.npy").string() + " --quality model",
              tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--quality model"), std::string::npos) << r.err;
}

TEST(CliGolden, EvalOnBinAndPairListEmbedsTheSameRealFaces) {
  const auto bin_dir = eval_dir() / "verification_bin";
  FACEMAG_REQUIRE_FILE(bin_dir / "verification_bin.json");
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  test::TempDir tmp;
  // The same 16 photos as a pair list.
  const auto golden = test::read_json(bin_dir / "verification_bin.json");
  std::string list;
  for (std::size_t p = 0; p < golden["is_same"].size(); ++p) {
    for (int side = 0; side < 2; ++side)
      list +=
          (test::shared_dir() / "data" / golden["images"][2 * p + side]["file"].get<std::string>())
              .string() +
          " ";
    list += golden["is_same"][p].get<bool>() ? "1\n" : "0\n";
  }
  test::write_file(tmp / "pairs.txt", list);
  std::map<std::string, torch::Tensor> features;
  for (const std::string source : {"bin py2", "bin np", "list"}) {
    const std::string input = source == "list" ? "--pair-list " + (tmp / "pairs.txt").string()
                              : source == "bin np"
                                  ? "--bin " + (bin_dir / "pairs_np.bin").string()
                                  : "--bin " + (bin_dir / "pairs_py2.bin").string();
    const auto r = run_cli("eval pairs " + input + real_model() + "--folds 2 --save-features " +
                               (tmp / "f.npy").string() + " --json " + (tmp / "e.json").string(),
                           tmp);
    ASSERT_EQ(r.exit_code, 0) << source << ": " << r.err;
    features[source] = io::read_npy(tmp / "f.npy");
    EXPECT_EQ(features[source].sizes(), (std::vector<std::int64_t>{16, 256}));
    // A trained recogniser separates these 4 same and 4 different pairs of real faces.
    const auto out = test::read_json(tmp / "e.json");
    EXPECT_EQ(out["roc"]["auc"].get<double>(), 1.0) << source;
    EXPECT_EQ(out["roc"]["best_accuracy"].get<double>(), 1.0) << source;
  }
  EXPECT_TRUE(torch::equal(features["bin py2"], features["bin np"]));
  // The list names 13 distinct photos, the .bin holds 16 images (3 repeated): photos of one size
  // are detected together, and MTCNN batches of different sizes agree to float rounding (within
  // 0.00024 px of each other and of facenet-pytorch, MtcnnGolden.*), not bit for bit. So the
  // faces must be the same to the goldens' embedding tolerance (cosine >= 0.99999).
  const auto cos = torch::cosine_similarity(features["bin np"], features["list"], 1);
  std::cout << "[ parity ] .bin against list: 1 - min cosine " << 1 - cos.min().item<double>()
            << "\n";
  EXPECT_GE(cos.min().item<double>(), 0.99999);
}

TEST(CliGolden, WrongPairInputsAreClearErrors) {
  test::TempDir tmp;
  const auto expect_error = [&](const std::string& args, const std::string& message) {
    const auto r = run_cli(args, tmp);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  test::write_file(tmp / "feat.list", "a 1 2 3\nb 1 2 4\nc 0 1 1\n");
  test::write_file(tmp / "pair.list", "a b 1\n");
  expect_error("eval pairs --features " + (tmp / "feat.list").string() + " --labels " +
                   (tmp / "pair.list").string(),
               "3 lines, an odd number: lines 2p and 2p+1 must form pair p");
  test::write_file(tmp / "images.txt", "missing_a.jpg missing_b.jpg 1\n");
  expect_error("eval pairs --pair-list " + (tmp / "images.txt").string() + real_model(),
               "images.txt:1: " + (tmp / "missing_a.jpg").string() + ": no such file");
  test::write_file(tmp / "short.txt", "a.jpg 1\n");
  expect_error("eval pairs --pair-list " + (tmp / "short.txt").string(),
               "short.txt:1: expected 'path_a path_b is_same'");
  if (std::filesystem::exists(mobilefacenet())) {
    expect_error("eval pairs --bin " + mobilefacenet() + real_model(),
                 "068.ckpt is not an insightface verification .bin");
  }
  auto features = torch::ones({4, 8});
  features[3][5] = std::nan("");
  io::write_npy(tmp / "nan.npy", features);
  io::write_npy(tmp / "labels.npy", torch::tensor({1, 0}));
  expect_error("eval erc --features " + (tmp / "nan.npy").string() + " --labels " +
                   (tmp / "labels.npy").string(),
               "feature row 3 holds a NaN or infinite value");
  expect_error("eval pairs --features " + (tmp / "nan.npy").string(), "--features needs --labels");
}

TEST(CliGolden, CalibrateStoresThresholdsThatVerifyUses) {
  FACEMAG_REQUIRE_FILE(eval_dir() / "erc_features.npy");
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  test::TempDir tmp;
  const auto cal = run_cli(
      "calibrate --arch mobilefacenet --features " + (eval_dir() / "erc_features.npy").string() +
          " --labels " + (eval_dir() / "erc_issame.npy").string() + " --pair-index " +
          (eval_dir() / "erc_pairs.npy").string() + " --manifest-out " + (tmp / "m.json").string(),
      tmp);
  ASSERT_EQ(cal.exit_code, 0) << cal.err;
  EXPECT_NE(cal.out.find("FMR 1e-04: not measurable here"), std::string::npos) << cal.out;
  const auto manifest = test::read_json(tmp / "m.json");
  ASSERT_EQ(manifest["fmr_thresholds"].size(), 2u);  // 2416 impostors: 1e-2 and 1e-3
  const double threshold = manifest["same_person_threshold"].get<double>();
  EXPECT_EQ(threshold, manifest["fmr_thresholds"][1]["threshold"].get<double>());
  EXPECT_GT(manifest["quality_threshold"].get<double>(), 0);

  const auto photo = [](const char* name) {
    return (test::shared_dir() / "data" / "faces-casia" / name).string();
  };
  const auto v = run_cli("verify " + photo("neil/001.jpg") + " " + photo("neil/004.jpg") +
                             real_model() + "--manifest " + (tmp / "m.json").string() + " --json",
                         tmp);
  ASSERT_EQ(v.exit_code, 0) << v.err;
  const auto out = json::parse(v.out);
  EXPECT_EQ(out["threshold"].get<double>(), threshold);
  EXPECT_GT(out["similarity"].get<double>(), 0.5);  // the same man, two good photos
  EXPECT_GT(out["quality_a"].get<double>(), 0);
  const bool low = std::min(out["quality_a"].get<double>(), out["quality_b"].get<double>()) <
                   manifest["quality_threshold"].get<double>();
  EXPECT_EQ(out["decision"], low ? "undecided" : "same");
  // The default manifest without calibration, text output.
  const auto t =
      run_cli("verify " + photo("neil/001.jpg") + " " + photo("pam/002.jpg") + real_model(), tmp);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("different person"), std::string::npos) << t.out;
}

TEST(CliGolden, ReportOnRealFacesHasEveryPictureAndConsistentNumbers) {
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  test::TempDir tmp;
  const auto r = run_cli("report " + (test::shared_dir() / "data" / "faces-casia").string() +
                             real_model() + "--out " + (tmp / "report").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* png : {"faces_by_quality.png", "similarity.png", "distance.png", "pca.png",
                          "quality_histogram.png"}) {
    const cv::Mat img = cv::imread((tmp / "report" / png).string());
    EXPECT_FALSE(img.empty()) << png;
  }
  const auto html = test::read_file(tmp / "report" / "report.html");
  std::size_t images = 0;
  for (auto pos = html.find("data:image/png;base64,"); pos != std::string::npos;
       pos = html.find("data:image/png;base64,", pos + 1))
    ++images;
  EXPECT_EQ(images, 5u);
  const auto report = test::read_json(tmp / "report" / "report.json");
  ASSERT_EQ(report["groups"].size(), 3u);
  const auto& faces = report["faces"];
  const auto& distance = report["distance"];
  const auto& cosine = report["cosine_similarity"];
  double within = 0, between = 0;
  std::size_t n_within = 0, n_between = 0;
  for (const auto& g : report["groups"]) {
    EXPECT_EQ(g["faces"], 15) << g["name"];
    // WSS from the distance matrix: sum over member pairs of d^2 / (2 n).
    double sq = 0;
    for (std::size_t i = 0; i < faces.size(); ++i) {
      for (std::size_t j = 0; j < faces.size(); ++j) {
        if (faces[i]["group"] != g["name"] || faces[j]["group"] != g["name"]) continue;
        sq += std::pow(distance[i][j].get<double>(), 2);
      }
    }
    EXPECT_NEAR(g["wss"].get<double>(), sq / 30.0, 1e-9) << g["name"];
  }
  for (std::size_t i = 0; i < faces.size(); ++i) {
    for (std::size_t j = 0; j < faces.size(); ++j) {
      if (i == j) continue;
      const bool same = faces[i]["group"] == faces[j]["group"];
      (same ? within : between) += cosine[i][j].get<double>();
      ++(same ? n_within : n_between);
    }
  }
  // Real faces: clearly more alike within a person than across (golden: 0.44 vs 0.02).
  EXPECT_GT(within / n_within, 0.3);
  EXPECT_LT(between / n_between, 0.1);
  // Faces listed by group, then best quality first.
  for (std::size_t i = 1; i < faces.size(); ++i) {
    if (faces[i]["group"] == faces[i - 1]["group"])
      EXPECT_GE(faces[i - 1]["quality"].get<double>(), faces[i]["quality"].get<double>());
  }
}

// report.json against numbers computed here from `facemag embed --npy` of the same photos (the
// face report chooses, one per forward pass as report encodes them): each face's quality, each
// group's spread (a one-face group included), the totals and the centroid distances.
TEST(CliGolden, ReportNumbersMatchAnIndependentComputationFromEmbed) {
  FACEMAG_REQUIRE_FILE(mobilefacenet());
  test::TempDir tmp;
  const auto casia = test::shared_dir() / "data" / "faces-casia";
  const std::vector<std::string> photos = {"bruce/001.jpg", "neil/001.jpg", "neil/002.jpg",
                                           "neil/003.jpg",  "pam/001.jpg",  "pam/002.jpg"};
  for (const auto& photo : photos) {
    std::filesystem::create_directories((tmp / "faces" / photo).parent_path());
    std::filesystem::copy_file(casia / photo, tmp / "faces" / photo);
  }
  const auto faces_dir = (tmp / "faces").string();
  const auto r =
      run_cli("report " + faces_dir + real_model() + "--out " + (tmp / "report").string(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto e = run_cli(
      "embed " + faces_dir + real_model() + "--keep --batch 1 --npy " + (tmp / "e.npy").string(),
      tmp);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto raw = io::read_npy(tmp / "e.npy").to(torch::kFloat64);
  const auto index = test::json_lines(test::read_file(tmp / "e.jsonl"));
  ASSERT_EQ(index.size(), photos.size());
  ASSERT_EQ(raw.size(0), static_cast<std::int64_t>(photos.size()));
  std::map<std::string, std::vector<std::int64_t>> members;  // group (folder) -> rows
  std::map<std::string, double> magnitude;                   // "group/file" -> raw norm
  std::map<std::string, double> quality;                     // "group/file" -> embed's quality
  for (const auto& line : index) {
    const std::filesystem::path path = line["path"].get<std::string>();
    const auto group = path.parent_path().filename().string();
    const auto row = line["row"].get<std::int64_t>();
    members[group].push_back(row);
    magnitude[group + "/" + path.filename().string()] = raw[row].norm().item<double>();
    quality[group + "/" + path.filename().string()] = line["quality"].get<double>();
  }

  const auto report = test::read_json(tmp / "report" / "report.json");
  ASSERT_EQ(report["faces"].size(), photos.size());
  for (const auto& face : report["faces"]) {
    const auto name = face["name"].get<std::string>();
    ASSERT_TRUE(quality.count(name)) << name;
    EXPECT_NEAR(face["quality"].get<double>(), quality.at(name), 1e-4) << name;
    EXPECT_NEAR(face["magnitude"].get<double>(), magnitude.at(name), 1e-4) << name;
    // MobileFaceNet is not MagFace-trained: the quality is the magnitude times a factor <= 1.
    EXPECT_LE(face["quality"].get<double>(), face["magnitude"].get<double>() + 1e-6) << name;
  }
  const auto unit = raw / raw.norm(2, 1, true);
  const auto overall = unit.mean(0);
  ASSERT_EQ(report["groups"].size(), members.size());
  double total_wss = 0, between_ss = 0;
  std::vector<torch::Tensor> centroids;
  std::size_t g = 0;
  for (const auto& [name, rows] : members) {  // name order, as the report numbers groups
    const auto& group = report["groups"][g++];
    EXPECT_EQ(group["name"], name);
    EXPECT_EQ(group["faces"], rows.size());
    const auto u = unit.index_select(0, torch::tensor(rows));
    const auto centroid = u.mean(0);
    const double wss = (u - centroid).pow(2).sum().item<double>();
    double similarity = 0;
    for (std::int64_t i = 0; i < u.size(0); ++i) {
      for (std::int64_t j = i + 1; j < u.size(0); ++j) similarity += u[i].dot(u[j]).item<double>();
    }
    const double pairs = double(rows.size()) * double(rows.size() - 1) / 2;
    EXPECT_NEAR(group["wss"].get<double>(), wss, 1e-6) << name;
    EXPECT_NEAR(group["mean_pairwise_similarity"].get<double>(),
                pairs > 0 ? similarity / pairs : 0.0, 1e-6)
        << name;
    double quality_sum = 0;
    for (const auto& line : index) {
      const std::filesystem::path path = line["path"].get<std::string>();
      if (path.parent_path().filename() == name) quality_sum += line["quality"].get<double>();
    }
    EXPECT_NEAR(group["mean_quality"].get<double>(), quality_sum / double(rows.size()), 1e-4)
        << name;
    total_wss += wss;
    between_ss += double(rows.size()) * (centroid - overall).pow(2).sum().item<double>();
    centroids.push_back(centroid);
  }
  EXPECT_NEAR(report["total_wss"].get<double>(), total_wss, 1e-6);
  EXPECT_NEAR(report["between_group_ss"].get<double>(), between_ss, 1e-6);
  for (std::size_t a = 0; a < centroids.size(); ++a) {
    for (std::size_t b = 0; b < centroids.size(); ++b) {
      EXPECT_NEAR(report["centroid_distance"][a][b].get<double>(),
                  (centroids[a] - centroids[b]).norm().item<double>(), 1e-6);
    }
  }
}

}  // namespace
}  // namespace facemag
