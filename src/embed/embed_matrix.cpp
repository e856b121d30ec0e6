#include "facemag/embed/embed_matrix.hpp"

#include <torch/torch.h>

#include <cmath>

namespace facemag {

torch::Tensor embed_matrix(const Embedder& embedder, const std::vector<cv::Mat>& faces) {
  if (faces.empty()) return torch::empty({0, embedder.output_size()}, torch::kFloat32);
  const torch::Tensor batch = embedder.preprocess(faces);
  torch::Tensor features = embedder.forward(batch);
  if (embedder.manifest().concat_flipped)
    features = torch::cat({features, embedder.forward(batch.flip(3))}, 1);
  return features.contiguous();
}

float embedding_magnitude(std::span<const float> raw) {
  double sum = 0;
  for (const float v : raw) sum += static_cast<double>(v) * v;
  return static_cast<float>(std::sqrt(sum));
}

}  // namespace facemag
