// The library functions behind `facemag bench`, `models`, `export onnx` and `train --nproc`, called
// directly as another front end (Python) would.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "facemag/bench/bench.hpp"
#include "facemag/error.hpp"
#include "facemag/export/onnx.hpp"
#include "facemag/model/store.hpp"
#include "facemag/train/run.hpp"

namespace facemag {
namespace {

TEST(CommandLibrary, MedianSecondsWarmsUpThenTimesEachRepetition) {
  int runs = 0;
  const double seconds = bench::median_seconds(3, [&] { ++runs; });
  EXPECT_EQ(runs, 4);  // one warm-up, three timed
  EXPECT_GE(seconds, 0.0);
}

TEST(CommandLibrary, SoakSamplesMemoryAfterEachTenthAndReportsProgress) {
  std::size_t begun = 0, advanced = 0;
  bool ended = false;
  bench::SoakProgress progress{[&](std::size_t total) { begun = total; },
                               [&](std::size_t n) { advanced += n; }, [&] { ended = true; }};
  const auto record = bench::soak(
      20, [] { return std::size_t{2}; }, progress);
  EXPECT_EQ(record["images"], 20);
  EXPECT_EQ(record["samples"].size(), 10u);
  EXPECT_EQ(begun, 20u);
  EXPECT_EQ(advanced, 20u);
  EXPECT_TRUE(ended);
  EXPECT_DOUBLE_EQ(
      record["rss_growth_mb"].get<double>(),
      record["rss_at_end_mb"].get<double>() - record["rss_after_first_tenth_mb"].get<double>());
}

TEST(CommandLibrary, OnnxBatchIsDynamicOrAPositiveNumber) {
  EXPECT_EQ(parse_onnx_batch("dynamic"), 0);
  EXPECT_EQ(parse_onnx_batch("8"), 8);
  for (const std::string bad : {"0", "-1", "8x", "", "many"}) {
    try {
      parse_onnx_batch(bad);
      ADD_FAILURE() << bad;
    } catch (const InvalidInput& e) {
      EXPECT_EQ(std::string(e.what()),
                "--batch " + bad + ": expected 'dynamic' or a positive number");
    }
  }
}

TEST(CommandLibrary, AWorkerCommandLineGetsItsShareOfTheThreadsAndNoNproc) {
  const std::vector<std::string> own{"facemag", "train", "list.txt",    "--nproc",  "4",
                                     "--out",   "run",   "--threads=8", "--nproc=4"};
  EXPECT_EQ(
      train::worker_command_line(own, 2),
      (std::vector<std::string>{"facemag", "train", "list.txt", "--out", "run", "--threads", "2"}));
}

TEST(CommandLibrary, AStoredModelsRecordMarksResearchOnlyLicences) {
  StoredModel model;
  model.name = "m";
  model.weights = "/store/m/weights.pth";
  model.size_bytes = 42;
  model.description.architecture = "iresnet18";
  model.description.licence = "non-commercial research only";
  const auto record = to_json(model, true);
  EXPECT_EQ(record["name"], "m");
  EXPECT_EQ(record["default"], true);
  EXPECT_EQ(record["size_bytes"], 42);
  EXPECT_EQ(record["weights"], "/store/m/weights.pth");
  EXPECT_EQ(record["research_only"], true);
  EXPECT_EQ(licence_label(model.description), "non-commercial research only [RESEARCH ONLY]");
}

}  // namespace
}  // namespace facemag
