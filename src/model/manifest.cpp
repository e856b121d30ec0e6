#include "facemag/model/manifest.hpp"

#include <nlohmann/json.hpp>

#include <iterator>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/model/network.hpp"

namespace facemag {

NLOHMANN_JSON_SERIALIZE_ENUM(ColorOrder, {{ColorOrder::kBGR, "BGR"}, {ColorOrder::kRGB, "RGB"}})
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ModelManifest::FmrThreshold, fmr, threshold)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ModelManifest, name, architecture, input_height, input_width,
                                   color_order, pixel_offset, pixel_scale, prewhiten,
                                   alignment_template, embedding_size, num_classes,
                                   magnitude_is_quality, concat_flipped, same_person_threshold,
                                   threshold_calibration, cluster_threshold, cluster_calibration,
                                   fmr_thresholds, quality_threshold, quality_calibration, sha256,
                                   source, licence)

double clustering_threshold(const ModelManifest& manifest) {
  return manifest.cluster_threshold > 0 ? manifest.cluster_threshold
                                        : manifest.same_person_threshold;
}

std::string manifest_to_json(const ModelManifest& manifest) {
  return nlohmann::json(manifest).dump(2) + "\n";
}

ModelManifest manifest_from_json(const std::string& text, const std::string& source) {
  try {
    const auto given = nlohmann::json::parse(text);
    if (!given.is_object() || !given.contains("architecture"))
      throw InvalidInput(source + ": a manifest is a JSON object with an \"architecture\"");
    nlohmann::json merged = builtin_manifest(given.at("architecture").get<std::string>());
    for (const auto& [key, value] : given.items()) {
      if (!merged.contains(key))
        throw InvalidInput(source + ": unknown manifest field \"" + key + "\"");
      merged[key] = value;
    }
    return merged.get<ModelManifest>();
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(source + ": not a valid manifest: " + e.what());
  } catch (const InvalidInput& e) {
    if (std::string(e.what()).rfind(source, 0) == 0) throw;
    throw InvalidInput(source + ": " + e.what());
  }
}

void save_manifest(const std::filesystem::path& path, const ModelManifest& manifest) {
  io::write_file_atomic(path, manifest_to_json(manifest));
}

ModelManifest load_manifest(const std::filesystem::path& path) {
  return manifest_from_json(io::read_file_bytes(path), path.string());
}

std::vector<std::string> builtin_architectures() {
  std::vector<std::string> names;
  for (const auto& a : architectures()) names.push_back(a.name);
  return names;
}

ModelManifest builtin_manifest(const std::string& architecture) {
  return find_architecture(architecture).manifest();
}

}  // namespace facemag
