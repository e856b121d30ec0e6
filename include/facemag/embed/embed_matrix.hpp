// Embeddings as one matrix: what Embedder::embed computes, as an N x D float32 tensor instead of N
// vectors, for front ends that hand out matrices (the Python module's NumPy arrays) without copying
// row by row. Embedder::embed is built on it, so both give the same bits.
#pragma once

#include <torch/types.h>
#include <opencv2/core/mat.hpp>

#include <span>
#include <vector>

#include "facemag/embed/embedder.hpp"

namespace facemag {

// Raw embeddings of aligned faces (8-bit BGR cv::Mat of exactly the model's input size, as
// Embedder::embed takes them): N x output_size() float32, contiguous, row i of faces[i]; for a
// concat_flipped manifest the mirror image's features follow each face's own. InvalidInput as
// Embedder::preprocess throws it (a face of another size or type). No faces: 0 x output_size().
torch::Tensor embed_matrix(const Embedder& embedder, const std::vector<cv::Mat>& faces);

// The L2 norm of a raw embedding, summed in double and rounded once to float: Embedding::magnitude,
// MagFace's quality.
float embedding_magnitude(std::span<const float> raw);

}  // namespace facemag
