#include "facemag/eval/text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "facemag/io/format.hpp"

namespace facemag::eval {

using io::append_printf;

std::string to_text(const LoadedPairs& loaded) {
  std::string out;
  append_printf(out, "%s: %s%s\n", loaded.description.c_str(), pair_counts(loaded.pairs).c_str(),
                loaded.model.empty() ? "" : (", model " + loaded.model).c_str());
  return out;
}

std::string to_text(const LfwResult& lfw, std::size_t fold_size,
                    const std::vector<double>& published) {
  std::string out;
  append_printf(
      out,
      "LFW protocol (%zu folds of %zu pairs in file order; per fold: the other folds' mean face "
      "subtracted, cosine, threshold best on the other folds)\n",
      lfw.folds.size(), fold_size);
  append_printf(out, "fold  accuracy  threshold  pairs%s\n",
                published.empty() ? "" : "  published");
  double published_sum = 0;
  std::size_t published_folds = 0;
  for (const auto& f : lfw.folds) {
    append_printf(out, "%-4d  %8.2f  %9.4f  %5zu", f.fold + 1, 100 * f.accuracy, f.threshold,
                  f.pairs);
    if (static_cast<std::size_t>(f.fold) < published.size()) {
      append_printf(out, "  %9.2f", published[static_cast<std::size_t>(f.fold)]);
      published_sum += published[static_cast<std::size_t>(f.fold)];
      ++published_folds;
    }
    out += "\n";
  }
  append_printf(out, "AVE   %8.2f  (std %.2f)", 100 * lfw.mean_accuracy, 100 * lfw.std_accuracy);
  if (!published.empty() && published_folds)
    append_printf(out, "  published %.2f", published_sum / double(published_folds));
  out += "\n";
  return out;
}

std::string to_text(const KFoldResult& kfold) {
  std::string out;
  append_printf(
      out,
      "%zu-fold accuracy (MagFace eval_1v1: angular distance, training-fold mean subtracted)\n",
      kfold.folds.size());
  append_printf(out, "    Accuracy: %2.5f+-%2.5f\n", kfold.mean_accuracy, kfold.std_accuracy);
  out += "    folds:";
  for (const auto& f : kfold.folds) append_printf(out, " %.4f", f.accuracy);
  out += "\n";
  return out;
}

std::string to_text(const RocSummary& roc, const std::vector<double>& fmrs) {
  std::string out = "all pairs, cosine similarity (same when above the threshold):\n";
  append_printf(out, "    best accuracy %.5f at %.4f; AUC %.6f; EER %.5f at %.4f\n",
                roc.best_accuracy, roc.best_threshold, roc.auc, roc.eer, roc.eer_threshold);
  for (double fmr : fmrs) {
    const auto it = std::find_if(roc.tar_at_fmr.begin(), roc.tar_at_fmr.end(),
                                 [&](const auto& op) { return op.fmr == fmr; });
    if (it == roc.tar_at_fmr.end()) {
      append_printf(out, "    TAR@FMR=%s: not measurable (%zu different pairs, needs %.0f)\n",
                    fmr_label(fmr).c_str(), roc.impostor, std::ceil(1 / fmr));
    } else {
      append_printf(out, "    TAR@FMR=%s: %.5f (threshold %.4f)\n", fmr_label(fmr).c_str(), it->tar,
                    it->threshold);
    }
  }
  return out;
}

std::string to_text(const PairsEvaluation& evaluation, const LoadedPairs& loaded,
                    const std::vector<double>& published) {
  std::string out = evaluation.lfw ? to_text(*evaluation.lfw, evaluation.fold_size, published)
                                   : to_text(*evaluation.kfold);
  out += to_text(evaluation.roc, evaluation.fmrs);
  if (loaded.dropped) append_printf(out, "(%zu pair(s) left out: no face found)\n", loaded.dropped);
  return out;
}

std::string to_text(const ErcSummary& erc, const LoadedPairs& loaded) {
  std::string out;
  append_printf(out, "%s: %s; pairs ranked by the smaller %s of their two faces\n",
                loaded.description.c_str(), pair_counts(loaded.pairs).c_str(),
                erc.quality_source == "magnitude"
                    ? "magnitude"
                    : ("quality (" + erc.quality_source + ")").c_str());
  out += "reject  kept ";
  for (double fmr : erc.fmrs) append_printf(out, " FNMR@FMR=%s (random)", fmr_label(fmr).c_str());
  out += "\n";
  for (std::size_t s = 0; s < erc.steps.size(); ++s) {
    append_printf(out, "%5.0f%%  %5zu", 100 * erc.steps[s].reject_rate, erc.steps[s].kept);
    for (std::size_t k = 0; k < erc.fmrs.size(); ++k) {
      if (const auto* p = erc.steps[s].at(erc.fmrs[k]))
        append_printf(out, "  %17.4f (%.4f)", p->fnmr, erc.random_fnmr[k][s]);
      else
        append_printf(out, "  %17s         ", "n/a");
    }
    out += "\n";
  }
  out += "(n/a: too few different pairs left to measure that FMR)\n";
  append_printf(out, "Spearman (smaller %s, genuine similarity): %.3f\n",
                erc.quality_source == "magnitude" ? "magnitude" : "quality", erc.spearman_genuine);
  for (const auto& m : erc.mean_fnmr_0_40)
    append_printf(out, "mean FNMR@FMR=%s over 0-40%% rejected: %.4f\n", fmr_label(m.fmr).c_str(),
                  m.mean_fnmr);
  return out;
}

std::string to_text(const Calibration& calibration, double reject_rate) {
  std::string out = "cosine similarity thresholds (same person when above):\n";
  for (const auto& t : calibration.thresholds) {
    if (!t.point) {
      append_printf(out, "  FMR %s: not measurable here (needs >= %.0f different pairs)\n",
                    fmr_label(t.fmr).c_str(), std::ceil(1 / t.fmr));
      continue;
    }
    append_printf(out, "  FMR %s: %.4f  (TAR %.4f, %zu false match(es))\n",
                  fmr_label(t.fmr).c_str(), t.point->threshold, t.point->tar,
                  t.point->false_matches);
  }
  append_printf(out, "quality threshold rejecting %.0f%% of the faces: magnitude %.4f\n",
                100 * reject_rate, calibration.quality_threshold);
  return out;
}

std::string to_text(const PairDecision& d, const std::string& a, const std::string& b,
                    const ModelManifest& m) {
  std::string out;
  append_printf(out, "similarity %.4f -> %s person (threshold %.4f: %s)\n", d.similarity,
                d.same ? "same" : "different", d.threshold, d.threshold_basis.c_str());
  append_printf(out, "quality    %.2f  %s\n", d.quality_a, a.c_str());
  append_printf(out, "quality    %.2f  %s\n", d.quality_b, b.c_str());
  if (!m.magnitude_is_quality)
    append_printf(out, "(%s is not MagFace-trained: its magnitude is not a calibrated quality)\n",
                  m.name.c_str());
  if (d.undecided)
    append_printf(out, "undecided: a face is below the quality threshold %.2f (%s)\n",
                  m.quality_threshold, m.quality_calibration.c_str());
  return out;
}

std::string to_text(const IjbVerification& v) {
  std::string out;
  append_printf(out, "%zu images, %zu templates, %zu pairs (%zu genuine, %zu impostor); %s\n",
                v.images, v.templates, v.pairs, v.roc.genuine, v.roc.impostor,
                v.quality_weighted
                    ? "media features quality-weighted (magface_qlt=1: not normalised)"
                    : "media features normalised (magface_qlt=0)");
  append_printf(out, "IJB%s 1v1 verification:\n\n", v.type.c_str());
  std::string row;
  for (const auto& t : v.tar_at_far) {
    char cell[16];
    std::snprintf(cell, sizeof cell, "  %0.4f", t.tar);
    append_printf(out, "%s\n", cell);
    row += cell;
  }
  append_printf(out, "%s\n", row.c_str());
  out += "(TAR at FAR";
  for (const auto& t : v.tar_at_far) append_printf(out, " %s", far_label(t.far_target).c_str());
  append_printf(out, "; AUC %.6f)\n", v.roc.auc);
  return out;
}

std::string to_text(const std::vector<IjbIdentification>& gallery,
                    const std::filesystem::path& probe_list) {
  std::string out;
  const auto& first = gallery.front().result;
  append_printf(out, "%s: %zu gallery templates; %s: %zu probes (%zu mated, %zu non-mated)\n",
                gallery.front().gallery.filename().string().c_str(),
                gallery.front().gallery_templates, probe_list.filename().string().c_str(),
                first.probes, first.mated, first.non_mated);
  append_printf(out, "  %-17s rank-1  rank-5  rank-10  TPIR@FPIR=1e-2  TPIR@FPIR=1e-1\n", "");
  for (const auto& g : gallery) {
    const auto& r = g.result;
    append_printf(out, "  %-17s %6.4f  %6.4f  %7.4f",
                  g.quality_weighted ? "quality-weighted" : "media normalised", r.cmc[0], r.cmc[1],
                  r.cmc[2]);
    for (const auto& p : r.open_set) {
      if (p.threshold)
        append_printf(out, "  %14.4f", p.tpir);
      else
        append_printf(out, "  %14s", "n/a");
    }
    out += "\n";
  }
  return out;
}

std::string to_text(const ReportSummary& summary, const std::filesystem::path& out_dir) {
  std::string out;
  append_printf(out,
                "report on %zu faces in %zu group(s) written to %s (report.html, report.json, %zu "
                "PNG files)\n",
                summary.faces, summary.groups.size(), out_dir.string().c_str(),
                summary.pictures.size());
  for (const auto& g : summary.groups) {
    append_printf(out, "  %-12s %3zu faces  WSS %.4f  mean distance %.4f  mean quality %.3f\n",
                  g.name.c_str(), g.size, g.wss, g.mean_pairwise_distance, g.mean_quality);
  }
  return out;
}

}  // namespace facemag::eval
