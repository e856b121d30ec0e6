// The library side of `eval pairs|erc`, `calibrate` and `eval ijb`: calibration, the
// error-versus-reject summary, the JSON forms and the IJB protocol files, on synthetic pairs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "facemag/error.hpp"
#include "facemag/eval/calibration.hpp"
#include "facemag/eval/erc.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/json.hpp"
#include "facemag/eval/pair_source.hpp"
#include "test_support.hpp"

namespace facemag::eval {
namespace {

// P pairs of D-dimensional features: same pairs close together, different pairs apart, the
// magnitudes spread so that the quality ranks them.
LoadedPairs synthetic_pairs(std::int64_t pairs, std::int64_t dim = 8) {
  torch::manual_seed(7);
  auto base = torch::randn({pairs, dim}, torch::kFloat64);
  auto labels = torch::arange(pairs) % 2;  // 0, 1, 0, 1 ...
  auto other = torch::where(labels.unsqueeze(1).to(torch::kBool),
                            base + 0.3 * torch::randn({pairs, dim}, torch::kFloat64),
                            torch::randn({pairs, dim}, torch::kFloat64));
  auto scale = 1 + torch::arange(pairs, torch::kFloat64).unsqueeze(1) / double(pairs);
  auto features = torch::stack({base * scale, other * scale}, 1).reshape({2 * pairs, dim});
  LoadedPairs out;
  out.pairs = make_feature_pairs(features, labels);
  const auto norms = features.norm(2, 1).contiguous();
  out.face_quality.assign(norms.data_ptr<double>(), norms.data_ptr<double>() + norms.numel());
  out.description = "some/folder/synthetic.npy";
  for (std::int64_t p = 0; p < pairs; ++p) out.source_index.push_back(std::size_t(p));
  return out;
}

TEST(EvalPairsLibrary, PairCountsDescribeTheSet) {
  EXPECT_EQ(pair_counts(synthetic_pairs(10).pairs), "10 pairs (5 same, 5 different)");
}

TEST(EvalPairsLibrary, CalibrateStoresTheMeasuredThresholdsAndTheirTexts) {
  const auto loaded = synthetic_pairs(40);  // 20 different pairs: FMR 1e-1 measurable, 1e-2 not
  const auto c = calibrate(loaded, ModelManifest{},
                           {.fmrs = {1e-1, 1e-2}, .decision_fmr = 1e-1, .reject_rate = 0.1});
  ASSERT_EQ(c.thresholds.size(), 2u);
  ASSERT_TRUE(c.thresholds[0].point.has_value());
  EXPECT_FALSE(c.thresholds[1].point.has_value());
  const auto op = operating_point(pair_similarities(loaded.pairs), loaded.pairs.is_same, 1e-1);
  EXPECT_EQ(c.thresholds[0].point->threshold, op->threshold);
  EXPECT_TRUE(c.decision_measured);
  ASSERT_EQ(c.manifest.fmr_thresholds.size(), 1u);
  EXPECT_EQ(c.manifest.same_person_threshold, op->threshold);
  EXPECT_EQ(c.manifest.threshold_calibration,
            "FMR 1e-01 on synthetic.npy (40 pairs (20 same, 20 different))");
  EXPECT_EQ(c.manifest.quality_calibration,
            "rejects 10.0% of the faces of synthetic.npy (40 pairs (20 same, 20 different))");
  EXPECT_EQ(c.quality_threshold, quality_threshold(loaded.face_quality, 0.1));
  EXPECT_EQ(c.manifest.quality_threshold, c.quality_threshold);
  EXPECT_EQ(to_json(c)["thresholds"][1]["threshold"], nullptr);
}

TEST(EvalPairsLibrary, CalibrateFallsBackToTheBestAccuracyThreshold) {
  const auto loaded = synthetic_pairs(10);
  const auto c = calibrate(loaded, ModelManifest{}, {.fmrs = {1e-3}});
  EXPECT_FALSE(c.decision_measured);
  EXPECT_TRUE(c.manifest.fmr_thresholds.empty());
  const auto roc = roc_summary(pair_similarities(loaded.pairs), loaded.pairs.is_same, {});
  EXPECT_EQ(c.manifest.same_person_threshold, roc.best_threshold);
  EXPECT_EQ(c.manifest.threshold_calibration,
            "best accuracy on synthetic.npy (10 pairs (5 same, 5 different)) (FMR 1e-03 not "
            "measurable)");
}

TEST(EvalPairsLibrary, ErrorVersusRejectSummaryIsTheCurveAndItsFigures) {
  const auto loaded = synthetic_pairs(200);
  const auto& pairs = loaded.pairs;
  const auto erc = summarize_error_versus_reject(pairs, {1e-1, 1e-2}, 3);
  const auto steps = error_versus_reject(pairs, pair_qualities(pairs), default_reject_rates());
  ASSERT_EQ(erc.steps.size(), steps.size());
  ASSERT_EQ(erc.random_fnmr.size(), 2u);
  const auto random = random_reject_fnmr(pairs, default_reject_rates(), 1e-2, 3);
  for (std::size_t s = 0; s < steps.size(); ++s) {
    EXPECT_EQ(erc.steps[s].kept, steps[s].kept);
    EXPECT_TRUE(erc.random_fnmr[1][s] == random[s] ||
                (std::isnan(erc.random_fnmr[1][s]) && std::isnan(random[s])));
  }
  // FMR 1e-1 is reached at every step up to 40 %: its mean is over those 9 steps.
  ASSERT_FALSE(erc.mean_fnmr_0_40.empty());
  double sum = 0;
  for (std::size_t s = 0; s < 9; ++s) sum += steps[s].at(1e-1)->fnmr;
  EXPECT_DOUBLE_EQ(erc.mean_fnmr_0_40[0].mean_fnmr, sum / 9);
  const auto j = to_json(erc);
  EXPECT_EQ(j["steps"].size(), steps.size());
  EXPECT_DOUBLE_EQ(j["mean_fnmr_0_40"]["1e-01"].get<double>(), sum / 9);
  const cv::Mat chart = erc_chart(erc, loaded.description);
  EXPECT_EQ(chart.cols, 900);
}

TEST(EvalPairsLibrary, JsonOfTheSourceAndWriteJsonNamesThePath) {
  auto loaded = synthetic_pairs(4);
  loaded.dropped = 1;
  const auto j = to_json(loaded);
  EXPECT_EQ(j["source"], "some/folder/synthetic.npy");
  EXPECT_EQ(j["pairs"], 4);
  EXPECT_EQ(j["dropped_pairs"], 1);
  test::TempDir tmp;
  write_json(tmp / "out.json", j);
  EXPECT_EQ(test::read_json(tmp / "out.json"), j);
  write_json("", j);  // nothing asked for, nothing written
  const auto bad = tmp / "missing" / "out.json";
  try {
    write_json(bad, j);
    FAIL() << "no error";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(std::string(e.what()), bad.string() + ": cannot write");
  }
}

TEST(EvalPairsLibrary, IjbMetaNamesTheProtocolFiles) {
  EXPECT_EQ(far_label(1e-6), "1e-06");
  EXPECT_EQ(far_label(1e-1), "1e-01");
  test::TempDir tmp;
  std::filesystem::create_directories(tmp / "meta");
  for (const char* name : {"ijbb_1N_gallery_S1.csv", "ijbb_1N_gallery_S2.csv"})
    test::write_file(tmp / "meta" / name, "TEMPLATE_ID,SUBJECT_ID\n");
  const IjbMeta meta{tmp.path(), "b"};
  const auto galleries = meta.gallery_lists();
  ASSERT_EQ(galleries.size(), 2u);
  EXPECT_EQ(galleries[1], tmp / "meta" / "ijbb_1N_gallery_S2.csv");
  EXPECT_THROW(meta.face_list(), InvalidInput);
}

}  // namespace
}  // namespace facemag::eval
