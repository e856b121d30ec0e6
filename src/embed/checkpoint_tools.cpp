#include "facemag/embed/checkpoint_tools.hpp"

#include "facemag/embed/embedder.hpp"

namespace facemag {

nlohmann::json checkpoint_summary(const io::Checkpoint& checkpoint, const std::string& path) {
  const auto& root = checkpoint.root;
  nlohmann::json summary{
      {"path", path},
      {"format", checkpoint.format == io::CheckpointFormat::kZip ? "zip" : "legacy"},
      {"type", root->type_name()}};
  if (root->is<pickle::Dict>()) {
    nlohmann::json entries = nlohmann::json::object();
    for (const auto& [key, value] : root->as_dict().items) {
      const std::string name = key->is<std::string>() ? key->as_string() : key->type_name();
      if (value->is<std::string>()) {
        entries[name] = value->as_string();
      } else if (value->is<std::int64_t>()) {
        entries[name] = value->as_int();
      } else {
        entries[name] = value->type_name();
      }
    }
    summary["entries"] = entries;
  }
  return summary;
}

nlohmann::json tensor_record(const std::string& name, const torch::Tensor& tensor) {
  return {{"tensor", name},
          {"dtype", io::dtype_name(tensor.scalar_type())},
          {"shape", tensor.sizes().vec()}};
}

void write_formula_weights(const std::string& architecture, int classes,
                           const std::filesystem::path& out) {
  ModelManifest manifest = builtin_manifest(architecture);
  manifest.num_classes = classes;
  const Embedder embedder = Embedder::with_formula_weights(manifest, {Precision::kReference});
  io::save_checkpoint(out, *io::make_state_dict_value(embedder.state_dict()));
}

}  // namespace facemag
