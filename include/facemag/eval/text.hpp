// The human-readable forms of the evaluation results, as `eval pairs|erc|ijb|ijb-identify`,
// `calibrate`, `verify` and `report` print them on a terminal, written once so that another front
// end (a Python `__str__`, a report) shows the same text. Each string ends with a newline; the
// JSON forms are in json.hpp.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "facemag/eval/calibration.hpp"
#include "facemag/eval/erc.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/eval/pair_source.hpp"
#include "facemag/eval/report.hpp"
#include "facemag/eval/verification.hpp"

namespace facemag::eval {

// "SOURCE: P pairs (S same, D different)[, model NAME]": what `eval pairs` evaluates.
std::string to_text(const LoadedPairs& loaded);

// `eval pairs`'s report below that line: the folds (LFW's table beside `published` per-fold
// accuracies, or the k-fold lines), the ROC, and the pairs of `loaded` left out without a face.
std::string to_text(const PairsEvaluation& evaluation, const LoadedPairs& loaded,
                    const std::vector<double>& published = {});

// LFW's protocol as published LFW tables print it (a row per fold, then "AVE" with the standard
// deviation), `fold_size` pairs per fold in the header, beside `published` per-fold accuracies
// (%) and their mean when given.
std::string to_text(const LfwResult& lfw, std::size_t fold_size,
                    const std::vector<double>& published = {});

// MagFace eval_1v1's k-fold lines: "Accuracy: mean+-std" and every fold's accuracy.
std::string to_text(const KFoldResult& kfold);

// Best accuracy, AUC and EER on all pairs, then TAR at each of `fmrs` (or why it is not
// measurable: too few different pairs).
std::string to_text(const RocSummary& roc, const std::vector<double>& fmrs);

// `eval erc`'s table: FNMR at each FMR (random rejection beside it) per share rejected, with the
// source and its pair counts above and the Spearman and 0-40 % means below.
std::string to_text(const ErcSummary& erc, const LoadedPairs& loaded);

// `calibrate`'s thresholds: cosine threshold, TAR and false matches per target FMR (or why it is
// not measurable), then the quality threshold that rejects `reject_rate` of the faces.
std::string to_text(const Calibration& calibration, double reject_rate);

// `verify`'s lines: similarity and decision with its threshold, the qualities of images `a` and
// `b`, whether the model's magnitude is a calibrated quality and why a decision is undecided.
std::string to_text(const PairDecision& decision, const std::string& a, const std::string& b,
                    const ModelManifest& manifest);

// `eval ijb`'s lines as MagFace's eval_ijb.py prints them (each TAR at FAR on its line, then all on
// one), with the set's counts above and the FAR labels and AUC below.
std::string to_text(const IjbVerification& verification);

// `eval ijb-identify`'s table for one gallery list (its media-normalised and quality-weighted
// rows), with the gallery and probe counts of `probe_list` above it.
std::string to_text(const std::vector<IjbIdentification>& gallery,
                    const std::filesystem::path& probe_list);

// What `report` wrote to `out_dir` and every group's spread and mean quality.
std::string to_text(const ReportSummary& summary, const std::filesystem::path& out_dir);

}  // namespace facemag::eval
