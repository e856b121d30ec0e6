#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "facemag/error.hpp"
#include "facemag/eval/cluster.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/model/manifest.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

TEST(Cluster, GroupsNearbyDirectionsAndKeepsOutliersApart) {
  // Three tight bundles around orthogonal axes (5, 3 and 1 members), at different scales:
  // clustering is on direction only.
  std::vector<torch::Tensor> rows;
  const auto axis = [](int k) { return torch::one_hot(torch::tensor(k), 8).to(torch::kFloat32); };
  for (int i = 0; i < 5; ++i) rows.push_back((axis(0) + 0.1 * axis(3 + i % 3)) * (1 + i));
  for (int i = 0; i < 3; ++i) rows.push_back(axis(1) * 10 + 0.05 * axis(6));
  rows.push_back(axis(2));
  const auto embeddings = torch::stack(rows);
  const auto before = embeddings.clone();
  const Clustering c = cluster_faces(embeddings, 0.5);
  EXPECT_TRUE(torch::equal(embeddings, before));  // the caller's vectors are untouched
  ASSERT_EQ(c.groups, 3);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.group[i], 0);
  for (int i = 5; i < 8; ++i) EXPECT_EQ(c.group[i], 1);
  EXPECT_EQ(c.group[8], 2);
  const auto sim = similarity_to_groups(embeddings, c);
  EXPECT_GT(sim[0][0].item<double>(), 0.98);
  EXPECT_NEAR(sim[0][1].item<double>(), 0.0, 1e-9);
  EXPECT_EQ(sim[8][2].item<double>(), 0.0);  // alone: no other member
  // A threshold above every similarity leaves each face alone; -1 merges everything.
  EXPECT_EQ(cluster_faces(embeddings, 1.01).groups, 9);
  EXPECT_EQ(cluster_faces(embeddings, -1.0).groups, 1);
  EXPECT_EQ(cluster_faces(torch::zeros({0, 8}), 0.5).groups, 0);
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

// The old definition, merge by merge: the two groups with the highest mean pairwise similarity
// merge while it is at least the threshold (O(N^3)); numbered by size, then first member.
std::vector<int> greedy_average_linkage(const torch::Tensor& x, double threshold) {
  const auto unit = torch::nn::functional::normalize(
      x.to(torch::kFloat64), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto sim = unit.matmul(unit.t());
  const auto n = static_cast<std::size_t>(x.size(0));
  std::vector<std::vector<std::size_t>> groups(n);
  for (std::size_t i = 0; i < n; ++i) groups[i] = {i};
  while (groups.size() > 1) {
    double best = -3;
    std::size_t ba = 0, bb = 0;
    for (std::size_t a = 0; a < groups.size(); ++a) {
      for (std::size_t b = a + 1; b < groups.size(); ++b) {
        double sum = 0;
        for (auto i : groups[a])
          for (auto j : groups[b]) sum += sim[i][j].item<double>();
        const double mean = sum / double(groups[a].size() * groups[b].size());
        if (mean > best) best = mean, ba = a, bb = b;
      }
    }
    if (best < threshold) break;
    groups[ba].insert(groups[ba].end(), groups[bb].begin(), groups[bb].end());
    groups.erase(groups.begin() + static_cast<std::ptrdiff_t>(bb));
  }
  for (auto& g : groups) std::sort(g.begin(), g.end());
  std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
    return a.size() != b.size() ? a.size() > b.size() : a.front() < b.front();
  });
  std::vector<int> out(n);
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (auto i : groups[g]) out[i] = static_cast<int>(g);
  return out;
}

TEST(Cluster, DendrogramCutsEqualMergingGroupByGroup) {
  torch::manual_seed(3);
  const auto centres = torch::randn({4, 16});
  const auto x =
      torch::cat({centres.repeat({12, 1}) + 0.6 * torch::randn({48, 16}), torch::randn({6, 16})});
  const auto dendrogram = average_linkage(x);
  EXPECT_EQ(dendrogram.merges.size(), 53u);
  for (std::size_t m = 1; m < dendrogram.merges.size(); ++m)
    EXPECT_GE(dendrogram.merges[m - 1].similarity, dendrogram.merges[m].similarity);
  for (const double t : {0.9, 0.5, 0.3, 0.1, -0.2}) {
    EXPECT_EQ(dendrogram.cut(t).group, greedy_average_linkage(x, t)) << "threshold " << t;
  }
}

// predicted [0 0 0 1 1] against identities [0 0 1 1 1], by hand:
//   pairs together 3 + 1 = 4, of one person 1 + 3 = 4, both 1 + 0 + 1 = 2: P = R = F = 0.5.
//   BCubed: per face |group & person| / |group|: 2/3 2/3 1/3 1 1 -> 11/15; recall the same.
//   NMI: MI = 0.8 ln(5/3) + 0.2 ln(5/9), both entropies -(0.6 ln 0.6 + 0.4 ln 0.4).
TEST(ClusterScores, HandComputedCase) {
  const std::vector<int> predicted{0, 0, 0, 1, 1}, truth{0, 0, 1, 1, 1};
  const auto s = score_clustering(predicted, truth);
  EXPECT_DOUBLE_EQ(s.pairwise_precision, 0.5);
  EXPECT_DOUBLE_EQ(s.pairwise_recall, 0.5);
  EXPECT_DOUBLE_EQ(s.pairwise_f, 0.5);
  EXPECT_NEAR(s.bcubed_precision, 11.0 / 15, 1e-15);
  EXPECT_NEAR(s.bcubed_recall, 11.0 / 15, 1e-15);
  const double mi = 0.8 * std::log(5.0 / 3) + 0.2 * std::log(5.0 / 9);
  const double h = -(0.6 * std::log(0.6) + 0.4 * std::log(0.4));
  EXPECT_NEAR(s.nmi, mi / h, 1e-12);
  EXPECT_EQ(s.groups, 2);
  EXPECT_EQ(s.identities, 2);
}

TEST(ClusterScores, PerfectMergedAndSplitGroupings) {
  const std::vector<int> truth{3, 3, 7, 7, 7, 9};
  const auto perfect = score_clustering(std::vector<int>{1, 1, 0, 0, 0, 2}, truth);
  for (double v : {perfect.pairwise_precision, perfect.pairwise_recall, perfect.pairwise_f,
                   perfect.bcubed_precision, perfect.bcubed_recall, perfect.bcubed_f})
    EXPECT_DOUBLE_EQ(v, 1.0);
  EXPECT_NEAR(perfect.nmi, 1.0, 1e-12);
  const auto merged = score_clustering(std::vector<int>(6, 0), truth);
  EXPECT_DOUBLE_EQ(merged.bcubed_recall, 1.0);
  EXPECT_DOUBLE_EQ(merged.pairwise_recall, 1.0);
  EXPECT_NEAR(merged.bcubed_precision, (2 * 2.0 / 6 + 3 * 3.0 / 6 + 1.0 / 6) / 6, 1e-15);
  EXPECT_DOUBLE_EQ(merged.nmi, 0.0);
  const auto split = score_clustering(std::vector<int>{0, 1, 2, 3, 4, 5}, truth);
  EXPECT_DOUBLE_EQ(split.bcubed_precision, 1.0);
  EXPECT_DOUBLE_EQ(split.pairwise_precision, 1.0);
  EXPECT_DOUBLE_EQ(split.pairwise_recall, 0.0);
  EXPECT_THROW(score_clustering(std::vector<int>{0}, truth), InvalidInput);
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

using test::run_cli;

// Three well separated people of 4 faces, one of them also owning a fifth face that points
// elsewhere with a tiny magnitude: a poor face. At threshold 0.5 the people are recovered.
TEST(CliGolden, EvalClusterScoresFeaturesAgainstLabels) {
  test::TempDir tmp;
  torch::manual_seed(5);
  const auto centres = torch::eye(8).slice(0, 0, 3) * 10;
  auto x = torch::cat({centres.repeat_interleave(4, 0) + 0.5 * torch::randn({12, 8}),
                       0.1 * torch::one_hot(torch::tensor({7}), 8).to(torch::kFloat32)});
  io::write_npy(tmp / "f.npy", x);
  test::write_file(tmp / "labels.txt",
                   "ann\nann\nann\nann\nbob\nbob\nbob\nbob\ncy\ncy\ncy\ncy\nann\n");
  const auto r = run_cli("eval cluster --features " + (tmp / "f.npy").string() + " --labels " +
                             (tmp / "labels.txt").string() +
                             " --threshold 0.5 --sweep 0.1,0.9,0.2 --min-quality 1 --json " +
                             (tmp / "c.json").string() + " --plot " + (tmp / "c.png").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::cout << r.out;
  const auto out = test::read_json(tmp / "c.json");
  EXPECT_EQ(out["faces"], 13);
  EXPECT_EQ(out["identities"], 3);
  // Threshold 0.5: the three people plus the poor face alone: no false merge, and of Ann's
  // C(5,2) = 10 pairs the 4 with the poor face are missed: pairwise recall (6+6+6)/(10+6+6).
  EXPECT_EQ(out["scores"]["groups"], 4);
  EXPECT_DOUBLE_EQ(out["scores"]["pairwise"]["precision"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(out["scores"]["pairwise"]["recall"].get<double>(), 18.0 / 22);
  EXPECT_EQ(out["sweep"].size(), 5u);
  // Left out, the poor face costs nothing: a perfect clustering of the 12 others.
  EXPECT_EQ(out["quality"]["poor_faces"], 1);
  EXPECT_DOUBLE_EQ(out["quality"]["left_out"]["bcubed"]["f"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(out["quality"]["left_out"]["nmi"].get<double>(), 1.0);
  EXPECT_GT(std::filesystem::file_size(tmp / "c.png"), 1000u);

  test::write_file(tmp / "short.txt", "ann\nbob\n");
  const auto bad = run_cli("eval cluster --features " + (tmp / "f.npy").string() + " --labels " +
                               (tmp / "short.txt").string(),
                           tmp);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("short.txt: 2 labels for 13 feature rows"), std::string::npos) << bad.err;
}

// `eval cluster --manifest-out`: the sweep's best-BCubed threshold becomes the manifest's
// clustering threshold, which `clustering_threshold` (the default of cluster and eval cluster)
// then returns; the calibration text says on what.
TEST(CliGolden, EvalClusterStoresItsBestThresholdAsTheModelsClusteringThreshold) {
  test::TempDir tmp;
  torch::manual_seed(7);
  const auto centres = torch::eye(8).slice(0, 0, 3) * 10;
  io::write_npy(tmp / "f.npy", centres.repeat_interleave(4, 0) + 3.0 * torch::randn({12, 8}));
  test::write_file(tmp / "labels.txt", "a\na\na\na\nb\nb\nb\nb\nc\nc\nc\nc\n");
  const auto r =
      run_cli("eval cluster --features " + (tmp / "f.npy").string() + " --labels " +
                  (tmp / "labels.txt").string() + " --sweep 0.1,0.9,0.1 --json " +
                  (tmp / "c.json").string() + " --manifest-out " + (tmp / "m.json").string(),
              tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto evaluation = test::read_json(tmp / "c.json");
  double best = -1, best_threshold = 0;
  for (const auto& point : evaluation["sweep"]) {
    if (point["scores"]["bcubed"]["f"].get<double>() > best) {
      best = point["scores"]["bcubed"]["f"].get<double>();
      best_threshold = point["threshold"].get<double>();
    }
  }
  const auto manifest = load_manifest(tmp / "m.json");
  EXPECT_DOUBLE_EQ(manifest.cluster_threshold, best_threshold);
  EXPECT_DOUBLE_EQ(clustering_threshold(manifest), best_threshold);
  EXPECT_NE(manifest.cluster_calibration.find("f.npy (12 faces of 3 people)"), std::string::npos)
      << manifest.cluster_calibration;
  EXPECT_NE(manifest.cluster_calibration.find("thresholds 0.10-0.90 by 0.10"), std::string::npos)
      << manifest.cluster_calibration;
}

// `calibrate --people`: the clustering threshold learnt from photos in one folder per person
// (faces-casia's 3 people, real MTCNN and MobileFaceNet; best BCubed F 0.958 measured).
TEST(CliGolden, CalibrateLearnsTheClusteringThresholdFromPeoplesFolders) {
  const auto casia = test::shared_dir() / "data" / "faces-casia";
  const auto weights = test::shared_dir() / "weights";
  FACEMAG_REQUIRE_FILE(weights / "mobilefacenet" / "068.ckpt");
  FACEMAG_REQUIRE_FILE(casia);
  test::TempDir tmp;
  const auto r =
      run_cli("calibrate --people " + casia.string() + " --arch mobilefacenet --weights " +
                  (weights / "mobilefacenet" / "068.ckpt").string() + " --mtcnn " +
                  (weights / "mtcnn").string() + " --manifest-out " + (tmp / "m.json").string(),
              tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto manifest = load_manifest(tmp / "m.json");
  EXPECT_GE(manifest.cluster_threshold, 0.05);
  EXPECT_LE(manifest.cluster_threshold, 0.80);
  EXPECT_NE(
      manifest.cluster_calibration.find("(45 faces of 3 people), thresholds 0.05-0.80 by 0.01"),
      std::string::npos)
      << manifest.cluster_calibration;
  const auto at = manifest.cluster_calibration.find("best BCubed F (");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GE(std::stod(manifest.cluster_calibration.substr(at + 15)), 0.9);
  // The pair thresholds are not touched.
  EXPECT_DOUBLE_EQ(manifest.same_person_threshold, 0.2);
}

// The 197 people of ../shared/data/lfw-half with 5 or more photos (2602 photos), real
// MobileFaceNet through MTCNN. Measured on AMD Zen 5: at the model's threshold 0.2 (calibrated on
// three CASIA people) 118 groups, pairwise P/R/F 0.668/0.996/0.800, BCubed F 0.790, NMI 0.929;
// best BCubed F over the sweep at 0.40: 235 groups, pairwise F 0.982, BCubed P/R/F
// 0.979/0.961/0.970, NMI 0.989. The bars leave room for one point of float noise per score.
// --threshold 0.2 keeps the recall check on the model's same-person threshold (the default is now
// the manifest's clustering threshold, calibrated on all of lfw-half).
TEST(CliOnWholeDatasets, EvalClusterRecoversThePeopleOfLfw) {
  const auto lfw = test::shared_dir() / "data" / "lfw-half" / "images";
  FACEMAG_REQUIRE_FILE(lfw / "Abel_Pacheco");
  const auto weights = test::shared_dir() / "weights";
  FACEMAG_REQUIRE_FILE(weights / "mobilefacenet" / "068.ckpt");
  test::TempDir tmp;
  const auto r = run_cli("eval cluster --by-folder " + lfw.string() +
                             " --min-per-person 5 --threshold 0.2 --arch mobilefacenet --flip"
                             " --weights " +
                             (weights / "mobilefacenet" / "068.ckpt").string() + " --mtcnn " +
                             (weights / "mtcnn").string() + " --json " + (tmp / "c.json").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::cout << r.out;
  const auto out = test::read_json(tmp / "c.json");
  EXPECT_EQ(out["faces"], 2602);
  EXPECT_EQ(out["identities"], 197);
  EXPECT_NEAR(out["best_bcubed_threshold"].get<double>(), 0.40, 0.051);
  const auto best = [&] {
    for (const auto& s : out["sweep"]) {
      if (std::abs(s["threshold"].get<double>() - out["best_bcubed_threshold"].get<double>()) <
          1e-9)
        return s["scores"];
    }
    return nlohmann::json();
  }();
  EXPECT_GE(best["bcubed"]["f"].get<double>(), 0.96);
  EXPECT_GE(best["pairwise"]["f"].get<double>(), 0.97);
  EXPECT_GE(best["nmi"].get<double>(), 0.98);
  EXPECT_GE(out["scores"]["pairwise"]["recall"].get<double>(), 0.99);
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

TEST(Cluster, PlacesEachFaceInItsGroupWithTheNextGroupAndAVerdict) {
  // Group A: a0, a1 (the same direction at twice the scale) and a2 at cosine 0.8 to both; group
  // B: b0, b1 at cosine 0.8 (b1 at 0.36 to a2); c alone, orthogonal to all.
  const auto embeddings = torch::tensor({{1.0, 0.0, 0.0, 0.0},
                                         {2.0, 0.0, 0.0, 0.0},
                                         {0.8, 0.6, 0.0, 0.0},
                                         {0.0, 0.0, 1.0, 0.0},
                                         {0.0, 0.6, 0.8, 0.0},
                                         {0.0, 0.0, 0.0, 1.0}},
                                        torch::kFloat32);
  const auto groups = group_faces(embeddings, 0.5);
  ASSERT_EQ(groups.size(), 3u);
  const auto& a = groups[0].faces;
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].row, 0u);  // a0 and a1 tie at 0.9: row order
  EXPECT_EQ(a[1].row, 1u);
  EXPECT_EQ(a[2].row, 2u);  // least similar last
  EXPECT_NEAR(a[0].similarity, 0.9, 1e-6);
  EXPECT_NEAR(a[2].similarity, 0.8, 1e-6);
  EXPECT_NEAR(groups[0].mean_similarity, (0.9 + 0.9 + 0.8) / 3, 1e-6);
  EXPECT_EQ(a[2].next_group, 1);
  EXPECT_NEAR(a[2].next_similarity, 0.18, 1e-6);  // (0 + 0.36) / 2
  EXPECT_EQ(a[0].next_group, 1);                  // 0 to both others: the first
  EXPECT_NEAR(a[0].next_similarity, 0.0, 1e-9);
  for (const auto& f : a) EXPECT_EQ(f.verdict, Verdict::kSure);
  ASSERT_EQ(groups[1].faces.size(), 2u);
  for (const auto& f : groups[1].faces) {
    EXPECT_NEAR(f.similarity, 0.8, 1e-6);
    EXPECT_EQ(f.next_group, 0);
    EXPECT_NEAR(f.next_similarity, f.row == 4 ? 0.12 : 0.0, 1e-6);  // b1: 0.36 / 3
  }
  ASSERT_EQ(groups[2].faces.size(), 1u);
  const auto& c = groups[2].faces[0];
  EXPECT_EQ(c.row, 5u);
  EXPECT_EQ(c.verdict, Verdict::kAlone);
  EXPECT_EQ(c.similarity, 0.0);
  EXPECT_EQ(groups[2].mean_similarity, 0.0);
  EXPECT_EQ(c.next_group, 0);
  EXPECT_STREQ(verdict_name(c.verdict), "alone");

  // x1 at 47 degrees from x0 and 43 from x2: grouped with x2 (cosine 0.731), yet only 0.049
  // closer to it than to x0 (0.682): unsure. x2 is 0.731 - 0 from x0: sure.
  const double t = 47 * M_PI / 180;
  const auto xs = torch::tensor({{1.0, 0.0}, {std::cos(t), std::sin(t)}, {0.0, 1.0}});  // float32
  const auto placed = place_faces(xs, cluster_faces(xs, 0.5));
  ASSERT_EQ(placed.size(), 2u);
  ASSERT_EQ(placed[0].faces.size(), 2u);
  for (const auto& f : placed[0].faces) {
    ASSERT_TRUE(f.row == 1 || f.row == 2) << f.row;
    EXPECT_NEAR(f.similarity, std::sin(t), 1e-6);
    EXPECT_EQ(f.next_group, 1);
    EXPECT_NEAR(f.next_similarity, f.row == 1 ? std::cos(t) : 0.0, 1e-6);
    EXPECT_EQ(f.verdict, f.row == 1 ? Verdict::kUnsure : Verdict::kSure);
  }
  EXPECT_STREQ(verdict_name(Verdict::kUnsure), "unsure");
  EXPECT_STREQ(verdict_name(Verdict::kSure), "sure");
  EXPECT_EQ(placed[1].faces[0].row, 0u);
  EXPECT_EQ(placed[1].faces[0].verdict, Verdict::kAlone);
}

}  // namespace
}  // namespace facemag
