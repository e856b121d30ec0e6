// IJB template evaluation against MagFace's own eval_ijb.py (../shared/golden/ijb), identification
// and sklearn's ROC on hand-checked cases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <map>

#include "facemag/error.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/io/npy.hpp"
#include "test_support.hpp"

namespace facemag::eval {
namespace {

std::filesystem::path ijb_dir() { return test::golden_dir() / "ijb"; }

// Largest |a - b| relative to the largest |b| of each row (the golden's measure).
double worst_row_error(const torch::Tensor& a, const torch::Tensor& b) {
  const auto err = (a - b).abs().amax(1) / b.abs().amax(1);
  return err.max().item<double>();
}

// Template features, scores and AUC within the golden's tolerances; the six TARs exact (the same
// ROC point). The number of ROC points is not compared: it depends on which float32 scores tie
// (facemag computes in double and rounds once, upstream rounds at every step), and the golden
// shows the TARs do not (unchanged under +-1e-5 noise on every score).
TEST(IjbGolden, TemplatesScoresAndTarsMatchEvalIjb) {
  FACEMAG_REQUIRE_FILE(ijb_dir() / "ijb.json");
  const auto golden = test::read_json(ijb_dir() / "ijb.json");
  const auto faces = read_ijb_face_list(ijb_dir() / "meta" / "ijbc_face_tid_mid.txt");
  const auto features = io::read_npy(ijb_dir() / "features.npy");
  ASSERT_EQ(faces.size(), 1953u);
  for (const int qlt : {0, 1}) {
    const std::string mode = "magface_qlt_" + std::to_string(qlt);
    const auto templates = ijb_template_features(features, faces, qlt == 1);
    EXPECT_EQ(templates.ids.size(), golden["counts"]["templates"].get<std::size_t>());
    const auto expected_rows =
        io::read_npy(ijb_dir() / ("template_feats_qlt" + std::to_string(qlt) + ".npy"))
            .to(torch::kFloat64);
    const double row_error =
        worst_row_error(templates.features.slice(0, 0, expected_rows.size(0)), expected_rows);
    EXPECT_LE(row_error, golden["tolerance"]["template_feats_rel"].get<double>()) << mode;

    const auto scores =
        ijb_pair_scores(ijb_dir() / "meta" / "ijbc_template_pair_label.txt", templates);
    const auto expected_scores =
        io::read_npy(ijb_dir() / ("scores_qlt" + std::to_string(qlt) + ".npy")).to(torch::kFloat64);
    ASSERT_EQ(static_cast<std::int64_t>(scores.score.size()), expected_scores.size(0));
    const auto ours = torch::tensor(std::vector<double>(scores.score.begin(), scores.score.end()),
                                    torch::kFloat64);
    const double score_error = (ours - expected_scores).abs().max().item<double>();
    EXPECT_LE(score_error, golden["tolerance"]["scores"].get<double>()) << mode;

    const auto roc = sklearn_roc(scores.score, scores.genuine);
    const auto& result = golden["results"][mode];
    EXPECT_NEAR(roc.auc, result["auc"].get<double>(), golden["tolerance"]["auc"].get<double>());
    EXPECT_EQ(roc.genuine, 2698u);
    EXPECT_EQ(roc.impostor, 27302u);
    std::string printed;
    for (std::size_t k = 0; k < ijb_far_targets().size(); ++k) {
      const auto& g = result["tar_at_far"][k];
      const auto tar = tar_at_far(roc, ijb_far_targets()[k]);
      EXPECT_EQ(tar.tar, g["tar"].get<double>()) << mode << " FAR " << tar.far_target;
      EXPECT_EQ(tar.far, g["far"].get<double>()) << mode << " FAR " << tar.far_target;
      EXPECT_NEAR(tar.threshold, g["threshold"].get<double>(), 1e-6);
      char line[16];
      std::snprintf(line, sizeof line, "  %0.4f", tar.tar);
      printed += line;
    }
    EXPECT_EQ(printed, result["printed"].back().get<std::string>()) << mode;
    std::cout << "[ parity ] IJB " << mode << ": template rows " << row_error << ", scores "
              << score_error << ", AUC " << std::abs(roc.auc - result["auc"].get<double>())
              << ", TARs " << printed << "\n";
  }
}

// sklearn.metrics.roc_curve on a hand-checked case: scores 0.9 (genuine), 0.8 (impostor),
// 0.8 (genuine), 0.7 (impostor), 0.6 (genuine), 0.5 (genuine). Distinct thresholds 0.9 0.8 0.7 0.6
// 0.5 give (fps, tps) = (0,1) (1,2) (2,2) (2,3) (2,4); second differences keep 0.9, 0.8, 0.7
// and 0.5 and drop 0.6 (on the straight line from 0.7 to 0.5). Prepended (0, 0).
TEST(IjbRoc, DropsIntermediatePointsAsSklearn) {
  const std::vector<float> scores{0.9f, 0.8f, 0.8f, 0.7f, 0.6f, 0.5f};
  const std::vector<bool> genuine{true, false, true, false, true, true};
  const auto roc = sklearn_roc(scores, genuine);
  EXPECT_EQ(roc.fpr, (std::vector<double>{0, 0, 0.5, 1, 1}));
  EXPECT_EQ(roc.tpr, (std::vector<double>{0, 0.25, 0.5, 0.5, 1}));
  EXPECT_FLOAT_EQ(static_cast<float>(roc.threshold[0]), 1.9f);
  EXPECT_FLOAT_EQ(static_cast<float>(roc.threshold.back()), 0.5f);
  // Trapezoids: 0.5 * (0.25 + 0.5) / 2 + 0.5 * (0.5 + 0.5) / 2 = 0.4375.
  EXPECT_DOUBLE_EQ(roc.auc, 0.4375);
  // FAR 0: the points at fpr 0 are 0, 1; ties go to the last (tpr 0.25).
  EXPECT_EQ(tar_at_far(roc, 0.0).tar, 0.25);
  EXPECT_EQ(tar_at_far(roc, 0.6).tar, 0.5);
}

// Two media of one template: media means, normalised (or not, quality-weighted), then averaged.
TEST(IjbTemplates, MediaMeansThenTemplateMean) {
  IjbFaceList faces;
  faces.image = {"a", "b", "c", "d"};
  faces.template_id = {7, 7, 7, 3};
  faces.media_id = {1, 1, 2, 5};
  const auto features =
      torch::tensor({{2.0, 0.0}, {4.0, 0.0}, {0.0, 1.0}, {0.0, 5.0}}, torch::kFloat64);
  const auto plain = ijb_template_features(features, faces, false);
  EXPECT_EQ(plain.ids, (std::vector<std::int64_t>{3, 7}));
  // Template 7: media 1 mean (3, 0) -> (1, 0); media 2 (0, 1); mean (0.5, 0.5).
  EXPECT_TRUE(torch::allclose(plain.features[1], torch::tensor({0.5, 0.5}, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(plain.features[0], torch::tensor({0.0, 1.0}, torch::kFloat64)));
  const auto weighted = ijb_template_features(features, faces, true);
  EXPECT_TRUE(torch::allclose(weighted.features[1], torch::tensor({1.5, 0.5}, torch::kFloat64)));
  EXPECT_FALSE(plain.row(4).has_value());
  EXPECT_EQ(plain.row(7), 1u);
  EXPECT_THROW(ijb_template_features(features.slice(0, 0, 3), faces, false), InvalidInput);
}

// Bad input names the file and line.
TEST(IjbFiles, BadLinesAreClearErrors) {
  test::TempDir tmp;
  const auto expect_error = [&](const std::string& name, const std::string& text, auto read,
                                const std::string& message) {
    test::write_file(tmp / name, text);
    try {
      read(tmp / name);
      FAIL() << name;
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  expect_error("faces.txt", "1.jpg 4 9\n2.jpg four 9\n", read_ijb_face_list,
               "faces.txt:2: expected 'image_name template_id media_id'");
  EXPECT_THROW(read_ijb_face_list(tmp / "none.txt"), InvalidInput);
  IjbFaceList faces;
  faces.image = {"1.jpg", "2.jpg"};
  faces.template_id = {4, 5};
  faces.media_id = {1, 2};
  const auto templates = ijb_template_features(torch::ones({2, 3}), faces, false);
  const auto scores = [&](const std::filesystem::path& p) { return ijb_pair_scores(p, templates); };
  expect_error("pairs.txt", "4 5 0\n4 6 1\n", scores,
               "pairs.txt:2: template 6 has no image in the face list");
  expect_error("pairs2.txt", "4 5 2\n", scores, "pairs2.txt:1: label 2");
  expect_error("gallery.csv", "TEMPLATE_ID,SUBJECT_ID,FILENAME\n4,10,a.jpg\n4,11,b.jpg\n",
               read_ijb_template_subjects,
               "gallery.csv:3: template 4 was given subject 10 before, now 11");
}

// 1:N by hand: gallery subjects 1 (template 10, direction x) and 2 (template 20, direction y).
// Probes: 11 (subject 1, near x: rank 1), 21 (subject 2, nearer x than y: rank 2), 31 and 41
// (subject 3 and 4, not in the gallery: non-mated, top scores 0.6 and 0.8).
TEST(IjbIdentify, HandCheckedCmcAndOpenSet) {
  IjbFaceList faces;
  faces.image = {"g1", "g2", "p1", "p2", "p3", "p4"};
  faces.template_id = {10, 20, 11, 21, 31, 41};
  faces.media_id = {1, 2, 3, 4, 5, 6};
  const auto features = torch::tensor(
      {{1.0, 0.0}, {0.0, 1.0}, {0.95, 0.3122499}, {0.8, 0.6}, {0.6, -0.8}, {-0.6, 0.8}},
      torch::kFloat64);
  const auto templates = ijb_template_features(features, faces, false);
  const TemplateSubjects gallery{{10, 20}, {1, 2}};
  const TemplateSubjects probes{{11, 21, 31, 41}, {1, 2, 3, 4}};
  const auto r = identify_templates(templates, gallery, probes, {1, 2}, {0.5, 0.1});
  EXPECT_EQ(r.mated, 2u);
  EXPECT_EQ(r.non_mated, 2u);
  EXPECT_EQ(r.cmc, (std::vector<double>{0.5, 1.0}));
  // FPIR 0.5: k = 1, threshold = the 2nd highest non-mated top score 0.6; the rank-1 mated probe
  // scores 0.95 > 0.6: TPIR 0.5. FPIR 0.1 needs 10 non-mated probes: not measured.
  ASSERT_TRUE(r.open_set[0].threshold.has_value());
  EXPECT_NEAR(*r.open_set[0].threshold, 0.6, 1e-12);
  EXPECT_EQ(r.open_set[0].tpir, 0.5);
  EXPECT_FALSE(r.open_set[1].threshold.has_value());
  EXPECT_THROW(identify_templates(templates, {{99}, {1}}, probes), InvalidInput);
}

}  // namespace
}  // namespace facemag::eval

// ---- through the CLI ----

namespace facemag::eval {
namespace {

using test::run_cli;

// The MagFace feature list of the golden features, as inference/gen_feat.py writes it: the image
// name, then each float32 value as the shortest decimal of its double, a space after each.
void write_feature_list(const std::filesystem::path& path, const torch::Tensor& features,
                        const IjbFaceList& faces, std::int64_t drop_value_of_row = -1) {
  std::ofstream out(path);
  const auto f = features.contiguous();
  for (std::int64_t i = 0; i < f.size(0); ++i) {
    out << faces.image[static_cast<std::size_t>(i)] << " ";
    const std::int64_t values = f.size(1) - (i == drop_value_of_row ? 1 : 0);
    for (std::int64_t d = 0; d < values; ++d) {
      char buf[32];
      const auto r =
          std::to_chars(buf, buf + sizeof buf, static_cast<double>(f[i][d].item<float>()));
      out << std::string_view(buf, r.ptr - buf) << ' ';
    }
    out << "\n";
  }
}

TEST(CliGolden, EvalIjbPrintsUpstreamsLinesFromAFeatureListAndAnIndexedMatrix) {
  FACEMAG_REQUIRE_FILE(ijb_dir() / "ijb.json");
  const auto golden = test::read_json(ijb_dir() / "ijb.json");
  const auto faces = read_ijb_face_list(ijb_dir() / "meta" / "ijbc_face_tid_mid.txt");
  const auto features = io::read_npy(ijb_dir() / "features.npy");
  test::TempDir tmp;
  write_feature_list(tmp / "feat.list", features, faces);
  for (const int qlt : {0, 1}) {
    const auto r =
        run_cli("eval ijb --meta " + ijb_dir().string() + " --features " +
                    (tmp / "feat.list").string() + (qlt ? " --quality-weighted" : "") + " --json " +
                    (tmp / "ijb.json").string() + " --plot " + (tmp / "roc.png").string(),
                tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto& result = golden["results"]["magface_qlt_" + std::to_string(qlt)];
    std::string expected = "IJBc 1v1 verification:\n\n";
    for (const auto& line : result["printed"]) expected += line.get<std::string>() + "\n";
    EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
    const auto out = test::read_json(tmp / "ijb.json");
    EXPECT_NEAR(out["auc"].get<double>(), result["auc"].get<double>(), 2e-7);
    EXPECT_EQ(out["templates"], 1322);
    EXPECT_GT(std::filesystem::file_size(tmp / "roc.png"), 1000u);
  }
  // The same features as an .npy with facemag's row index, rows in reverse order.
  const auto n = features.size(0);
  io::write_npy(tmp / "rev.npy", features.flip(0).contiguous());
  {
    std::ofstream index(tmp / "rev.jsonl");
    for (std::int64_t i = 0; i < n; ++i)
      index << nlohmann::json{{"row", n - 1 - i}, {"path", "/data/ijbc/" + faces.image[i]}} << "\n";
  }
  const auto r = run_cli("eval ijb --meta " + (ijb_dir() / "meta").string() + " --features " +
                             (tmp / "rev.npy").string(),
                         tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(golden["results"]["magface_qlt_0"]["printed"].back().get<std::string>()),
            std::string::npos)
      << r.out;
}

TEST(CliGolden, EvalIjbBadInputsNameTheFileAndLine) {
  FACEMAG_REQUIRE_FILE(ijb_dir() / "ijb.json");
  const auto faces = read_ijb_face_list(ijb_dir() / "meta" / "ijbc_face_tid_mid.txt");
  const auto features = io::read_npy(ijb_dir() / "features.npy");
  test::TempDir tmp;
  const auto expect_error = [&](const std::string& args, const std::string& message) {
    const auto r = run_cli(args, tmp);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  write_feature_list(tmp / "short.list", features.slice(0, 0, 6), faces, 4);
  expect_error(
      "eval ijb --meta " + ijb_dir().string() + " --features " + (tmp / "short.list").string(),
      "short.list:5: 511 values, expected 512 (as on the first line)");
  expect_error("eval ijb --type b --meta " + ijb_dir().string() + " --features x.npy",
               "no ijbb_face_tid_mid.txt in " + (ijb_dir() / "meta").string());
  std::filesystem::create_directories(tmp / "ijb" / "meta");
  std::filesystem::copy(ijb_dir() / "meta" / "ijbc_face_tid_mid.txt", tmp / "ijb" / "meta");
  test::write_file(tmp / "ijb" / "meta" / "ijbc_template_pair_label.txt", "4 6 1\n4 999999 0\n");
  io::write_npy(tmp / "f.npy", features);
  expect_error(
      "eval ijb --meta " + (tmp / "ijb").string() + " --features " + (tmp / "f.npy").string(),
      "ijbc_template_pair_label.txt:2: template 999999 has no image in the face list");
}

// --images: the aligned faces named in the face list, embedded by the model given, give what
// their features give through --features (here: facemag's own .npy with its row index).
TEST(CliGolden, EvalIjbEmbedsAlignedImagesAsTheirFeaturesWouldScore) {
  const auto inputs = test::golden_dir() / "iresnet" / "inputs";
  FACEMAG_REQUIRE_FILE(inputs / "9.png");
  test::TempDir tmp;
  std::filesystem::create_directories(tmp / "meta");
  // Ten faces, five templates of two media; every template pair, labelled by face parity.
  std::string faces, pairs;
  for (int i = 0; i < 10; ++i)
    faces +=
        std::to_string(i) + ".png " + std::to_string(100 + i / 2) + " " + std::to_string(i) + "\n";
  for (int a = 0; a < 5; ++a)
    for (int b = a + 1; b < 5; ++b)
      pairs += std::to_string(100 + a) + " " + std::to_string(100 + b) + " " +
               std::to_string((a + b) % 2) + "\n";
  test::write_file(tmp / "meta" / "ijbc_face_tid_mid.txt", faces);
  test::write_file(tmp / "meta" / "ijbc_template_pair_label.txt", pairs);
  const std::string model = " --arch iresnet18 --weights " + (tmp / "r18.pth").string();
  ASSERT_EQ(run_cli("formula-weights --arch iresnet18 --out " + (tmp / "r18.pth").string(), tmp)
                .exit_code,
            0);
  ASSERT_EQ(run_cli("embed --aligned" + model + " --npy " + (tmp / "f.npy").string() + " " +
                        inputs.string(),
                    tmp)
                .exit_code,
            0);
  const auto from_images =
      run_cli("eval ijb --meta " + tmp.path().string() + " --images " + inputs.string() + model +
                  " --json " + (tmp / "a.json").string(),
              tmp);
  ASSERT_EQ(from_images.exit_code, 0) << from_images.err;
  const auto from_features =
      run_cli("eval ijb --meta " + tmp.path().string() + " --features " + (tmp / "f.npy").string() +
                  " --json " + (tmp / "b.json").string(),
              tmp);
  ASSERT_EQ(from_features.exit_code, 0) << from_features.err;
  const auto a = test::read_json(tmp / "a.json"), b = test::read_json(tmp / "b.json");
  EXPECT_EQ(a["pairs"], 10);
  EXPECT_NEAR(a["auc"].get<double>(), b["auc"].get<double>(), 1e-12);
  EXPECT_EQ(a["tar_at_far"], b["tar_at_far"]);
}

// The 1:N protocol on the golden's synthetic set laid out as insightface's lists: G1 holds the
// first template of identities 0-149, G2 of 150-299; every other template is a probe, so each
// gallery has 150 mated and 150 non-mated identities among the probes.
TEST(CliGolden, EvalIjbIdentifyOnTheSyntheticSetInInsightfacesLayout) {
  FACEMAG_REQUIRE_FILE(ijb_dir() / "identity.npy");
  const auto faces = read_ijb_face_list(ijb_dir() / "meta" / "ijbc_face_tid_mid.txt");
  const auto identity = io::read_npy(ijb_dir() / "identity.npy").to(torch::kInt64);
  std::map<std::int64_t, std::int64_t> subject_of;  // template -> identity (ascending templates)
  for (std::size_t i = 0; i < faces.size(); ++i)
    subject_of[faces.template_id[i]] = identity[static_cast<std::int64_t>(i)].item<std::int64_t>();
  std::map<std::int64_t, std::int64_t> first_template;
  for (const auto& [t, s] : subject_of) first_template.emplace(s, t);
  test::TempDir tmp;
  std::filesystem::create_directories(tmp / "meta");
  std::filesystem::copy(ijb_dir() / "meta" / "ijbc_face_tid_mid.txt", tmp / "meta");
  std::ofstream g1(tmp / "meta" / "ijbc_1N_gallery_G1.csv"),
      g2(tmp / "meta" / "ijbc_1N_gallery_G2.csv"), probe(tmp / "meta" / "ijbc_1N_probe_mixed.csv");
  for (auto* f : {&g1, &g2, &probe}) *f << "TEMPLATE_ID,SUBJECT_ID,FILENAME\n";
  TemplateSubjects gallery1, probes;
  std::size_t mated1 = 0;
  for (const auto& [t, s] : subject_of) {
    if (first_template.at(s) == t) {
      (s < 150 ? g1 : g2) << t << "," << s << ",img/" << t << ".jpg\n";
      if (s < 150) gallery1.template_id.push_back(t), gallery1.subject_id.push_back(s);
    } else {
      probe << t << "," << s << ",img/" << t << ".jpg\n" << t << "," << s << ",frame/2.jpg\n";
      probes.template_id.push_back(t);
      probes.subject_id.push_back(s);
      mated1 += s < 150;
    }
  }
  for (auto* f : {&g1, &g2, &probe}) f->close();
  const auto r =
      run_cli("eval ijb-identify --meta " + tmp.path().string() + " --features " +
                  (ijb_dir() / "features.npy").string() + " --json " + (tmp / "id.json").string(),
              tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::cout << r.out;
  const auto out = test::read_json(tmp / "id.json");
  ASSERT_EQ(out["results"].size(), 4u);  // G1, G2, each plain and quality-weighted
  const auto& g1_plain = out["results"][0];
  EXPECT_EQ(g1_plain["probes"].get<std::size_t>(), probes.template_id.size());
  EXPECT_EQ(g1_plain["mated"].get<std::size_t>(), mated1);
  EXPECT_EQ(g1_plain["non_mated"].get<std::size_t>(), probes.template_id.size() - mated1);
  // The CLI reports what the library computes, and the synthetic identities are separable.
  const auto templates =
      ijb_template_features(io::read_npy(ijb_dir() / "features.npy"), faces, false);
  const auto expected = identify_templates(templates, gallery1, probes);
  EXPECT_EQ(g1_plain["cmc"][0].get<double>(), expected.cmc[0]);
  EXPECT_EQ(g1_plain["open_set"][1]["tpir"].get<double>(), expected.open_set[1].tpir);
  EXPECT_GT(expected.cmc[0], 0.9);
  EXPECT_GE(expected.cmc[2], expected.cmc[1]);
  EXPECT_GE(expected.cmc[1], expected.cmc[0]);
}

}  // namespace
}  // namespace facemag::eval
