// The JSON form of the evaluation results, written once next to their types so that every front
// end (`facemag eval ... --json`, the server, the Python module) describes a result the same way.
// Field names are part of the interface: tests and users' scripts read them.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>

#include "facemag/eval/calibration.hpp"
#include "facemag/eval/erc.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/eval/pair_source.hpp"
#include "facemag/eval/verification.hpp"

namespace facemag::eval {

// {source, model, pairs, dropped_pairs, face_choice}: where a set of pairs came from.
nlohmann::json to_json(const LoadedPairs& loaded);
// {auc, eer, eer_threshold, best_accuracy, best_threshold, tar_at_fmr: [{fmr, tar, threshold,
// false_matches}]}.
nlohmann::json to_json(const RocSummary& roc);
// {folds, fold_accuracies, mean, std, per_fold: [...], thresholds, tpr, fpr}.
nlohmann::json to_json(const KFoldResult& kfold);
// {folds: [{fold (1-based), pairs, threshold, accuracy}], mean, std}.
nlohmann::json to_json(const LfwResult& lfw);
// {kfold or lfw, roc}: what `eval pairs --json` adds to the pairs' to_json.
nlohmann::json to_json(const PairsEvaluation& evaluation);
// {steps: [{reject_rate, rejected, kept, kept_positive, kept_negative, points: [{fmr, fnmr,
// threshold, negative_index, random_fnmr}]}], spearman_genuine, mean_fnmr_0_40: {FMR label: mean}}
// (NaN as null).
nlohmann::json to_json(const ErcSummary& erc);
// {thresholds: [{fmr, threshold, tar, false_matches} or {fmr, threshold: null}],
// quality_threshold, same_person_threshold, threshold_calibration, quality_calibration}.
nlohmann::json to_json(const Calibration& calibration);
// {type, quality_weighted, images, templates, pairs, genuine, impostor, tar_at_far: [{far_target,
// far, tar, threshold}], auc}.
nlohmann::json to_json(const IjbVerification& verification);
// {gallery, quality_weighted, probes, mated, non_mated, ranks, cmc, open_set: [{fpir, tpir,
// threshold}] (null where not measurable)}.
nlohmann::json to_json(const IjbIdentification& identification);

// {similarity, threshold, threshold_basis, decision, quality_a, quality_b}: a 1:1 decision.
nlohmann::json to_json(const PairDecision& decision);
// The same with {a, b, model, quality_threshold}: `verify --json`'s record of images a and b.
nlohmann::json to_json(const PairDecision& decision, const std::string& a, const std::string& b,
                       const ModelManifest& manifest);

// Writes `j` pretty-printed (2 spaces, then a newline) to `path`; nothing for an empty path.
// InvalidInput "PATH: cannot write" when it cannot be written.
void write_json(const std::filesystem::path& path, const nlohmann::json& j);

}  // namespace facemag::eval
