#include "facemag/eval/json.hpp"

#include <cmath>
#include <fstream>

#include "facemag/error.hpp"
#include "facemag/eval/pair_decision.hpp"

namespace facemag::eval {
namespace {

nlohmann::json number_or_null(double value) {
  return std::isnan(value) ? nlohmann::json() : nlohmann::json(value);
}

}  // namespace

nlohmann::json to_json(const LoadedPairs& loaded) {
  return {{"source", loaded.description},
          {"model", loaded.model},
          {"pairs", loaded.pairs.size()},
          {"dropped_pairs", loaded.dropped},
          {"face_choice", loaded.face_choice}};
}

nlohmann::json to_json(const RocSummary& roc) {
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

nlohmann::json to_json(const KFoldResult& kfold) {
  nlohmann::json folds = nlohmann::json::array();
  nlohmann::json accuracies = nlohmann::json::array();
  for (const auto& f : kfold.folds) {
    folds.push_back({{"fold", f.fold},
                     {"test_pairs", {f.test_begin, f.test_end - 1}},
                     {"best_threshold_index", f.best_threshold_index},
                     {"best_threshold", f.best_threshold},
                     {"train_accuracy", f.train_accuracy},
                     {"accuracy", f.accuracy}});
    accuracies.push_back(f.accuracy);
  }
  return {{"folds", static_cast<int>(kfold.folds.size())},
          {"fold_accuracies", accuracies},
          {"mean", kfold.mean_accuracy},
          {"std", kfold.std_accuracy},
          {"per_fold", folds},
          {"thresholds", kfold.thresholds},
          {"tpr", kfold.tpr},
          {"fpr", kfold.fpr}};
}

nlohmann::json to_json(const LfwResult& lfw) {
  nlohmann::json folds = nlohmann::json::array();
  for (const auto& f : lfw.folds)
    folds.push_back({{"fold", f.fold + 1},
                     {"pairs", f.pairs},
                     {"threshold", f.threshold},
                     {"accuracy", f.accuracy}});
  return {{"folds", folds}, {"mean", lfw.mean_accuracy}, {"std", lfw.std_accuracy}};
}

nlohmann::json to_json(const ErcSummary& erc) {
  nlohmann::json steps = nlohmann::json::array();
  for (std::size_t s = 0; s < erc.steps.size(); ++s) {
    const auto& step = erc.steps[s];
    nlohmann::json points = nlohmann::json::array();
    for (std::size_t k = 0; k < erc.fmrs.size(); ++k) {
      const auto* p = step.at(erc.fmrs[k]);
      if (!p) continue;
      points.push_back({{"fmr", erc.fmrs[k]},
                        {"fnmr", p->fnmr},
                        {"threshold", p->threshold},
                        {"negative_index", p->negative_index},
                        {"random_fnmr", number_or_null(erc.random_fnmr[k][s])}});
    }
    steps.push_back({{"reject_rate", step.reject_rate},
                     {"rejected", step.rejected},
                     {"kept", step.kept},
                     {"kept_positive", step.kept_positive},
                     {"kept_negative", step.kept_negative},
                     {"points", points}});
  }
  nlohmann::json areas = nlohmann::json::object();
  for (const auto& m : erc.mean_fnmr_0_40) areas[fmr_label(m.fmr)] = m.mean_fnmr;
  return {{"quality_source", erc.quality_source},
          {"steps", steps},
          {"spearman_genuine", number_or_null(erc.spearman_genuine)},
          {"mean_fnmr_0_40", areas}};
}

nlohmann::json to_json(const Calibration& calibration) {
  nlohmann::json thresholds = nlohmann::json::array();
  for (const auto& t : calibration.thresholds) {
    if (t.point)
      thresholds.push_back({{"fmr", t.fmr},
                            {"threshold", t.point->threshold},
                            {"tar", t.point->tar},
                            {"false_matches", t.point->false_matches}});
    else
      thresholds.push_back({{"fmr", t.fmr}, {"threshold", nullptr}});
  }
  const auto& m = calibration.manifest;
  return {{"thresholds", thresholds},
          {"quality_threshold", calibration.quality_threshold},
          {"same_person_threshold", m.same_person_threshold},
          {"threshold_calibration", m.threshold_calibration},
          {"quality_calibration", m.quality_calibration}};
}

nlohmann::json to_json(const IjbVerification& verification) {
  nlohmann::json tars = nlohmann::json::array();
  for (const auto& t : verification.tar_at_far)
    tars.push_back(
        {{"far_target", t.far_target}, {"far", t.far}, {"tar", t.tar}, {"threshold", t.threshold}});
  return {{"type", verification.type},
          {"quality_weighted", verification.quality_weighted},
          {"images", verification.images},
          {"templates", verification.templates},
          {"pairs", verification.pairs},
          {"genuine", verification.roc.genuine},
          {"impostor", verification.roc.impostor},
          {"tar_at_far", tars},
          {"auc", verification.roc.auc}};
}

nlohmann::json to_json(const IjbIdentification& identification) {
  const auto& r = identification.result;
  nlohmann::json open = nlohmann::json::array();
  for (const auto& p : r.open_set) {
    if (p.threshold)
      open.push_back({{"fpir", p.fpir}, {"tpir", p.tpir}, {"threshold", *p.threshold}});
    else
      open.push_back({{"fpir", p.fpir}, {"tpir", nullptr}, {"threshold", nullptr}});
  }
  return {{"gallery", identification.gallery.string()},
          {"quality_weighted", identification.quality_weighted},
          {"probes", r.probes},
          {"mated", r.mated},
          {"non_mated", r.non_mated},
          {"ranks", r.ranks},
          {"cmc", r.cmc},
          {"open_set", open}};
}

nlohmann::json to_json(const PairDecision& decision) {
  return {{"similarity", decision.similarity},
          {"threshold", decision.threshold},
          {"threshold_basis", decision.threshold_basis},
          {"decision", decision.decision()},
          {"quality_a", decision.quality_a},
          {"quality_b", decision.quality_b}};
}

nlohmann::json to_json(const PairDecision& decision, const std::string& a, const std::string& b,
                       const ModelManifest& manifest) {
  auto out = to_json(decision);
  out.update({{"a", a},
              {"b", b},
              {"model", manifest.name},
              {"quality_threshold", manifest.quality_threshold}});
  return out;
}

nlohmann::json to_json(const PairsEvaluation& evaluation) {
  nlohmann::json out{{"roc", to_json(evaluation.roc)}};
  if (evaluation.lfw) out["lfw"] = to_json(*evaluation.lfw);
  if (evaluation.kfold) out["kfold"] = to_json(*evaluation.kfold);
  return out;
}

void write_json(const std::filesystem::path& path, const nlohmann::json& j) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw InvalidInput(path.string() + ": cannot write");
}

}  // namespace facemag::eval
