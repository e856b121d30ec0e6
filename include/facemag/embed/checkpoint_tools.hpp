// What `facemag inspect` and `facemag formula-weights` do with checkpoint files: describe what a
// checkpoint holds, and write one of deterministic untrained weights (for trying the tools and
// benchmarking without downloads).
#pragma once

#include <filesystem>
#include <string>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "facemag/io/checkpoint.hpp"

namespace facemag {

// A checkpoint's outline: {path, format ("zip" or "legacy"), type (of the saved object)} and,
// for a dict, entries: each key with its value when a string or an integer, else its type name.
nlohmann::json checkpoint_summary(const io::Checkpoint& checkpoint, const std::string& path);

// One tensor of a state dict as `inspect` lists it: {tensor, dtype, shape}.
nlohmann::json tensor_record(const std::string& name, const torch::Tensor& tensor);

// Writes a checkpoint (zip format) of `architecture`'s deterministic formula weights
// (Embedder::with_formula_weights); `classes` > 0 adds inception_resnet_v1's classifier head.
void write_formula_weights(const std::string& architecture, int classes,
                           const std::filesystem::path& out);

}  // namespace facemag
