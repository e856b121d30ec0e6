// The files evaluation protocols come in, read into typed values: labelled pairs (LFW's
// pairs.txt, lists of image pairs, feature matrices with their labels and pair index), the
// features of an IJB face list, and the identity labels of a clustering set. Front ends hand what
// these return to verification.hpp, ijb.hpp and cluster.hpp, and parse no file themselves.
//
// Errors: InvalidInput whose message starts with the file as given ("pairs.txt: ..."), and for a
// line of text with its 1-based number ("pairs.txt:7: ..."), then what was expected and what was
// found. Text files are read line by line, blank lines skipped (but counted).
#pragma once

#include <torch/types.h>

#include <array>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facemag/eval/ijb.hpp"
#include "facemag/eval/verification.hpp"

namespace facemag::eval {

// ---- same/different labels ----

// "1", "True", "true": same; "0", "False", "false": different; anything else: nullopt.
std::optional<bool> parse_same_label(std::string_view field);

// Is-same labels of pairs, one per pair: an .npy array (returned as stored), or text whose
// non-blank lines each end in a label (parse_same_label; the fields before it are ignored, as in
// MagFace's pair lists), returned as int64 0/1. InvalidInput for a missing or unreadable file
// and a last field that is not a label.
torch::Tensor read_pair_labels(const std::filesystem::path& path);

// ---- labelled pairs of features ----

// A feature matrix whose rows form pairs: an .npy matrix (returned as stored), or a MagFace
// feature list (io::read_feature_list: "name v1 ... vD" per line). `pairs_by_line` says rows 2p
// and 2p+1 form pair p (no pair index): a feature list with an odd number of lines is then
// InvalidInput.
torch::Tensor read_pair_features(const std::filesystem::path& path, bool pairs_by_line);

// One quality per feature row from an .npy of N values (shape N or N x 1, any number type), for
// `eval erc --quality`. InvalidInput naming the file for another shape.
std::vector<double> read_row_qualities(const std::filesystem::path& path);

struct FeaturePairFiles {
  FeaturePairs pairs;
  std::vector<double> row_norms;  // L2 norm (raw magnitude) of every row of the feature file
};

// Pairs from a feature file (read_pair_features), its labels (read_pair_labels) and, unless
// `pair_index` is empty, an .npy P x 2 matrix of row numbers (else rows 2p and 2p+1). The files
// are read in that order; make_feature_pairs' InvalidInput (sizes, rows out of range, NaN) comes
// prefixed with the feature file.
FeaturePairFiles read_feature_pairs(const std::filesystem::path& features,
                                    const std::filesystem::path& labels,
                                    const std::filesystem::path& pair_index = {});

// Writes `pairs` as `features` (2P x D float32, rows 2p and 2p+1 = pair p) and, beside it,
// STEM_issame.npy (P int64 0/1): read_feature_pairs(features, labels) reads them back (to float32
// rounding). Returns the labels' path. InvalidInput when a file cannot be written.
std::filesystem::path write_feature_pairs(const FeaturePairs& pairs,
                                          const std::filesystem::path& features);

// ---- labelled pairs of image files ----

struct ImagePairList {
  // The distinct image paths, in order of first mention; every one existed when read. Two
  // spellings of one file are two images.
  std::vector<std::filesystem::path> images;
  std::vector<std::array<std::size_t, 2>> pairs;  // indices into `images`
  std::vector<bool> is_same;                      // one per pair
  // Pairs per fold of LFW's protocol (blocks in file order): twice the pairs per side of LFW's
  // header, else LFW's 600.
  std::size_t fold_size = 600;
};

// A list of image pairs, one per line: "path_a path_b is_same" (is_same as parse_same_label);
// relative paths are relative to the list's folder. InvalidInput naming file and line for a line
// of another form and for an image that does not exist, and for a list without pairs.
ImagePairList read_image_pair_list(const std::filesystem::path& file);

// LFW's pairs.txt: an optional header "folds pairs-per-side", then "name n1 n2" (same person)
// and "name1 n1 name2 n2" (different) lines. Photo n of a name is
// <root>/<name>/<name>_<n, 4 digits>.jpg. InvalidInput naming file and line for a malformed
// header or line, a photo number that is not a positive integer and a photo that does not exist;
// for a file without pairs, and for a header giving 0 pairs per fold.
ImagePairList read_lfw_pairs(const std::filesystem::path& file, const std::filesystem::path& root);

// ---- IJB-B/C ----

// A file of an IJB meta folder: DIR/meta/NAME where it exists, else DIR/NAME (DIR may be the
// meta folder itself). InvalidInput naming both places when neither exists.
std::filesystem::path find_ijb_meta_file(const std::filesystem::path& dir, const std::string& name);

// The image features of an IJB face list, row i for line i of `faces` (N x D float32 or as
// stored), from
//   - a MagFace feature list (text): line i must name the file (compared by file name) of face
//     list line i;
//   - an .npy matrix: row i for line i; or, where F.jsonl lies beside F.npy (the index that
//     `facemag embed --npy F.npy` writes, {"path": ..., "row": ...} per line), the rows matched
//     to the face list by file name.
// InvalidInput naming the files (and lines) when the counts, names or rows do not agree.
torch::Tensor read_ijb_features(const std::filesystem::path& features, const IjbFaceList& faces);

// ---- identities of a clustering set ----

struct IdentityLabels {
  std::vector<int> identity;       // per row: the identity's number, 0-based
  std::vector<std::string> names;  // identity names by number, in order of first appearance
};

// Identity labels, one per face: .npy integers (any shape, flattened; names are their decimal
// form), or text with one label per non-blank line (any word, surrounding blanks trimmed).
IdentityLabels read_identity_labels(const std::filesystem::path& path);

struct LabelledFeatures {
  torch::Tensor features;  // N x D, as stored
  IdentityLabels labels;   // N
};

// A feature matrix (.npy, or a MagFace feature list) and the identity of each row. InvalidInput
// for a matrix that is not 2-dimensional, and for label and row counts that differ.
LabelledFeatures read_labelled_features(const std::filesystem::path& features,
                                        const std::filesystem::path& labels);

}  // namespace facemag::eval
