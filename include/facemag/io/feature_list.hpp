// MagFace's text feature lists (inference/gen_feat.py): one face per line, its name and then its
// D feature values, space-separated ("name v1 v2 ... vD ", a trailing space allowed).
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace facemag::io {

struct FeatureList {
  std::vector<std::string> names;
  torch::Tensor features;  // N x D float32, as MagFace's readers cast them
};

// Reads every non-blank line, one line at a time (IJB-C's 227k x 512 list is ~2 GB of text); the
// values are parsed as doubles and rounded once to float32, as upstream's float(text) and
// astype(np.float32). InvalidInput naming file and line for a line with another number of values
// than the first, a value that is not a number, and an empty file.
FeatureList read_feature_list(const std::filesystem::path& path);

}  // namespace facemag::io
