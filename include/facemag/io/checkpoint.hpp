// Reading and writing PyTorch checkpoint files (`torch.save` output) without Python.
//
// Both formats torch.save has used are read: the zip archive (PyTorch >= 1.6: `<stem>/data.pkl`
// plus one record per storage) and the legacy stream (magic number, protocol, sys info, the
// object, storage keys, raw storages). Tensors keep their dtype, strides, storage offset and
// storage sharing. The writer produces the zip format that torch.load reads.
//
// Hostile input: every allocation is bounded by the size of the file, nothing in it is
// executed (see pickle.hpp), and every failure is a facemag::ModelLoadError naming the file.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "facemag/io/pickle.hpp"

namespace facemag::io {

enum class CheckpointFormat { kZip, kLegacy };

struct Checkpoint {
  pickle::ValuePtr root;  // the object that was saved
  CheckpointFormat format = CheckpointFormat::kZip;
  std::string source;  // file name, for messages
};

Checkpoint load_checkpoint(const std::filesystem::path& path);
// The same from bytes in memory; `source` names them in messages.
Checkpoint load_checkpoint_bytes(std::string_view bytes, const std::string& source);

// Writes `root` as torch.save does (zip format, pickle protocol 2, storages shared between
// tensors that share them). Tensors must be on the CPU.
void save_checkpoint(const std::filesystem::path& path, const pickle::Value& root);

// Named tensors in the order of the state dict.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The state dict inside a checkpoint: the dict itself, or its entry `state_dict`,
// `net_state_dict` or `model` (first present). Non-tensor entries are an error naming the key.
NamedTensors find_state_dict(const Checkpoint& checkpoint);

// PyTorch's name of a dtype: "float32", "float16", "bfloat16", "int64", "bool"...
std::string dtype_name(torch::ScalarType dtype);

// A state dict value (dict or OrderedDict of str -> tensor) as a pickle value, for save_checkpoint.
pickle::ValuePtr make_state_dict_value(const NamedTensors& tensors);

}  // namespace facemag::io
