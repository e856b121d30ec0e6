#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <set>
#include <string>

#include "facemag/error.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/shard.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

Environment environment(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const char* name) -> const char* {
    const auto it = variables.find(name);
    return it == variables.end() ? nullptr : it->second.c_str();
  };
}

TEST(Shard, ParsesGivenSlurmAndKubernetesShards) {
  const auto none = environment({});
  EXPECT_EQ(parse_shard("2/3", none).index, 1u);
  EXPECT_EQ(parse_shard("2/3", none).count, 3u);
  // sbatch --array=4-6: tasks 4, 5, 6; task 5 is the second of three.
  const auto slurm = environment({{"SLURM_ARRAY_TASK_ID", "5"},
                                  {"SLURM_ARRAY_TASK_MIN", "4"},
                                  {"SLURM_ARRAY_TASK_COUNT", "3"}});
  EXPECT_EQ(parse_shard("auto", slurm).index, 1u);
  EXPECT_EQ(parse_shard("auto", slurm).count, 3u);
  const auto kubernetes = environment({{"JOB_COMPLETION_INDEX", "2"}});
  EXPECT_EQ(parse_shard("auto/4", kubernetes).index, 2u);
  EXPECT_EQ(parse_shard("auto/4", kubernetes).count, 4u);
  for (const auto* bad : {"0/3", "4/3", "a/b", "3", "1/0", "2/"})
    EXPECT_THROW(parse_shard(bad, none), InvalidInput) << bad;
  EXPECT_THROW(parse_shard("auto", none), InvalidInput);
  EXPECT_THROW(parse_shard("auto", kubernetes), InvalidInput);    // no count
  EXPECT_THROW(parse_shard("auto/2", kubernetes), InvalidInput);  // index 2 of 2
  EXPECT_THROW(parse_shard("auto", environment({{"SLURM_ARRAY_TASK_ID", "x"}})), InvalidInput);
}

TEST(Shard, EveryFileFallsInOneShardAndKeepsItAsTheArchiveGrows) {
  std::vector<io::InputFile> files;
  for (int i = 0; i < 1000; ++i) {
    const std::string name = "person" + std::to_string(i % 37) + "/" + std::to_string(i) + ".jpg";
    files.push_back({"/photos/" + name, name});
  }
  std::multiset<std::string> seen;
  std::map<std::string, std::size_t> shard_of;
  for (std::size_t k = 0; k < 3; ++k) {
    const auto part = shard_files(files, {k, 3});
    EXPECT_GT(part.size(), 250u);  // a hash spreads them: 333 expected
    EXPECT_LT(part.size(), 420u);
    for (const auto& f : part) {
      seen.insert(f.name.string());
      shard_of[f.name.string()] = k;
    }
  }
  EXPECT_EQ(seen.size(), files.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), files.size());
  files.push_back({"/photos/new.jpg", "new.jpg"});
  for (std::size_t k = 0; k < 3; ++k) {
    for (const auto& f : shard_files(files, {k, 3})) {
      if (f.name != "new.jpg") EXPECT_EQ(shard_of.at(f.name.string()), k);
    }
  }
}

// Nine CASIA photos embedded by one run, and by three shard runs merged: the same matrix and row
// index (--batch 1: every photo detected alone in both, so the bits agree).
TEST(CliGolden, ShardsOfAnArchiveMergeIntoWhatOneRunWrites) {
  const auto casia = test::shared_dir() / "data" / "faces-casia";
  const auto weights = test::shared_dir() / "weights";
  FACEMAG_REQUIRE_FILE(weights / "mobilefacenet" / "068.ckpt");
  FACEMAG_REQUIRE_FILE(casia / "bruce" / "001.jpg");
  test::TempDir tmp;
  std::filesystem::create_directories(tmp / "photos");
  for (const auto* person : {"bruce", "neil", "pam"}) {
    std::filesystem::create_directories(tmp / "photos" / person);
    for (const auto* photo : {"001.jpg", "002.jpg", "003.jpg"})
      std::filesystem::copy_file(casia / person / photo, tmp / "photos" / person / photo);
  }
  const std::string model = " --arch mobilefacenet --batch 1 --weights " +
                            (weights / "mobilefacenet" / "068.ckpt").string() + " --mtcnn " +
                            (weights / "mtcnn").string() + " --out /dev/null ";
  const auto photos = (tmp / "photos").string();
  auto r = test::run_cli("embed " + photos + model + "--npy " + (tmp / "all.npy").string(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string parts;
  std::size_t rows = 0;
  for (int k = 1; k <= 3; ++k) {
    const auto part = tmp / ("part" + std::to_string(k) + ".npy");
    // The second shard from Slurm's variables, the others given.
    r = k == 2 ? test::run_cli("embed " + photos + model + "--shard auto --npy " + part.string(),
                               tmp, "SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3")
               : test::run_cli("embed " + photos + model + "--shard " + std::to_string(k) +
                                   "/3 --npy " + part.string(),
                               tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("shard " + std::to_string(k) + " of 3"), std::string::npos) << r.err;
    rows += static_cast<std::size_t>(io::read_npy(part).size(0));
    parts += " " + part.string();
  }
  r = test::run_cli("embed --merge" + parts + " --npy " + (tmp / "merged.npy").string(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto all = io::read_npy(tmp / "all.npy");
  EXPECT_EQ(rows, static_cast<std::size_t>(all.size(0)));
  EXPECT_TRUE(torch::equal(io::read_npy(tmp / "merged.npy"), all));
  EXPECT_EQ(test::read_file(tmp / "merged.jsonl"), test::read_file(tmp / "all.jsonl"));
  // A part merged twice is refused, naming the file.
  r = test::run_cli("embed --merge" + parts + " " + (tmp / "part1.npy").string() + " --npy " +
                        (tmp / "twice.npy").string(),
                    tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is in both"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace facemag
