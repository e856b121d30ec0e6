// Labelled pairs of images turned into embedded pairs, as `eval pairs`, `eval erc` and
// `calibrate` take them from photos (a --pair-list, LFW's pairs.txt, an insightface .bin): every
// image embedded once, one face each (the FaceEncoder's choice), pairs without a face in both
// images left out and counted.
#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "facemag/eval/pair_decision.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::eval {

// Labelled pairs of images; `load(i)` reads image i (8-bit BGR) when its chunk is embedded and
// may throw InvalidInput: that image's pairs are then left out, as pairs without a face.
struct ImagePairs {
  std::vector<std::string> names;  // for messages and landmark look-ups
  std::function<cv::Mat(std::size_t)> load;
  std::vector<std::array<std::size_t, 2>> pairs;
  std::vector<bool> is_same;
};

// The pairs of a list of image files (each file read once).
ImagePairs image_pairs_of(const ImagePairList& list);
// The pairs of an insightface verification .bin (images 2p and 2p + 1 form pair p).
ImagePairs image_pairs_of_bin(const std::filesystem::path& bin);

struct EmbeddedPairs {
  FeaturePairs pairs;
  std::vector<double> face_quality;       // raw norm of every face used, two per pair
  std::vector<double> row_quality;        // Embedding::quality of every face used (the model's)
  std::vector<std::size_t> source_index;  // each kept pair's position in the input
  std::size_t dropped = 0;                // pairs without a face in one image
  std::string face_choice;                // face_choice_summary of the photos
};

// What happens along the way, for a front end to show (every member may be empty).
struct ImagePairsObserver {
  std::function<void(std::size_t images)> started;  // before the first image, with their count
  std::function<void(const std::string& name, const std::string& error)> unreadable;
  std::function<void(std::size_t images_done)> progress;
  std::function<void(std::size_t pair, const std::string& error)> dropped;  // pair: 1-based
};

// Embeds the images in chunks of 256 and assembles the pairs. InvalidInput when no pair has a
// face in both images. `landmarks` names the landmarks file in the face-choice summary.
EmbeddedPairs embed_image_pairs(const ImagePairs& input, const FaceEncoder& encoder,
                                const std::string& landmarks = {},
                                const ImagePairsObserver& observer = {});

// The 1:1 decision (decide_pair) for the faces of two image files, as `facemag verify` makes it:
// both read (8-bit BGR) and encoded together; InvalidInput for an unreadable image or one without
// a face (the encoder's reason).
PairDecision decide_image_pair(const FaceEncoder& encoder, const std::string& a,
                               const std::string& b, const PairRules& rules = {});

}  // namespace facemag::eval
