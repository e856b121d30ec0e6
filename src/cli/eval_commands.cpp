// `facemag eval pairs|erc`, `facemag calibrate`, `facemag verify`: how good a model is on
// labelled pairs, which threshold to use, and the decision for one pair of faces.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/image_pairs.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/io/image.hpp"

namespace facemag::cli {
namespace {

// Where labelled pairs come from: features already computed, or images a model embeds.
struct PairSource {
  std::string features;    // .npy matrix or MagFace feature list (text: name v1 ... vD)
  std::string labels;      // .npy or text (last field of each line: 1 same, 0 different)
  std::string pair_index;  // .npy P x 2 rows of `features` (default: rows 2p, 2p+1)
  std::string bin;         // insightface verification .bin
  std::string pair_list;   // text: path_a path_b is_same
  std::string lfw_pairs;   // LFW's own pairs.txt (names and photo numbers)
  std::string root;        // folder of the photos of --lfw-pairs (<root>/<name>/<name>_0001.jpg)
  std::string save_features;
  ModelOptions model;
};

void add_pair_source_options(CLI::App& cmd, PairSource& src) {
  auto* group = cmd.add_option_group("pairs", "Where the labelled pairs come from (one of)");
  group->add_option("--features", src.features,
                    "Feature matrix (.npy) or MagFace feature list (text, 'name v1 ... vD')");
  group->add_option("--bin", src.bin, "insightface verification set (lfw.bin, cfp_fp.bin ...)");
  group->add_option("--pair-list", src.pair_list,
                    "Image pairs, one per line: 'path_a path_b is_same' (1 or 0)");
  group->add_option("--lfw-pairs", src.lfw_pairs,
                    "LFW's pairs.txt: 'name n1 n2' (same) and 'name1 n1 name2 n2' (different), "
                    "with or without its header line");
  group->require_option(1);
  cmd.add_option("--root", src.root,
                 "With --lfw-pairs: the folder holding <name>/<name>_0001.jpg (default: the "
                 "pairs file's folder)");
  cmd.add_option("--labels", src.labels,
                 "With --features: is-same labels (.npy, or text whose lines end in 1 or 0)");
  cmd.add_option("--pair-index", src.pair_index,
                 "With --features: P x 2 .npy of row numbers (default rows 2p and 2p+1)");
  cmd.add_option("--save-features", src.save_features,
                 "Write the pairs' features (F.npy, rows 2p and 2p+1) and labels (F_issame.npy)");
  add_model_options(cmd, src.model, "iresnet100");
  add_face_choice_options(cmd, src.model);
}

struct LoadedPairs {
  eval::FeaturePairs pairs;
  std::vector<double> face_quality;  // raw norm of every face used
  std::string description;
  std::string model;        // manifest name when a model embedded the faces
  std::size_t dropped = 0;  // pairs without a face in one image
  std::string face_choice;  // how faces were chosen in photos with several (photo sources)
  // Position of each kept pair in the source, and the pairs per fold of LFW's protocol there
  // (pairs.txt's header, else LFW's 600).
  std::vector<std::size_t> source_index;
  std::size_t fold_size = 600;
};

// Embeds labelled image pairs (eval::embed_image_pairs) with the options' model, showing progress,
// unreadable images and pairs left out.
LoadedPairs embed_image_pairs(const eval::ImagePairs& input, const ModelOptions& model) {
  const LoadedFaceEncoder encoder(model);
  eval::EmbeddedPairs embedded;
  {
    ProgressBar progress(input.names.size(), "embed");
    eval::ImagePairsObserver observer;
    observer.unreadable = report_skipped;
    observer.progress = [&](std::size_t n) { progress.advance(n); };
    observer.dropped = [](std::size_t pair, const std::string& error) {
      spdlog::warn("pair {} left out: {}", pair, error);
    };
    embedded = eval::embed_image_pairs(input, encoder, model.landmarks, observer);
  }
  LoadedPairs out;
  out.model = encoder.manifest().name;
  out.face_choice = std::move(embedded.face_choice);
  out.pairs = std::move(embedded.pairs);
  out.face_quality = std::move(embedded.face_quality);
  out.source_index = std::move(embedded.source_index);
  out.dropped = embedded.dropped;
  return out;
}

LoadedPairs load_pairs(const PairSource& src) {
  LoadedPairs out;
  if (!src.features.empty()) {
    if (src.labels.empty()) throw InvalidInput("--features needs --labels");
    auto files = eval::read_feature_pairs(src.features, src.labels, src.pair_index);
    out.pairs = std::move(files.pairs);
    out.face_quality = std::move(files.row_norms);
    for (std::size_t p = 0; p < out.pairs.size(); ++p) out.source_index.push_back(p);
    out.description = src.features;
  } else if (!src.bin.empty()) {
    out = embed_image_pairs(eval::image_pairs_of_bin(src.bin), src.model);
    out.description = src.bin;
  } else if (!src.lfw_pairs.empty()) {
    const auto root = src.root.empty() ? std::filesystem::path(src.lfw_pairs).parent_path()
                                       : std::filesystem::path(src.root);
    const auto list = eval::read_lfw_pairs(src.lfw_pairs, root);
    out = embed_image_pairs(eval::image_pairs_of(list), src.model);
    out.fold_size = list.fold_size;
    out.description = src.lfw_pairs;
  } else {
    out = embed_image_pairs(eval::image_pairs_of(eval::read_image_pair_list(src.pair_list)),
                            src.model);
    out.description = src.pair_list;
  }
  if (!out.face_choice.empty()) std::printf("%s\n", out.face_choice.c_str());
  if (!src.save_features.empty()) {
    const auto labels = eval::write_feature_pairs(out.pairs, src.save_features);
    spdlog::info("features written to {} and {}", src.save_features, labels.string());
  }
  return out;
}

std::string pair_counts(const eval::FeaturePairs& pairs) {
  const auto same = std::count(pairs.is_same.begin(), pairs.is_same.end(), true);
  return std::to_string(pairs.size()) + " pairs (" + std::to_string(same) + " same, " +
         std::to_string(pairs.size() - same) + " different)";
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw InvalidInput(path + ": cannot write");
}

// ---- eval pairs ----

struct EvalPairsOptions {
  PairSource source;
  std::string protocol = "magface";
  std::vector<double> published;  // --published: per-fold accuracies (%) to print beside ours
  int folds = 10;
  std::vector<double> fmrs{1e-1, 1e-2, 1e-3, 1e-4};
  std::string json;
};

nlohmann::json roc_json(const eval::RocSummary& roc) {
  nlohmann::json tar = nlohmann::json::array();
  for (const auto& op : roc.tar_at_fmr)
    tar.push_back({{"fmr", op.fmr},
                   {"tar", op.tar},
                   {"threshold", op.threshold},
                   {"false_matches", op.false_matches}});
  return {{"auc", roc.auc},
          {"eer", roc.eer},
          {"eer_threshold", roc.eer_threshold},
          {"best_accuracy", roc.best_accuracy},
          {"best_threshold", roc.best_threshold},
          {"tar_at_fmr", tar}};
}

// LFW's protocol over the source's pairs in blocks of fold_size; printed as published LFW tables
// print it ("fold accuracy", then "AVE"), optionally beside published per-fold accuracies.
nlohmann::json run_lfw_protocol(const LoadedPairs& loaded, const std::vector<double>& published) {
  std::vector<int> fold_of_pair;
  for (const std::size_t i : loaded.source_index)
    fold_of_pair.push_back(static_cast<int>(i / loaded.fold_size));
  const auto lfw = eval::lfw_protocol(loaded.pairs, fold_of_pair);
  std::printf(
      "LFW protocol (%zu folds of %zu pairs in file order; per fold: the other folds' mean face "
      "subtracted, cosine, threshold best on the other folds)\n",
      lfw.folds.size(), loaded.fold_size);
  std::printf("fold  accuracy  threshold  pairs%s\n", published.empty() ? "" : "  published");
  nlohmann::json folds = nlohmann::json::array();
  for (const auto& f : lfw.folds) {
    std::printf("%-4d  %8.2f  %9.4f  %5zu", f.fold + 1, 100 * f.accuracy, f.threshold, f.pairs);
    if (static_cast<std::size_t>(f.fold) < published.size())
      std::printf("  %9.2f", published[static_cast<std::size_t>(f.fold)]);
    std::printf("\n");
    folds.push_back({{"fold", f.fold + 1},
                     {"pairs", f.pairs},
                     {"threshold", f.threshold},
                     {"accuracy", f.accuracy}});
  }
  std::printf("AVE   %8.2f  (std %.2f)", 100 * lfw.mean_accuracy, 100 * lfw.std_accuracy);
  if (!published.empty()) {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& f : lfw.folds) {
      if (static_cast<std::size_t>(f.fold) < published.size()) {
        sum += published[static_cast<std::size_t>(f.fold)];
        ++n;
      }
    }
    if (n) std::printf("  published %.2f", sum / double(n));
  }
  std::printf("\n");
  return {{"folds", folds}, {"mean", lfw.mean_accuracy}, {"std", lfw.std_accuracy}};
}

int run_eval_pairs(const EvalPairsOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto similarity = eval::pair_similarities(pairs);
  const auto roc = eval::roc_summary(similarity, pairs.is_same, opt.fmrs);

  std::printf("%s: %s%s\n", loaded.description.c_str(), pair_counts(pairs).c_str(),
              loaded.model.empty() ? "" : (", model " + loaded.model).c_str());
  nlohmann::json result{{"source", loaded.description},
                        {"model", loaded.model},
                        {"pairs", pairs.size()},
                        {"dropped_pairs", loaded.dropped},
                        {"face_choice", loaded.face_choice}};
  if (opt.protocol == "lfw") {
    result["lfw"] = run_lfw_protocol(loaded, opt.published);
  } else {
    eval::KFoldOptions kopt;
    kopt.folds = opt.folds;
    const auto kfold = eval::kfold_verification(pairs, kopt);
    std::printf(
        "%d-fold accuracy (MagFace eval_1v1: angular distance, training-fold mean subtracted)\n",
        opt.folds);
    std::printf("    Accuracy: %2.5f+-%2.5f\n", kfold.mean_accuracy, kfold.std_accuracy);
    std::printf("    folds:");
    for (const auto& f : kfold.folds) std::printf(" %.4f", f.accuracy);
    std::printf("\n");
    nlohmann::json folds = nlohmann::json::array();
    for (const auto& f : kfold.folds)
      folds.push_back({{"fold", f.fold},
                       {"test_pairs", {f.test_begin, f.test_end - 1}},
                       {"best_threshold_index", f.best_threshold_index},
                       {"best_threshold", f.best_threshold},
                       {"train_accuracy", f.train_accuracy},
                       {"accuracy", f.accuracy}});
    nlohmann::json accuracies = nlohmann::json::array();
    for (const auto& f : kfold.folds) accuracies.push_back(f.accuracy);
    result["kfold"] = {{"folds", opt.folds},
                       {"fold_accuracies", accuracies},
                       {"mean", kfold.mean_accuracy},
                       {"std", kfold.std_accuracy},
                       {"per_fold", folds},
                       {"thresholds", kfold.thresholds},
                       {"tpr", kfold.tpr},
                       {"fpr", kfold.fpr}};
  }
  std::printf("all pairs, cosine similarity (same when above the threshold):\n");
  std::printf("    best accuracy %.5f at %.4f; AUC %.6f; EER %.5f at %.4f\n", roc.best_accuracy,
              roc.best_threshold, roc.auc, roc.eer, roc.eer_threshold);
  for (double fmr : opt.fmrs) {
    const auto it = std::find_if(roc.tar_at_fmr.begin(), roc.tar_at_fmr.end(),
                                 [&](const auto& op) { return op.fmr == fmr; });
    if (it == roc.tar_at_fmr.end()) {
      std::printf("    TAR@FMR=%s: not measurable (%zu different pairs, needs %.0f)\n",
                  eval::fmr_label(fmr).c_str(), roc.impostor, std::ceil(1 / fmr));
    } else {
      std::printf("    TAR@FMR=%s: %.5f (threshold %.4f)\n", eval::fmr_label(fmr).c_str(), it->tar,
                  it->threshold);
    }
  }
  if (loaded.dropped) std::printf("(%zu pair(s) left out: no face found)\n", loaded.dropped);
  result["roc"] = roc_json(roc);
  write_json(opt.json, result);
  return kExitOk;
}

// ---- eval erc ----

struct EvalErcOptions {
  PairSource source;
  std::vector<double> fmrs{1e-3};
  std::string plot;
  std::string json;
  int random_repeats = 20;
};

// The FNMR curves of `steps` beside the random-rejection baseline, one pair of lines per FMR.
void plot_erc(const EvalErcOptions& opt, const std::string& description,
              const std::vector<eval::ErcStep>& steps,
              const std::vector<std::vector<double>>& random) {
  std::vector<plot::Series> series;
  for (std::size_t k = 0; k < opt.fmrs.size(); ++k) {
    plot::Series quality{
        "magnitude, FMR " + eval::fmr_label(opt.fmrs[k]), {}, {}, plot::category_color(k), false};
    plot::Series baseline{
        "random, FMR " + eval::fmr_label(opt.fmrs[k]), {}, {}, plot::category_color(k), true};
    for (std::size_t s = 0; s < steps.size(); ++s) {
      const auto* p = steps[s].at(opt.fmrs[k]);
      quality.x.push_back(100 * steps[s].reject_rate);
      quality.y.push_back(p ? p->fnmr : std::nan(""));
      baseline.x.push_back(100 * steps[s].reject_rate);
      baseline.y.push_back(random[k][s]);
    }
    series.push_back(quality);
    series.push_back(baseline);
  }
  plot::write_png(opt.plot, plot::line_chart(
                                series, {"Error versus reject: " +
                                             std::filesystem::path(description).filename().string(),
                                         "pairs rejected, lowest quality first [%]", "FNMR"}));
  spdlog::info("plot written to {}", opt.plot);
}

int run_eval_erc(const EvalErcOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto rates = eval::default_reject_rates();
  const auto steps = eval::error_versus_reject(pairs, eval::pair_qualities(pairs), rates);
  std::vector<std::vector<double>> random;
  for (double fmr : opt.fmrs)
    random.push_back(eval::random_reject_fnmr(pairs, rates, fmr, opt.random_repeats));

  std::printf("%s: %s; pairs ranked by the smaller magnitude of their two faces\n",
              loaded.description.c_str(), pair_counts(pairs).c_str());
  std::printf("reject  kept ");
  for (double fmr : opt.fmrs) std::printf(" FNMR@FMR=%s (random)", eval::fmr_label(fmr).c_str());
  std::printf("\n");
  nlohmann::json jsteps = nlohmann::json::array();
  for (std::size_t s = 0; s < steps.size(); ++s) {
    std::printf("%5.0f%%  %5zu", 100 * steps[s].reject_rate, steps[s].kept);
    nlohmann::json points = nlohmann::json::array();
    for (std::size_t k = 0; k < opt.fmrs.size(); ++k) {
      const auto* p = steps[s].at(opt.fmrs[k]);
      if (p) {
        std::printf("  %17.4f (%.4f)", p->fnmr, random[k][s]);
        points.push_back(
            {{"fmr", opt.fmrs[k]},
             {"fnmr", p->fnmr},
             {"threshold", p->threshold},
             {"negative_index", p->negative_index},
             {"random_fnmr",
              std::isnan(random[k][s]) ? nlohmann::json() : nlohmann::json(random[k][s])}});
      } else {
        std::printf("  %17s         ", "n/a");
      }
    }
    std::printf("\n");
    jsteps.push_back({{"reject_rate", steps[s].reject_rate},
                      {"rejected", steps[s].rejected},
                      {"kept", steps[s].kept},
                      {"kept_positive", steps[s].kept_positive},
                      {"kept_negative", steps[s].kept_negative},
                      {"points", points}});
  }
  std::printf("(n/a: too few different pairs left to measure that FMR)\n");
  // How well the quality predicts the genuine score, and the curve's mean over 0-40 % rejected
  // (a smaller area: a better quality measure).
  const auto similarity = eval::pair_similarities(pairs);
  const auto quality = eval::pair_qualities(pairs);
  std::vector<double> genuine_quality, genuine_similarity;
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    if (!pairs.is_same[p]) continue;
    genuine_quality.push_back(quality[p]);
    genuine_similarity.push_back(similarity[p]);
  }
  const double rho = eval::spearman(genuine_quality, genuine_similarity);
  std::printf("Spearman (smaller magnitude, genuine similarity): %.3f\n", rho);
  nlohmann::json areas = nlohmann::json::object();
  for (double fmr : opt.fmrs) {
    double sum = 0;
    int count = 0;
    for (const auto& step : steps) {
      const auto* p = step.at(fmr);
      if (step.reject_rate > 0.4 + 1e-9 || !p) continue;
      sum += p->fnmr;
      ++count;
    }
    if (count == 0) continue;
    areas[eval::fmr_label(fmr)] = sum / count;
    std::printf("mean FNMR@FMR=%s over 0-40%% rejected: %.4f\n", eval::fmr_label(fmr).c_str(),
                sum / count);
  }
  write_json(opt.json,
             {{"source", loaded.description},
              {"pairs", pairs.size()},
              {"steps", jsteps},
              {"spearman_genuine", std::isnan(rho) ? nlohmann::json() : nlohmann::json(rho)},
              {"mean_fnmr_0_40", areas}});

  if (!opt.plot.empty()) plot_erc(opt, loaded.description, steps, random);
  return kExitOk;
}

// ---- calibrate ----

struct CalibrateOptions {
  PairSource source;
  std::vector<double> fmrs{1e-2, 1e-3, 1e-4, 1e-5};
  double decision_fmr = 1e-3;
  double reject_rate = 0.05;
  bool save = false;
  std::string manifest_out;
};

int run_calibrate(const CalibrateOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto similarity = eval::pair_similarities(pairs);
  // Faces embedded here: the files of the model that embedded them. Features given: --weights or
  // --manifest say which model they come from (or the built-in manifest of --arch).
  std::filesystem::path weights(opt.source.model.weights);
  ModelManifest manifest;
  if (!loaded.model.empty()) {
    const auto found = resolve_model_files(opt.source.model);
    weights = found.weights;
    manifest = found.manifest;
  } else {
    manifest = resolve_manifest(opt.source.model, weights);
  }
  manifest.fmr_thresholds.clear();

  std::printf("%s: %s\n", loaded.description.c_str(), pair_counts(pairs).c_str());
  std::printf("cosine similarity thresholds (same person when above):\n");
  std::optional<double> decision;
  for (double fmr : opt.fmrs) {
    const auto op = eval::operating_point(similarity, pairs.is_same, fmr);
    if (!op) {
      std::printf("  FMR %s: not measurable here (needs >= %.0f different pairs)\n",
                  eval::fmr_label(fmr).c_str(), std::ceil(1 / fmr));
      continue;
    }
    std::printf("  FMR %s: %.4f  (TAR %.4f, %zu false match(es))\n", eval::fmr_label(fmr).c_str(),
                op->threshold, op->tar, op->false_matches);
    manifest.fmr_thresholds.push_back({fmr, op->threshold});
    if (fmr == opt.decision_fmr) decision = op->threshold;
  }
  const double q = eval::quality_threshold(loaded.face_quality, opt.reject_rate);
  std::printf("quality threshold rejecting %.0f%% of the faces: magnitude %.4f\n",
              100 * opt.reject_rate, q);
  const std::string on = std::filesystem::path(loaded.description).filename().string() + " (" +
                         pair_counts(pairs) + ")";
  manifest.quality_threshold = q;
  manifest.quality_calibration =
      "rejects " + std::to_string(100 * opt.reject_rate).substr(0, 4) + "% of the faces of " + on;
  if (decision) {
    manifest.same_person_threshold = *decision;
    manifest.threshold_calibration = "FMR " + eval::fmr_label(opt.decision_fmr) + " on " + on;
  } else {
    const auto roc = eval::roc_summary(similarity, pairs.is_same, {});
    manifest.same_person_threshold = roc.best_threshold;
    manifest.threshold_calibration = "best accuracy on " + on + " (FMR " +
                                     eval::fmr_label(opt.decision_fmr) + " not measurable)";
    spdlog::warn(
        "FMR {} is not measurable on these pairs: the decision threshold is the "
        "best-accuracy one",
        eval::fmr_label(opt.decision_fmr));
  }
  std::printf("decision threshold: %.4f (%s)\n", manifest.same_person_threshold,
              manifest.threshold_calibration.c_str());
  if (opt.save || !opt.manifest_out.empty()) {
    std::filesystem::path path = opt.manifest_out;
    if (path.empty()) {
      if (weights.empty())
        throw InvalidInput(
            "--save needs --weights (the manifest goes beside them) or --manifest-out");
      path = manifest_path_for(weights);
    }
    save_manifest(path, manifest);
    std::printf("manifest written to %s\n", path.string().c_str());
  }
  return kExitOk;
}

// ---- verify ----

struct VerifyOptions {
  std::string a, b;
  ModelOptions model;
  double threshold = -2;  // default: the manifest's
  double fmr = 0;         // pick the manifest's calibrated threshold at this FMR
  bool json = false;
};

int run_verify(const VerifyOptions& opt) {
  const LoadedFaceEncoder encoder(opt.model);
  const auto& m = encoder.manifest();
  const auto faces =
      encoder.encode({io::read_image_bgr(opt.a), io::read_image_bgr(opt.b)}, {opt.a, opt.b});
  for (const auto& f : faces) {
    if (!f.embedding) throw InvalidInput(f.error);
  }
  eval::PairRules rules;
  rules.fmr = opt.fmr;
  if (opt.threshold > -2) rules.threshold = opt.threshold;
  const auto d = eval::decide_pair(*faces[0].embedding, *faces[1].embedding, m, rules);
  if (opt.json) {
    std::cout << nlohmann::json{{"a", opt.a},
                                {"b", opt.b},
                                {"model", m.name},
                                {"similarity", d.similarity},
                                {"threshold", d.threshold},
                                {"threshold_basis", d.threshold_basis},
                                {"decision", d.decision()},
                                {"quality_a", d.quality_a},
                                {"quality_b", d.quality_b},
                                {"quality_threshold", m.quality_threshold}}
              << "\n";
    return kExitOk;
  }
  std::printf("similarity %.4f -> %s person (threshold %.4f: %s)\n", d.similarity,
              d.same ? "same" : "different", d.threshold, d.threshold_basis.c_str());
  std::printf("quality    %.2f  %s\n", d.quality_a, opt.a.c_str());
  std::printf("quality    %.2f  %s\n", d.quality_b, opt.b.c_str());
  if (!m.magnitude_is_quality)
    std::printf("(%s is not MagFace-trained: its magnitude is not a calibrated quality)\n",
                m.name.c_str());
  if (d.undecided)
    std::printf("undecided: a face is below the quality threshold %.2f (%s)\n", m.quality_threshold,
                m.quality_calibration.c_str());
  return kExitOk;
}

}  // namespace

// Declarations only: every subcommand of the group and its flags, in --help order (81 lines kept
// together so that the options read as the --help they produce).
Runner add_eval_commands(CLI::App& app) {
  auto* evalc = app.add_subcommand(
      "eval", "Verification accuracy, error versus reject, IJB templates, clustering quality");
  evalc->require_subcommand(1);

  const Runner ijb = add_ijb_commands(*evalc);
  const Runner cluster = add_eval_cluster_command(*evalc);
  const Runner identify = add_eval_identify_command(*evalc);
  auto pairs_opt = std::make_shared<EvalPairsOptions>();
  auto* pairs = evalc->add_subcommand(
      "pairs", "10-fold accuracy as MagFace's eval_1v1.py, ROC (TAR@FMR, EER, AUC)");
  add_pair_source_options(*pairs, pairs_opt->source);
  pairs
      ->add_option("--protocol", pairs_opt->protocol,
                   "magface: MagFace eval_1v1.py's 10 folds of consecutive pairs; lfw: LFW's own "
                   "folds (blocks of 600 pairs in file order, or as pairs.txt's header says) "
                   "scored as the published LFW tables (mean of the other folds subtracted, "
                   "cosine, threshold chosen on the other folds)")
      ->check(CLI::IsMember({"magface", "lfw"}))
      ->capture_default_str();
  pairs
      ->add_option("--published", pairs_opt->published,
                   "With --protocol lfw: published per-fold accuracies (%) to print beside ours")
      ->delimiter(',');
  pairs->add_option("--folds", pairs_opt->folds, "Folds of --protocol magface")
      ->capture_default_str();
  pairs->add_option("--fmr", pairs_opt->fmrs, "False match rates for TAR@FMR")
      ->delimiter(',')
      ->capture_default_str();
  pairs->add_option("--json", pairs_opt->json, "Write every number (folds, ROC) here");

  auto erc_opt = std::make_shared<EvalErcOptions>();
  auto* erc = evalc->add_subcommand(
      "erc", "Error versus reject: FNMR as the lowest-quality pairs are dropped");
  add_pair_source_options(*erc, erc_opt->source);
  erc->add_option("--fmr", erc_opt->fmrs, "False match rates (1e-1, 1e-2, ... decades)")
      ->delimiter(',')
      ->capture_default_str();
  erc->add_option("--plot", erc_opt->plot, "Draw the curves (PNG)");
  erc->add_option("--json", erc_opt->json, "Write every step here");
  erc->add_option("--random-repeats", erc_opt->random_repeats,
                  "Shuffles averaged for the random-rejection baseline")
      ->capture_default_str();

  auto cal_opt = std::make_shared<CalibrateOptions>();
  auto* cal = app.add_subcommand("calibrate",
                                 "Thresholds for target false match rates and a quality threshold");
  add_pair_source_options(*cal, cal_opt->source);
  cal->add_option("--fmr", cal_opt->fmrs, "Target false match rates")
      ->delimiter(',')
      ->capture_default_str();
  cal->add_option("--decision-fmr", cal_opt->decision_fmr,
                  "FMR whose threshold becomes the model's same-person threshold")
      ->capture_default_str();
  cal->add_option("--reject-rate", cal_opt->reject_rate,
                  "Share of faces the quality threshold rejects")
      ->capture_default_str();
  cal->add_flag("--save", cal_opt->save, "Store the result in WEIGHTS.manifest.json");
  cal->add_option("--manifest-out", cal_opt->manifest_out, "Store the result in this manifest");

  auto ver_opt = std::make_shared<VerifyOptions>();
  auto* ver = app.add_subcommand("verify",
                                 "Are two faces the same person? Similarity, decision, qualities");
  ver->add_option("a", ver_opt->a, "First image (photo or aligned face)")->required();
  ver->add_option("b", ver_opt->b, "Second image")->required();
  add_model_options(*ver, ver_opt->model, "iresnet100");
  add_face_choice_options(*ver, ver_opt->model);
  ver->add_option("--threshold", ver_opt->threshold, "Cosine threshold (default: the manifest's)");
  ver->add_option("--fmr", ver_opt->fmr, "Use the manifest's threshold calibrated at this FMR");
  ver->add_flag("--json", ver_opt->json, "One JSON record instead of text");

  return [=]() -> int {
    if (pairs->parsed()) return run_eval_pairs(*pairs_opt);
    if (erc->parsed()) return run_eval_erc(*erc_opt);
    if (cal->parsed()) return run_calibrate(*cal_opt);
    if (ver->parsed()) return run_verify(*ver_opt);
    if (const int code = ijb(); code >= 0) return code;
    if (const int code = identify(); code >= 0) return code;
    return cluster();
  };
}

}  // namespace facemag::cli
