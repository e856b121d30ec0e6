// Verification metrics against MagFace's eval_1v1.py / eval_quality.py goldens, the
// insightface .bin reader, and the ROC summary against hand-counted values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "facemag/error.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/io/verification_bin.hpp"
#include "test_support.hpp"

namespace facemag::eval {
namespace {

using test::golden_dir;

FeaturePairs golden_pairs(const std::string& set) {
  const auto dir = golden_dir() / "eval";
  if (set == "pairs600") {
    return make_feature_pairs(io::read_npy(dir / "pairs600_features.npy"),
                              io::read_npy(dir / "pairs600_issame.npy"));
  }
  return make_feature_pairs(io::read_npy(dir / "erc_features.npy"),
                            io::read_npy(dir / "erc_issame.npy"),
                            io::read_npy(dir / "erc_pairs.npy"));
}

TEST(EvalGolden, TenFoldAccuracyMatchesEval1v1) {
  FACEMAG_REQUIRE_FILE(golden_dir() / "eval" / "eval.json");
  const auto golden =
      test::read_json(golden_dir() / "eval" / "eval.json")["pairs600"]["verification"];
  const auto result = kfold_verification(golden_pairs("pairs600"));
  ASSERT_EQ(result.folds.size(), 10u);
  for (std::size_t f = 0; f < 10; ++f) {
    const auto& g = golden["folds"][f];
    SCOPED_TRACE("fold " + std::to_string(f));
    EXPECT_EQ(result.folds[f].test_begin, g["test_pairs"][0].get<std::size_t>());
    EXPECT_EQ(result.folds[f].test_end, g["test_pairs"][1].get<std::size_t>() + 1);
    EXPECT_EQ(result.folds[f].best_threshold_index, g["best_threshold_index"].get<std::size_t>());
    EXPECT_EQ(result.folds[f].best_threshold, g["best_threshold"].get<double>());
    EXPECT_EQ(result.folds[f].train_accuracy, g["train_accuracy"].get<double>());
    // Ratios of counts: exact.
    EXPECT_EQ(result.folds[f].accuracy, golden["fold_accuracies"][f].get<double>());
  }
  EXPECT_NEAR(result.mean_accuracy, golden["mean"].get<double>(), 1e-12);
  EXPECT_NEAR(result.std_accuracy, golden["std"].get<double>(), 1e-12);
  ASSERT_EQ(result.tpr.size(), golden["tpr"].size());
  for (std::size_t t = 0; t < result.tpr.size(); ++t) {
    EXPECT_NEAR(result.tpr[t], golden["tpr"][t].get<double>(), 1e-12) << "threshold " << t;
    EXPECT_NEAR(result.fpr[t], golden["fpr"][t].get<double>(), 1e-12) << "threshold " << t;
  }
}

void expect_erc_matches(const std::string& set) {
  FACEMAG_REQUIRE_FILE(golden_dir() / "eval" / "eval.json");
  const auto golden =
      test::read_json(golden_dir() / "eval" / "eval.json")[set]["error_versus_reject"];
  const auto pairs = golden_pairs(set);
  const auto steps = error_versus_reject(pairs, pair_qualities(pairs), default_reject_rates());
  std::vector<double> fnmrs;
  for (const auto& s : steps) {
    if (const auto* p = s.at(1e-3)) fnmrs.push_back(p->fnmr);
  }
  // Upstream's list stops where FMR 1e-3 is no longer reached.
  ASSERT_EQ(fnmrs.size(), golden["fnmr_at_fmr_1e-3"].size());
  for (std::size_t i = 0; i < fnmrs.size(); ++i) {
    const auto& g = golden["steps"][i];
    SCOPED_TRACE(set + " reject rate " + std::to_string(i));
    EXPECT_EQ(steps[i].reject_rate, golden["reject_rates"][i].get<double>());
    EXPECT_EQ(steps[i].rejected, g["rejected"].get<std::size_t>());
    EXPECT_EQ(steps[i].kept, g["kept"].get<std::size_t>());
    EXPECT_EQ(steps[i].kept_positive, g["kept_positive"].get<std::size_t>());
    EXPECT_EQ(steps[i].kept_negative, g["kept_negative"].get<std::size_t>());
    const auto* p = steps[i].at(1e-3);
    EXPECT_EQ(p->negative_index, g["negative_index"].get<std::size_t>());
    EXPECT_NEAR(p->threshold, g["threshold"].get<double>(), 1e-12);
    EXPECT_EQ(p->fnmr, golden["fnmr_at_fmr_1e-3"][i].get<double>());
  }
}

TEST(EvalGolden, ErrorVersusRejectMatchesEvalQualityOn600Pairs) { expect_erc_matches("pairs600"); }
TEST(EvalGolden, ErrorVersusRejectMatchesEvalQualityOn4000Pairs) { expect_erc_matches("erc4000"); }

TEST(EvalSpearman, MatchesScipyWithTies) {
  // scipy.stats.spearmanr([1, 2, 3, 4, 5, 6], [5, 6, 7, 8, 7, 1]) = 0.028988551782622423
  const std::vector<double> a{1, 2, 3, 4, 5, 6}, b{5, 6, 7, 8, 7, 1};
  EXPECT_NEAR(eval::spearman(a, b), 0.028988551782622423, 1e-12);
  EXPECT_DOUBLE_EQ(eval::spearman(a, a), 1.0);
  const std::vector<double> reversed{6, 5, 4, 3, 2, 1}, constant{2, 2, 2, 2, 2, 2};
  EXPECT_DOUBLE_EQ(eval::spearman(a, reversed), -1.0);
  EXPECT_TRUE(std::isnan(eval::spearman(a, constant)));
}

TEST(EvalGolden, ReadsBothInsightfaceBinLayouts) {
  const auto dir = golden_dir() / "eval" / "verification_bin";
  FACEMAG_REQUIRE_FILE(dir / "verification_bin.json");
  const auto golden = test::read_json(dir / "verification_bin.json");
  for (const char* name : {"pairs_py2.bin", "pairs_np.bin"}) {
    SCOPED_TRACE(name);
    const auto bin = io::read_verification_bin(dir / name);
    ASSERT_EQ(bin.is_same.size(), golden["n_pairs"].get<std::size_t>());
    for (std::size_t p = 0; p < bin.is_same.size(); ++p)
      EXPECT_EQ(bin.is_same[p], golden["is_same"][p].get<bool>());
    ASSERT_EQ(bin.images.size(), golden["images"].size());
    for (std::size_t i = 0; i < bin.images.size(); ++i) {
      const auto file =
          test::shared_dir() / "data" / golden["images"][i]["file"].get<std::string>();
      EXPECT_EQ(bin.images[i].size(), golden["images"][i]["bytes"].get<std::size_t>());
      if (std::filesystem::exists(file)) EXPECT_EQ(bin.images[i], test::read_file(file)) << file;
    }
  }
}

TEST(VerificationBin, OtherPicklesAndFilesAreClearErrors) {
  // An empty dict, protocol 2.
  const std::string dict_pickle("\x80\x02}q\x00.", 6);
  try {
    io::read_verification_bin_bytes(dict_pickle, "x.bin");
    FAIL() << "a dict was accepted";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("x.bin is not an insightface verification .bin"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("dict"), std::string::npos) << e.what();
  }
  EXPECT_THROW(io::read_verification_bin_bytes("\xff\xd8\xff\xe0 not a pickle", "y.bin"),
               InvalidInput);
  // (['a'], [True]): one image for one pair.
  const std::string short_list(
      "\x80\x02]q\x00"
      "C\x01"
      "aa]q\x01\x88"
      "a\x86.",
      16);
  try {
    io::read_verification_bin_bytes(short_list, "z.bin");
    FAIL() << "1 image for 1 pair was accepted";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("1 pairs need 2 images, the file has 1"),
              std::string::npos)
        << e.what();
  }
}

TEST(FeaturePairs, RejectsNanMismatchedRowsAndBadLabels) {
  auto features = torch::ones({4, 3});
  EXPECT_THROW(make_feature_pairs(features, torch::tensor({1, 0, 1})), InvalidInput);
  EXPECT_THROW(make_feature_pairs(features, torch::tensor({1, 2})), InvalidInput);
  EXPECT_THROW(make_feature_pairs(features, torch::tensor({1}), torch::tensor({{0, 4}})),
               InvalidInput);
  features[2][1] = std::nan("");
  try {
    make_feature_pairs(features, torch::tensor({1, 0}));
    FAIL() << "NaN accepted";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
  }
}

TEST(Roc, HandCountedSummary) {
  // genuine 0.9 0.8 0.4; impostor 0.5 0.3 0.1 0.0
  const std::vector<double> score{0.9, 0.5, 0.8, 0.3, 0.4, 0.1, 0.0};
  const std::vector<bool> same{true, false, true, false, true, false, false};
  const auto roc = roc_summary(score, same, {0.25, 0.1});
  EXPECT_DOUBLE_EQ(roc.auc, 11.0 / 12.0);
  EXPECT_DOUBLE_EQ(roc.best_accuracy, 6.0 / 7.0);
  // 6/7 correct both between 0.3 and 0.4 and between 0.5 and 0.8: the lower one is taken.
  EXPECT_DOUBLE_EQ(roc.best_threshold, 0.35);
  EXPECT_DOUBLE_EQ(roc.eer, 0.5 * (0.25 + 1.0 / 3.0));
  EXPECT_DOUBLE_EQ(roc.eer_threshold, 0.45);
  ASSERT_EQ(roc.tar_at_fmr.size(), 1u);  // 4 impostors cannot measure FMR 0.1
  EXPECT_EQ(roc.tar_at_fmr[0].threshold, 0.3);
  EXPECT_EQ(roc.tar_at_fmr[0].false_matches, 1u);
  EXPECT_EQ(roc.tar_at_fmr[0].tar, 1.0);
}

TEST(KFold, UnevenFoldsAsSklearn) {
  // 23 pairs in 10 folds: sizes 3,3,3,2,...
  auto features = torch::randn({46, 4}, torch::kFloat64);
  const auto labels = torch::arange(23) % 2;
  const auto r = kfold_verification(make_feature_pairs(features, labels));
  ASSERT_EQ(r.folds.size(), 10u);
  EXPECT_EQ(r.folds[2].test_end - r.folds[2].test_begin, 3u);
  EXPECT_EQ(r.folds[3].test_begin, 9u);
  EXPECT_EQ(r.folds[9].test_end, 23u);
}

TEST(Erc, QualityThresholdIsTheQuantile) {
  EXPECT_EQ(quality_threshold({5, 1, 4, 2, 3}, 0.4), 3);
  EXPECT_EQ(quality_threshold({5, 1, 4, 2, 3}, 0.0), 1);
  EXPECT_THROW(quality_threshold({1}, 1.0), InvalidInput);
}

}  // namespace
}  // namespace facemag::eval

#include "facemag/eval/analysis.hpp"

namespace facemag::eval {
namespace {

TEST(Analysis, WssAndDistancesAgreeWithPairwiseIdentities) {
  torch::manual_seed(3);
  const auto x = torch::randn({9, 6}, torch::kFloat64) * 3;
  const std::vector<int> group{0, 0, 0, 1, 1, 1, 1, 2, 2};
  const auto a = analyse_embeddings(x, group, {"a", "b", "c"});
  ASSERT_EQ(a.groups.size(), 3u);
  for (int g = 0; g < 3; ++g) {
    // sum_i |x_i - c|^2 = sum_{i,j} |x_i - x_j|^2 / (2 n)
    double pair_sq = 0, pair_d = 0;
    std::size_t n = 0;
    for (std::size_t i = 0; i < 9; ++i) {
      if (group[i] != g) continue;
      ++n;
      for (std::size_t j = 0; j < 9; ++j) {
        if (group[j] != g) continue;
        pair_sq += a.distance[i * 9 + j] * a.distance[i * 9 + j];
        pair_d += a.distance[i * 9 + j];
      }
    }
    EXPECT_NEAR(a.groups[g].wss, pair_sq / (2.0 * n), 1e-12);
    EXPECT_NEAR(a.groups[g].mean_pairwise_distance, pair_d / double(n * (n - 1)), 1e-12);
  }
  // Distances of unit vectors from cosine.
  const auto u = x / x.norm(2, 1, true);
  EXPECT_NEAR(a.distance[1], (u[0] - u[1]).norm().item<double>(), 1e-12);
  EXPECT_NEAR(a.cosine[1], (u[0] * u[1]).sum().item<double>(), 1e-12);
  // The input is not changed (raw magnitudes are the quality).
  EXPECT_NEAR(a.groups[0].mean_quality, x.slice(0, 0, 3).norm(2, 1).mean().item<double>(), 1e-12);
  EXPECT_NEAR(a.total_wss + a.between_ss, (u - u.mean(0)).pow(2).sum().item<double>(),
              1e-12);  // ANOVA decomposition
}

TEST(Analysis, PcaOfPointsOnALineHasOneAxis) {
  // Unit vectors in a plane spanning a small arc: almost all variance along one axis.
  std::vector<double> values;
  for (int i = 0; i < 7; ++i) {
    const double t = 0.01 * i;
    values.insert(values.end(), {std::cos(t), std::sin(t), 0.0});
  }
  const auto x = torch::tensor(values, torch::kFloat64).reshape({7, 3});
  const auto a = analyse_embeddings(x, std::vector<int>(7, 0), {"all"});
  EXPECT_GT(a.explained[0], 0.9999);
  // Projections are sin(t - t_mid): evenly spaced up to the cubic term, |t - t_mid|^3 / 6 <
  // 5e-6 here.
  const double step = a.pca[2] - a.pca[0];
  for (int i = 1; i < 7; ++i) EXPECT_NEAR(a.pca[2 * i] - a.pca[2 * i - 2], step, 1e-5);
}

}  // namespace
}  // namespace facemag::eval

#include <opencv2/imgproc.hpp>

#include "facemag/eval/plot.hpp"

namespace facemag::plot {
namespace {

// Two faces give a second PCA axis of pure rounding noise (~1e-17 wide): the chart must still
// draw (it used to index an empty tick list and crash `facemag report`).
TEST(Plot, RangesOfRoundingNoiseDrawWithTicks) {
  const cv::Mat chart =
      scatter_chart({{"a", {{-0.4, 7.8e-17}, {0.4, 1.5e-17}}}}, {"PCA", "x", "y"});
  ASSERT_EQ(chart.size(), cv::Size(900, 520));
  cv::Mat grey;
  cv::cvtColor(chart, grey, cv::COLOR_BGR2GRAY);
  EXPECT_GT(cv::countNonZero(grey < 255), 1000);  // frame, ticks, labels, points
  const cv::Mat one_point = scatter_chart({{"b", {{3.0, 3.0}}}}, {"one point", "x", "y"});
  EXPECT_EQ(one_point.size(), cv::Size(900, 520));
}

}  // namespace
}  // namespace facemag::plot

#include "facemag/eval/protocol_files.hpp"

namespace facemag::eval {
namespace {

// `read` throws InvalidInput with `message` in its text.
template <class F>
void expect_invalid_input(F read, const std::string& message) {
  try {
    read();
    ADD_FAILURE() << "no InvalidInput; expected '" << message << "'";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

// LFW's pairs.txt with its header: same and different pairs, photo paths in LFW's layout, each
// photo listed once, and the folds the header gives.
TEST(ProtocolFiles, LfwPairsNameThePhotosAndTheFolds) {
  test::TempDir tmp;
  for (const char* photo : {"Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0012.jpg"}) {
    std::filesystem::create_directories((tmp / photo).parent_path());
    test::write_file(tmp / photo, "jpeg");
  }
  test::write_file(tmp / "pairs.txt", "2\t1\n\nAnn\t1\t2\nAnn 2 Bob 12\n");
  const auto list = read_lfw_pairs(tmp / "pairs.txt", tmp.path());
  ASSERT_EQ(list.pairs.size(), 2u);
  EXPECT_EQ(list.fold_size, 2u);
  EXPECT_EQ(list.is_same, (std::vector<bool>{true, false}));
  ASSERT_EQ(list.images.size(), 3u);
  EXPECT_EQ(list.images[0], tmp / "Ann" / "Ann_0001.jpg");
  EXPECT_EQ(list.images[2], tmp / "Bob" / "Bob_0012.jpg");
  EXPECT_EQ(list.pairs[0], (std::array<std::size_t, 2>{0, 1}));
  EXPECT_EQ(list.pairs[1], (std::array<std::size_t, 2>{1, 2}));

  // Without the header: LFW's 600 pairs per fold. Errors name the file and the line.
  test::write_file(tmp / "plain.txt", "Ann 1 2\n");
  EXPECT_EQ(read_lfw_pairs(tmp / "plain.txt", tmp.path()).fold_size, 600u);
  test::write_file(tmp / "bad.txt", "Ann 1 2\nAnn 1 x\n");
  const auto lfw = [&](const char* name) {
    return [&, name] { read_lfw_pairs(tmp / name, tmp.path()); };
  };
  expect_invalid_input(lfw("bad.txt"), "bad.txt:2: 'x' is not a photo number");
  test::write_file(tmp / "gone.txt", "Ann 1 3\n");
  expect_invalid_input(lfw("gone.txt"),
                       "gone.txt:1: " + (tmp / "Ann" / "Ann_0003.jpg").string() + ": no such file");
  test::write_file(tmp / "odd.txt", "Ann 1 2 Bob 12 x\n");
  expect_invalid_input(lfw("odd.txt"),
                       "odd.txt:1: expected 'name n1 n2' or 'name1 n1 name2 n2', got");
}

TEST(ProtocolFiles, ImagePairListsAndLabelsReadBack) {
  test::TempDir tmp;
  test::write_file(tmp / "a.jpg", "jpeg");
  test::write_file(tmp / "b.jpg", "jpeg");
  test::write_file(tmp / "list.txt",
                   "a.jpg b.jpg 1\n./b.jpg " + (tmp / "a.jpg").string() + " False\n");
  const auto list = read_image_pair_list(tmp / "list.txt");
  ASSERT_EQ(list.images.size(), 3u);  // b.jpg spelt two ways: two images; a.jpg the same way
  EXPECT_EQ(list.images[0], tmp / "a.jpg");
  EXPECT_EQ(list.images[2], tmp / "./b.jpg");
  EXPECT_EQ(list.is_same, (std::vector<bool>{true, false}));
  EXPECT_EQ(list.pairs[1], (std::array<std::size_t, 2>{2, 0}));
  EXPECT_EQ(list.fold_size, 600u);

  test::write_file(tmp / "labels.txt", "x y 1\n\nx z 0\nx w true\n");
  const auto labels = read_pair_labels(tmp / "labels.txt");
  EXPECT_TRUE(torch::equal(labels, torch::tensor({1, 0, 1}, torch::kInt64)));
  test::write_file(tmp / "bad_labels.txt", "x y 1\nx z maybe\n");
  expect_invalid_input([&] { read_pair_labels(tmp / "bad_labels.txt"); },
                       "bad_labels.txt:2: the last field 'maybe' is not a same/different label");

  // Pairs written by write_feature_pairs read back as they were.
  const auto pairs = make_feature_pairs(torch::arange(12, torch::kFloat32).reshape({4, 3}),
                                        torch::tensor({1, 0}, torch::kInt64));
  const auto label_path = write_feature_pairs(pairs, tmp / "f.npy");
  EXPECT_EQ(label_path, tmp / "f_issame.npy");
  const auto back = read_feature_pairs(tmp / "f.npy", label_path);
  EXPECT_EQ(back.pairs.first, pairs.first);
  EXPECT_EQ(back.pairs.second, pairs.second);
  EXPECT_EQ(back.pairs.is_same, pairs.is_same);
  ASSERT_EQ(back.row_norms.size(), 4u);
  EXPECT_DOUBLE_EQ(back.row_norms[1], std::sqrt(9.0 + 16.0 + 25.0));
}

}  // namespace
}  // namespace facemag::eval
