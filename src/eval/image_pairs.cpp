#include "facemag/eval/image_pairs.hpp"

#include <torch/torch.h>

#include <memory>

#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/io/verification_bin.hpp"

namespace facemag::eval {

ImagePairs image_pairs_of(const ImagePairList& list) {
  ImagePairs out;
  for (const auto& image : list.images) out.names.push_back(image.string());
  out.load = [names = out.names](std::size_t i) { return io::read_image_bgr(names[i]); };
  out.pairs = list.pairs;
  out.is_same = list.is_same;
  return out;
}

ImagePairs image_pairs_of_bin(const std::filesystem::path& path) {
  const auto bin = std::make_shared<io::VerificationBin>(io::read_verification_bin(path));
  ImagePairs out;
  for (std::size_t i = 0; i < bin->images.size(); ++i)
    out.names.push_back(path.string() + "[image " + std::to_string(i) + "]");
  out.load = [bin, names = out.names](std::size_t i) {
    return io::decode_image_bgr(bin->images[i], names[i]);
  };
  for (std::size_t p = 0; p < bin->is_same.size(); ++p) out.pairs.push_back({2 * p, 2 * p + 1});
  out.is_same = bin->is_same;
  return out;
}

namespace {

// Every image's face, in input order (a failure has no embedding and says why).
std::vector<FaceEncoder::Face> embed_images(const ImagePairs& input, const FaceEncoder& encoder,
                                            const ImagePairsObserver& observer) {
  const auto& names = input.names;
  if (observer.started) observer.started(names.size());
  std::vector<FaceEncoder::Face> faces;
  constexpr std::size_t kChunk = 256;
  for (std::size_t start = 0; start < names.size(); start += kChunk) {
    const std::size_t end = std::min(names.size(), start + kChunk);
    std::vector<cv::Mat> images;
    std::vector<std::string> chunk_names;
    std::vector<std::size_t> where;
    for (std::size_t i = start; i < end; ++i) {
      FaceEncoder::Face face;
      try {
        images.push_back(input.load(i));
        chunk_names.push_back(names[i]);
        where.push_back(faces.size());
      } catch (const InvalidInput& e) {
        if (observer.unreadable) observer.unreadable(names[i], e.what());
        face.error = e.what();
      }
      faces.push_back(std::move(face));
    }
    auto part = encoder.encode(images, chunk_names);
    for (std::size_t k = 0; k < part.size(); ++k) faces[where[k]] = std::move(part[k]);
    if (observer.progress) observer.progress(end - start);
  }
  return faces;
}

}  // namespace

EmbeddedPairs embed_image_pairs(const ImagePairs& input, const FaceEncoder& encoder,
                                const std::string& landmarks, const ImagePairsObserver& observer) {
  const auto faces = embed_images(input, encoder, observer);
  EmbeddedPairs out;
  out.face_choice = face_choice_summary(faces, encoder.keep(), landmarks);
  std::vector<float> rows;
  std::vector<std::int64_t> labels;
  const std::int64_t dim = encoder.embedder().output_size();
  for (std::size_t p = 0; p < input.pairs.size(); ++p) {
    const auto& a = faces[input.pairs[p][0]];
    const auto& b = faces[input.pairs[p][1]];
    if (!a.embedding || !b.embedding) {
      if (observer.dropped) observer.dropped(p + 1, (!a.embedding ? a : b).error);
      ++out.dropped;
      continue;
    }
    for (const auto* f : {&a, &b}) {
      rows.insert(rows.end(), f->embedding->raw.begin(), f->embedding->raw.end());
      out.face_quality.push_back(f->embedding->magnitude);
      out.row_quality.push_back(f->embedding->quality);
    }
    labels.push_back(input.is_same[p] ? 1 : 0);
    out.source_index.push_back(p);
  }
  if (labels.empty()) throw InvalidInput("no pair has a face in both images");
  const auto features =
      torch::from_blob(rows.data(), {static_cast<std::int64_t>(rows.size()) / dim, dim},
                       torch::kFloat32)
          .clone();
  out.pairs = make_feature_pairs(features, torch::tensor(labels, torch::kInt64));
  return out;
}

PairDecision decide_image_pair(const FaceEncoder& encoder, const std::string& a,
                               const std::string& b, const PairRules& rules) {
  const auto faces = encoder.encode({io::read_image_bgr(a), io::read_image_bgr(b)}, {a, b});
  for (const auto& f : faces) {
    if (!f.embedding) throw InvalidInput(f.error);
  }
  return decide_pair(*faces[0].embedding, *faces[1].embedding, encoder.manifest(), rules);
}

}  // namespace facemag::eval
