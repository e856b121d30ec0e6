// `facemag eval pairs|erc`, `facemag calibrate`, `facemag verify`: how good a model is on
// labelled pairs, which threshold to use, and the decision for one pair of faces.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>

#include "cluster_options.hpp"
#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/eval/json.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/eval/text.hpp"

namespace facemag::cli {
namespace {

// Where labelled pairs come from (eval::PairSource), the model that embeds images and where to
// save the pairs' features.
struct PairSource {
  eval::PairSource files;
  std::string save_features;
  ModelOptions model;
};

CLI::Option_group* add_pair_source_options(CLI::App& cmd, PairSource& src) {
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
  return group;
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
  eval::PairsEvaluationOptions evaluation;
  std::vector<double> published;  // --published: per-fold accuracies (%) to print beside ours
  std::string json;
};

int run_eval_pairs(const EvalPairsOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  std::fputs(eval::to_text(loaded).c_str(), stdout);
  const auto evaluation = eval::evaluate_pairs(loaded, opt.evaluation);
  std::fputs(eval::to_text(evaluation, loaded, opt.published).c_str(), stdout);
  auto json = eval::to_json(loaded);
  json.update(eval::to_json(evaluation));
  eval::write_json(opt.json, json);
  return kExitOk;
}

Runner add_eval_pairs_command(CLI::App& evalc) {
  auto opt = std::make_shared<EvalPairsOptions>();
  auto* cmd = evalc.add_subcommand(
      "pairs", "10-fold accuracy as MagFace's eval_1v1.py, ROC (TAR@FMR, EER, AUC)");
  add_pair_source_options(*cmd, opt->source);
  cmd->add_option("--protocol", opt->evaluation.protocol,
                  "magface: MagFace eval_1v1.py's 10 folds of consecutive pairs; lfw: LFW's own "
                  "folds (blocks of 600 pairs in file order, or as pairs.txt's header says) "
                  "scored as the published LFW tables (mean of the other folds subtracted, "
                  "cosine, threshold chosen on the other folds)")
      ->check(CLI::IsMember({"magface", "lfw"}))
      ->capture_default_str();
  cmd->add_option("--published", opt->published,
                  "With --protocol lfw: published per-fold accuracies (%) to print beside ours")
      ->delimiter(',');
  cmd->add_option("--folds", opt->evaluation.kfold.folds, "Folds of --protocol magface")
      ->capture_default_str();
  cmd->add_option("--fmr", opt->evaluation.fmrs, "False match rates for TAR@FMR")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--json", opt->json, "Write every number (folds, ROC) here");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_pairs(*opt) : -1; };
}

// ---- eval erc ----

struct EvalErcOptions {
  PairSource source;
  // .npy of one quality per feature row, "model" (photo sources: the model's quality,
  // face_quality.hpp), or "": the magnitude.
  std::string quality;
  std::vector<double> fmrs{1e-3};
  std::string plot;
  std::string json;
  int random_repeats = 20;
};

int run_eval_erc(const EvalErcOptions& opt) {
  const bool features = !opt.source.files.features.empty();
  const bool model_quality = opt.quality == "model";
  if (model_quality && features)
    throw InvalidInput(
        "--quality model: the quality the model measures on photos (a --features "
        "source has no photos; give an .npy of one quality per row)");
  if (!opt.quality.empty() && !model_quality && !features)
    throw InvalidInput("--quality " + opt.quality +
                       ": one quality per row of --features (photo sources: --quality model)");
  const auto loaded = load_pairs(opt.source);
  const auto erc =
      opt.quality.empty()
          ? eval::summarize_error_versus_reject(loaded.pairs, opt.fmrs, opt.random_repeats)
      : model_quality
          ? eval::summarize_error_versus_reject(
                loaded.pairs, eval::pair_qualities(loaded.pairs, loaded.row_quality, "model"),
                loaded.quality_source, opt.fmrs, opt.random_repeats)
          : eval::summarize_error_versus_reject(
                loaded.pairs,
                eval::pair_qualities(loaded.pairs, eval::read_row_qualities(opt.quality),
                                     opt.quality),
                std::filesystem::path(opt.quality).filename().string(), opt.fmrs,
                opt.random_repeats);
  std::fputs(eval::to_text(erc, loaded).c_str(), stdout);
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
  cmd->add_option("--quality", opt->quality,
                  "Rank by another quality measure instead of the magnitude: an .npy of one "
                  "value per row of --features (higher: better), or `model` for photo sources: "
                  "the model's own quality (magnitude x sharpness for models that are not "
                  "MagFace-trained)");
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
  std::vector<std::string> people;  // --people: the clustering threshold instead
  eval::CalibrationOptions calibration;
  bool save = false;
  std::string manifest_out;
};

int run_calibrate(const CalibrateOptions& opt) {
  if (!opt.people.empty())
    return run_clustering_calibration(opt.people, opt.source.model, opt.save, opt.manifest_out);
  const auto loaded = load_pairs(opt.source);
  // Faces embedded here: the files of the model that embedded them. Features given: --weights or
  // --manifest say which model they come from (or the built-in manifest of --arch).
  const auto found = resolve_model_of_embeddings(opt.source.model, !loaded.model.empty());
  std::printf("%s: %s\n", loaded.description.c_str(), eval::pair_counts(loaded.pairs).c_str());
  const auto& c = opt.calibration;
  const auto result = eval::calibrate(loaded, found.manifest, c);
  std::fputs(eval::to_text(result, c.reject_rate).c_str(), stdout);
  if (!result.decision_measured)
    spdlog::warn(
        "FMR {} is not measurable on these pairs: the decision threshold is the "
        "best-accuracy one",
        eval::fmr_label(c.decision_fmr));
  std::printf("decision threshold: %.4f (%s)\n", result.manifest.same_person_threshold,
              result.manifest.threshold_calibration.c_str());
  if (opt.save || !opt.manifest_out.empty()) {
    const auto path = eval::calibrated_manifest_path(opt.manifest_out, found.weights);
    save_manifest(path, result.manifest);
    std::printf("manifest written to %s\n", path.string().c_str());
  }
  return kExitOk;
}

Runner add_calibrate_command(CLI::App& app) {
  auto opt = std::make_shared<CalibrateOptions>();
  auto* cmd = app.add_subcommand("calibrate",
                                 "Thresholds for target false match rates and a quality threshold");
  add_pair_source_options(*cmd, opt->source)
      ->add_option("--people", opt->people,
                   "Folders with one sub-folder per person: calibrates the clustering threshold "
                   "(best BCubed F) instead of pair thresholds");
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
  eval::PairRules rules;  // --fmr
  bool json = false;
};

int run_verify(const VerifyOptions& opt) {
  const LoadedFaceEncoder encoder(opt.model);
  const auto& m = encoder.manifest();
  auto rules = opt.rules;
  if (opt.threshold > -2) rules.threshold = opt.threshold;
  const auto d = eval::decide_image_pair(encoder, opt.a, opt.b, rules);
  if (opt.json) {
    std::cout << eval::to_json(d, opt.a, opt.b, m) << "\n";
    return kExitOk;
  }
  std::fputs(eval::to_text(d, opt.a, opt.b, m).c_str(), stdout);
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
  cmd->add_option("--fmr", opt->rules.fmr, "Use the manifest's threshold calibrated at this FMR");
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
    for (const auto& run : runners)
      if (const int code = run(); code >= 0) return code;
    return -1;
  };
}

}  // namespace facemag::cli
