#include "facemag/eval/pair_source.hpp"

#include <algorithm>
#include <filesystem>

#include "facemag/embed/face_quality.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/protocol_files.hpp"

namespace facemag::eval {
namespace {

LoadedPairs embed_pairs(const ImagePairs& input, const PairEncoder& encoder,
                        const ImagePairsObserver& observer) {
  const std::shared_ptr<const FaceEncoder> face_encoder = encoder.load();
  auto embedded = embed_image_pairs(input, *face_encoder, encoder.landmarks, observer);
  LoadedPairs out;
  out.model = face_encoder->manifest().name;
  out.face_choice = std::move(embedded.face_choice);
  out.pairs = std::move(embedded.pairs);
  out.face_quality = std::move(embedded.face_quality);
  out.row_quality = std::move(embedded.row_quality);
  out.quality_source = quality_source(face_encoder->manifest());
  out.source_index = std::move(embedded.source_index);
  out.dropped = embedded.dropped;
  return out;
}

}  // namespace

LoadedPairs load_pairs(const PairSource& src, const PairEncoder& encoder,
                       const ImagePairsObserver& observer) {
  LoadedPairs out;
  if (!src.features.empty()) {
    if (src.labels.empty()) throw InvalidInput("--features needs --labels");
    auto files = read_feature_pairs(src.features, src.labels, src.pair_index);
    out.pairs = std::move(files.pairs);
    out.face_quality = std::move(files.row_norms);
    for (std::size_t p = 0; p < out.pairs.size(); ++p) out.source_index.push_back(p);
    out.description = src.features;
  } else if (!src.bin.empty()) {
    out = embed_pairs(image_pairs_of_bin(src.bin), encoder, observer);
    out.description = src.bin;
  } else if (!src.lfw_pairs.empty()) {
    const auto root = src.root.empty() ? std::filesystem::path(src.lfw_pairs).parent_path()
                                       : std::filesystem::path(src.root);
    const auto list = read_lfw_pairs(src.lfw_pairs, root);
    out = embed_pairs(image_pairs_of(list), encoder, observer);
    out.fold_size = list.fold_size;
    out.description = src.lfw_pairs;
  } else {
    out = embed_pairs(image_pairs_of(read_image_pair_list(src.pair_list)), encoder, observer);
    out.description = src.pair_list;
  }
  return out;
}

std::string pair_counts(const FeaturePairs& pairs) {
  const auto same = std::count(pairs.is_same.begin(), pairs.is_same.end(), true);
  return std::to_string(pairs.size()) + " pairs (" + std::to_string(same) + " same, " +
         std::to_string(pairs.size() - same) + " different)";
}

LfwResult lfw_protocol(const LoadedPairs& loaded) {
  std::vector<int> fold_of_pair;
  for (const std::size_t i : loaded.source_index)
    fold_of_pair.push_back(static_cast<int>(i / loaded.fold_size));
  return lfw_protocol(loaded.pairs, fold_of_pair);
}

PairsEvaluation evaluate_pairs(const LoadedPairs& loaded, const PairsEvaluationOptions& options) {
  PairsEvaluation out;
  out.fold_size = loaded.fold_size;
  out.fmrs = options.fmrs;
  out.roc = roc_summary(pair_similarities(loaded.pairs), loaded.pairs.is_same, options.fmrs);
  if (options.protocol == "lfw")
    out.lfw = lfw_protocol(loaded);
  else
    out.kfold = kfold_verification(loaded.pairs, options.kfold);
  return out;
}

}  // namespace facemag::eval
