// `facemag eval pairs|erc`, `facemag calibrate`, `facemag verify`: how good a model is on
// labelled pairs, which threshold to use, and the decision for one pair of faces.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/calibration.hpp"
#include "facemag/eval/erc.hpp"
#include "facemag/eval/image_pairs.hpp"
#include "facemag/eval/json.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/eval/pair_source.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"

namespace facemag::cli {
namespace {

// Where labelled pairs come from (eval::PairSource), the model that embeds images and where to
// save the pairs' features.
struct PairSource {
  eval::PairSource files;
  std::string save_features;
  ModelOptions model;
};

void add_pair_source_options(CLI::App& cmd, PairSource& src) {
  auto* group = cmd.add_option_group("pairs", "Where the labelled pairs come from (one of)");
  group->add_option("--features", src.files.features,
                    "Feature matrix (.npy) or MagFace feature list (text, 'name v1 ... vD')");
  group->add_option("--bin", src.files.bin,
                    "insightface verification set (lfw.bin, cfp_fp.bin ...)");
  group->add_option("--pair-list", src.files.pair_list,
                    "Image pairs, one per line: 'path_a path_b is_same' (1 or 0)");
  group->add_option("--lfw-pairs", src.files.lfw_pairs,
                    "LFW's pairs.txt: 'name n1 n2' (same) and 'name1 n1 name2 n2' (different), "
                    "with or without its header line");
  group->require_option(1);
  cmd.add_option("--root", src.files.root,
                 "With --lfw-pairs: the folder holding <name>/<name>_0001.jpg (default: the "
                 "pairs file's folder)");
  cmd.add_option("--labels", src.files.labels,
                 "With --features: is-same labels (.npy, or text whose lines end in 1 or 0)");
  cmd.add_option("--pair-index", src.files.pair_index,
                 "With --features: P x 2 .npy of row numbers (default rows 2p and 2p+1)");
  cmd.add_option("--save-features", src.save_features,
                 "Write the pairs' features (F.npy, rows 2p and 2p+1) and labels (F_issame.npy)");
  add_model_options(cmd, src.model, "iresnet100");
  add_face_choice_options(cmd, src.model);
}

// eval::load_pairs with the options' model, showing progress, unreadable images and pairs left
// out; then the face choice and, with --save-features, the features written.
eval::LoadedPairs load_pairs(const PairSource& src) {
  std::optional<ProgressBar> progress;
  eval::ImagePairsObserver observer;
  observer.started = [&](std::size_t images) { progress.emplace(images, "embed"); };
  observer.progress = [&](std::size_t n) { progress->advance(n); };
  observer.unreadable = report_skipped;
  observer.dropped = [](std::size_t pair, const std::string& error) {
    spdlog::warn("pair {} left out: {}", pair, error);
  };
  const eval::PairEncoder encoder{[&] { return std::make_shared<LoadedFaceEncoder>(src.model); },
                                  src.model.landmarks};
  auto out = eval::load_pairs(src.files, encoder, observer);
  progress.reset();
  if (!out.face_choice.empty()) std::printf("%s\n", out.face_choice.c_str());
  if (!src.save_features.empty()) {
    const auto labels = eval::write_feature_pairs(out.pairs, src.save_features);
    spdlog::info("features written to {} and {}", src.save_features, labels.string());
  }
  return out;
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

// LFW's protocol printed as published LFW tables print it ("fold accuracy", then "AVE"),
// optionally beside published per-fold accuracies.
void print_lfw_protocol(const eval::LfwResult& lfw, std::size_t fold_size,
                        const std::vector<double>& published) {
  std::printf(
      "LFW protocol (%zu folds of %zu pairs in file order; per fold: the other folds' mean face "
      "subtracted, cosine, threshold best on the other folds)\n",
      lfw.folds.size(), fold_size);
  std::printf("fold  accuracy  threshold  pairs%s\n", published.empty() ? "" : "  published");
  double published_sum = 0;
  std::size_t published_folds = 0;
  for (const auto& f : lfw.folds) {
    std::printf("%-4d  %8.2f  %9.4f  %5zu", f.fold + 1, 100 * f.accuracy, f.threshold, f.pairs);
    if (static_cast<std::size_t>(f.fold) < published.size()) {
      std::printf("  %9.2f", published[static_cast<std::size_t>(f.fold)]);
      published_sum += published[static_cast<std::size_t>(f.fold)];
      ++published_folds;
    }
    std::printf("\n");
  }
  std::printf("AVE   %8.2f  (std %.2f)", 100 * lfw.mean_accuracy, 100 * lfw.std_accuracy);
  if (!published.empty() && published_folds)
    std::printf("  published %.2f", published_sum / double(published_folds));
  std::printf("\n");
}

void print_roc(const eval::RocSummary& roc, const std::vector<double>& fmrs) {
  std::printf("all pairs, cosine similarity (same when above the threshold):\n");
  std::printf("    best accuracy %.5f at %.4f; AUC %.6f; EER %.5f at %.4f\n", roc.best_accuracy,
              roc.best_threshold, roc.auc, roc.eer, roc.eer_threshold);
  for (double fmr : fmrs) {
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
}

int run_eval_pairs(const EvalPairsOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto roc = eval::roc_summary(eval::pair_similarities(pairs), pairs.is_same, opt.fmrs);
  std::printf("%s: %s%s\n", loaded.description.c_str(), eval::pair_counts(pairs).c_str(),
              loaded.model.empty() ? "" : (", model " + loaded.model).c_str());
  auto result = eval::to_json(loaded);
  if (opt.protocol == "lfw") {
    const auto lfw = eval::lfw_protocol(loaded);
    print_lfw_protocol(lfw, loaded.fold_size, opt.published);
    result["lfw"] = eval::to_json(lfw);
  } else {
    const auto kfold = eval::kfold_verification(pairs, {.folds = opt.folds});
    std::printf(
        "%d-fold accuracy (MagFace eval_1v1: angular distance, training-fold mean subtracted)\n",
        opt.folds);
    std::printf("    Accuracy: %2.5f+-%2.5f\n", kfold.mean_accuracy, kfold.std_accuracy);
    std::printf("    folds:");
    for (const auto& f : kfold.folds) std::printf(" %.4f", f.accuracy);
    std::printf("\n");
    result["kfold"] = eval::to_json(kfold);
  }
  print_roc(roc, opt.fmrs);
  if (loaded.dropped) std::printf("(%zu pair(s) left out: no face found)\n", loaded.dropped);
  result["roc"] = eval::to_json(roc);
  eval::write_json(opt.json, result);
  return kExitOk;
}

Runner add_eval_pairs_command(CLI::App& evalc) {
  auto opt = std::make_shared<EvalPairsOptions>();
  auto* cmd = evalc.add_subcommand(
      "pairs", "10-fold accuracy as MagFace's eval_1v1.py, ROC (TAR@FMR, EER, AUC)");
  add_pair_source_options(*cmd, opt->source);
  cmd->add_option("--protocol", opt->protocol,
                  "magface: MagFace eval_1v1.py's 10 folds of consecutive pairs; lfw: LFW's own "
                  "folds (blocks of 600 pairs in file order, or as pairs.txt's header says) "
                  "scored as the published LFW tables (mean of the other folds subtracted, "
                  "cosine, threshold chosen on the other folds)")
      ->check(CLI::IsMember({"magface", "lfw"}))
      ->capture_default_str();
  cmd->add_option("--published", opt->published,
                  "With --protocol lfw: published per-fold accuracies (%) to print beside ours")
      ->delimiter(',');
  cmd->add_option("--folds", opt->folds, "Folds of --protocol magface")->capture_default_str();
  cmd->add_option("--fmr", opt->fmrs, "False match rates for TAR@FMR")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--json", opt->json, "Write every number (folds, ROC) here");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_pairs(*opt) : -1; };
}

// ---- eval erc ----

struct EvalErcOptions {
  PairSource source;
  std::vector<double> fmrs{1e-3};
  std::string plot;
  std::string json;
  int random_repeats = 20;
};

int run_eval_erc(const EvalErcOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto erc = eval::summarize_error_versus_reject(loaded.pairs, opt.fmrs, opt.random_repeats);
  std::printf("%s: %s; pairs ranked by the smaller magnitude of their two faces\n",
              loaded.description.c_str(), eval::pair_counts(loaded.pairs).c_str());
  std::printf("reject  kept ");
  for (double fmr : opt.fmrs) std::printf(" FNMR@FMR=%s (random)", eval::fmr_label(fmr).c_str());
  std::printf("\n");
  for (std::size_t s = 0; s < erc.steps.size(); ++s) {
    std::printf("%5.0f%%  %5zu", 100 * erc.steps[s].reject_rate, erc.steps[s].kept);
    for (std::size_t k = 0; k < opt.fmrs.size(); ++k) {
      if (const auto* p = erc.steps[s].at(opt.fmrs[k]))
        std::printf("  %17.4f (%.4f)", p->fnmr, erc.random_fnmr[k][s]);
      else
        std::printf("  %17s         ", "n/a");
    }
    std::printf("\n");
  }
  std::printf("(n/a: too few different pairs left to measure that FMR)\n");
  std::printf("Spearman (smaller magnitude, genuine similarity): %.3f\n", erc.spearman_genuine);
  for (const auto& m : erc.mean_fnmr_0_40)
    std::printf("mean FNMR@FMR=%s over 0-40%% rejected: %.4f\n", eval::fmr_label(m.fmr).c_str(),
                m.mean_fnmr);
  auto json = eval::to_json(erc);
  json["source"] = loaded.description;
  json["pairs"] = loaded.pairs.size();
  eval::write_json(opt.json, json);
  if (!opt.plot.empty()) {
    plot::write_png(opt.plot, eval::erc_chart(erc, loaded.description));
    spdlog::info("plot written to {}", opt.plot);
  }
  return kExitOk;
}

Runner add_eval_erc_command(CLI::App& evalc) {
  auto opt = std::make_shared<EvalErcOptions>();
  auto* cmd = evalc.add_subcommand(
      "erc", "Error versus reject: FNMR as the lowest-quality pairs are dropped");
  add_pair_source_options(*cmd, opt->source);
  cmd->add_option("--fmr", opt->fmrs, "False match rates (1e-1, 1e-2, ... decades)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--plot", opt->plot, "Draw the curves (PNG)");
  cmd->add_option("--json", opt->json, "Write every step here");
  cmd->add_option("--random-repeats", opt->random_repeats,
                  "Shuffles averaged for the random-rejection baseline")
      ->capture_default_str();
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_erc(*opt) : -1; };
}

// ---- calibrate ----

struct CalibrateOptions {
  PairSource source;
  eval::CalibrationOptions calibration;
  bool save = false;
  std::string manifest_out;
};

int run_calibrate(const CalibrateOptions& opt) {
  const auto loaded = load_pairs(opt.source);
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
  std::printf("%s: %s\n", loaded.description.c_str(), eval::pair_counts(loaded.pairs).c_str());
  const auto& c = opt.calibration;
  const auto result = eval::calibrate(loaded, std::move(manifest), c);
  std::printf("cosine similarity thresholds (same person when above):\n");
  for (const auto& t : result.thresholds) {
    if (!t.point) {
      std::printf("  FMR %s: not measurable here (needs >= %.0f different pairs)\n",
                  eval::fmr_label(t.fmr).c_str(), std::ceil(1 / t.fmr));
      continue;
    }
    std::printf("  FMR %s: %.4f  (TAR %.4f, %zu false match(es))\n", eval::fmr_label(t.fmr).c_str(),
                t.point->threshold, t.point->tar, t.point->false_matches);
  }
  std::printf("quality threshold rejecting %.0f%% of the faces: magnitude %.4f\n",
              100 * c.reject_rate, result.quality_threshold);
  if (!result.decision_measured)
    spdlog::warn(
        "FMR {} is not measurable on these pairs: the decision threshold is the "
        "best-accuracy one",
        eval::fmr_label(c.decision_fmr));
  std::printf("decision threshold: %.4f (%s)\n", result.manifest.same_person_threshold,
              result.manifest.threshold_calibration.c_str());
  if (opt.save || !opt.manifest_out.empty()) {
    std::filesystem::path path = opt.manifest_out;
    if (path.empty()) {
      if (weights.empty())
        throw InvalidInput(
            "--save needs --weights (the manifest goes beside them) or --manifest-out");
      path = manifest_path_for(weights);
    }
    save_manifest(path, result.manifest);
    std::printf("manifest written to %s\n", path.string().c_str());
  }
  return kExitOk;
}

Runner add_calibrate_command(CLI::App& app) {
  auto opt = std::make_shared<CalibrateOptions>();
  auto* cmd = app.add_subcommand("calibrate",
                                 "Thresholds for target false match rates and a quality threshold");
  add_pair_source_options(*cmd, opt->source);
  cmd->add_option("--fmr", opt->calibration.fmrs, "Target false match rates")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--decision-fmr", opt->calibration.decision_fmr,
                  "FMR whose threshold becomes the model's same-person threshold")
      ->capture_default_str();
  cmd->add_option("--reject-rate", opt->calibration.reject_rate,
                  "Share of faces the quality threshold rejects")
      ->capture_default_str();
  cmd->add_flag("--save", opt->save, "Store the result in WEIGHTS.manifest.json");
  cmd->add_option("--manifest-out", opt->manifest_out, "Store the result in this manifest");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_calibrate(*opt) : -1; };
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
  eval::PairRules rules;
  rules.fmr = opt.fmr;
  if (opt.threshold > -2) rules.threshold = opt.threshold;
  const auto d = eval::decide_image_pair(encoder, opt.a, opt.b, rules);
  if (opt.json) {
    auto json = eval::to_json(d);
    json.update({{"a", opt.a},
                 {"b", opt.b},
                 {"model", m.name},
                 {"quality_threshold", m.quality_threshold}});
    std::cout << json << "\n";
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

Runner add_verify_command(CLI::App& app) {
  auto opt = std::make_shared<VerifyOptions>();
  auto* cmd = app.add_subcommand("verify",
                                 "Are two faces the same person? Similarity, decision, qualities");
  cmd->add_option("a", opt->a, "First image (photo or aligned face)")->required();
  cmd->add_option("b", opt->b, "Second image")->required();
  add_model_options(*cmd, opt->model, "iresnet100");
  add_face_choice_options(*cmd, opt->model);
  cmd->add_option("--threshold", opt->threshold, "Cosine threshold (default: the manifest's)");
  cmd->add_option("--fmr", opt->fmr, "Use the manifest's threshold calibrated at this FMR");
  cmd->add_flag("--json", opt->json, "One JSON record instead of text");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_verify(*opt) : -1; };
}

}  // namespace

Runner add_eval_commands(CLI::App& app) {
  auto* evalc = app.add_subcommand(
      "eval", "Verification accuracy, error versus reject, IJB templates, clustering quality");
  evalc->require_subcommand(1);
  // In --help order: ijb, ijb-identify, cluster, identify, pairs, erc; then calibrate, verify.
  const std::vector<Runner> runners{add_ijb_commands(*evalc),
                                    add_eval_cluster_command(*evalc),
                                    add_eval_identify_command(*evalc),
                                    add_eval_pairs_command(*evalc),
                                    add_eval_erc_command(*evalc),
                                    add_calibrate_command(app),
                                    add_verify_command(app)};
  return [runners]() -> int {
    for (const auto& run : runners) {
      if (const int code = run(); code >= 0) return code;
    }
    return -1;
  };
}

}  // namespace facemag::cli
