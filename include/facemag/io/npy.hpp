// NumPy .npy files (format 1.0/2.0/3.0, little-endian, C or Fortran order), so that feature
// matrices move between facemag and NumPy without conversion.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <string_view>

namespace facemag::io {

// Reads an .npy file as a contiguous CPU tensor (float32/64, int8..64, uint8, bool). C-order
// files are memory-mapped (copy-on-write), not read: a 1M x 512 matrix costs no copy up front.
torch::Tensor read_npy(const std::filesystem::path& path);
torch::Tensor read_npy_bytes(std::string_view bytes, const std::string& source);

// Writes a CPU tensor (any shape, float32/64, int32/64, uint8, bool) as .npy version 1.0.
void write_npy(const std::filesystem::path& path, const torch::Tensor& tensor);

}  // namespace facemag::io
