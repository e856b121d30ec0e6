// Where the labelled pairs of `eval pairs`, `eval erc` and `calibrate` come from: features already
// computed (a .npy matrix or a MagFace feature list, with labels), or images a face encoder embeds
// (an insightface .bin, a pair list, LFW's pairs.txt). One call loads any of them into typed pairs,
// so that every front end reads the same files the same way.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facemag/eval/image_pairs.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::eval {

// The files naming the pairs: exactly one of features, bin, pair_list, lfw_pairs is set.
struct PairSource {
  std::string features;    // .npy matrix or MagFace feature list (text: name v1 ... vD)
  std::string labels;      // .npy or text (last field of each line: 1 same, 0 different)
  std::string pair_index;  // .npy P x 2 rows of `features` (default: rows 2p, 2p+1)
  std::string bin;         // insightface verification .bin
  std::string pair_list;   // text: path_a path_b is_same
  std::string lfw_pairs;   // LFW's own pairs.txt (names and photo numbers)
  std::string root;        // folder of the photos of lfw_pairs (<root>/<name>/<name>_0001.jpg)
};

// The model that embeds the faces of an image source, loaded only when the source has images (a
// features source needs none). `landmarks` names the landmarks file the encoder aligns with (for
// the face-choice summary; empty when it detects).
struct PairEncoder {
  std::function<std::shared_ptr<const FaceEncoder>()> load;
  std::string landmarks;
};

struct LoadedPairs {
  FeaturePairs pairs;
  std::vector<double> face_quality;  // raw norm of every face used
  // Image sources: each feature row's quality by the model's rule (Embedding::quality) and what
  // it measures (quality_source(): "magnitude" or "magnitude*sharpness"); empty for features.
  std::vector<double> row_quality;
  std::string quality_source;
  std::string description;  // the source file, as given
  std::string model;        // manifest name when a model embedded the faces
  std::size_t dropped = 0;  // pairs without a face in one image
  std::string face_choice;  // how faces were chosen in photos with several (photo sources)
  // Position of each kept pair in the source, and the pairs per fold of LFW's protocol there
  // (pairs.txt's header, else LFW's 600).
  std::vector<std::size_t> source_index;
  std::size_t fold_size = 600;
};

// Reads the source's pairs; an image source is read first, then `encoder.load()` is called and the
// images embedded (eval::embed_image_pairs, reporting to `observer`). InvalidInput for features
// without labels and for anything the readers refuse.
LoadedPairs load_pairs(const PairSource& source, const PairEncoder& encoder,
                       const ImagePairsObserver& observer = {});

// "P pairs (S same, D different)", as reports describe a set of pairs.
std::string pair_counts(const FeaturePairs& pairs);

// LFW's protocol (eval::lfw_protocol) over the loaded pairs in their source's blocks of fold_size.
LfwResult lfw_protocol(const LoadedPairs& loaded);

// What `eval pairs` measures on loaded pairs: the ROC on all pairs at `fmrs`, and the accuracy by
// folds, MagFace eval_1v1's k folds (protocol "magface") or LFW's own folds ("lfw").
struct PairsEvaluationOptions {
  std::string protocol = "magface";  // "magface" or "lfw"
  KFoldOptions kfold;                // for protocol "magface"
  std::vector<double> fmrs{1e-1, 1e-2, 1e-3, 1e-4};
};
struct PairsEvaluation {
  std::optional<KFoldResult> kfold;  // protocol "magface"
  std::optional<LfwResult> lfw;      // protocol "lfw", in the source's blocks of fold_size
  std::size_t fold_size = 0;
  std::vector<double> fmrs;  // as requested
  RocSummary roc;
};
// The folds' accuracy (kfold_verification, or lfw_protocol for protocol "lfw") and the ROC; the
// folds' InvalidInput (too few pairs or folds) as they throw it.
PairsEvaluation evaluate_pairs(const LoadedPairs& loaded, const PairsEvaluationOptions& options);

}  // namespace facemag::eval
