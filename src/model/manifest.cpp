#include "facemag/model/manifest.hpp"

#include <nlohmann/json.hpp>

#include <iterator>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/nn/iresnet.hpp"

namespace facemag {

namespace {

constexpr const char* kArchitectures[] = {"iresnet18",  "iresnet34",     "iresnet50",
                                          "iresnet100", "mobilefacenet", "inception_resnet_v1"};

// The convention of the non-MagFace models: RGB, (x - 127.5) / 128, and a feature magnitude
// that is not a calibrated quality.
void use_rgb_standardisation(ModelManifest& m, int height, int width) {
  m.input_height = height;
  m.input_width = width;
  m.color_order = ColorOrder::kRGB;
  m.pixel_offset = 127.5f;
  m.pixel_scale = 128.0f;
  m.magnitude_is_quality = false;
}

}  // namespace

NLOHMANN_JSON_SERIALIZE_ENUM(ColorOrder, {{ColorOrder::kBGR, "BGR"}, {ColorOrder::kRGB, "RGB"}})
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ModelManifest::FmrThreshold, fmr, threshold)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ModelManifest, name, architecture, input_height, input_width,
                                   color_order, pixel_offset, pixel_scale, prewhiten,
                                   alignment_template, embedding_size, num_classes,
                                   magnitude_is_quality, concat_flipped, same_person_threshold,
                                   threshold_calibration, fmr_thresholds, quality_threshold,
                                   quality_calibration, sha256, source, licence)

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
  return {std::begin(kArchitectures), std::end(kArchitectures)};
}

ModelManifest builtin_manifest(const std::string& architecture) {
  ModelManifest m;
  m.architecture = architecture;
  if (nn::iresnet_depth_from_name(architecture)) {
    m.name = "magface-" + architecture;
    m.source = "MagFace (IrvingMeng/MagFace), models/iresnet.py";
    m.licence = "Apache-2.0 (code); weights: see their source";
    return m;
  }
  if (architecture == "mobilefacenet") {
    m.name = "mobilefacenet-casia";
    use_rgb_standardisation(m, 112, 96);
    m.alignment_template = "sphereface-96x112";
    m.embedding_size = 128;
    m.same_person_threshold = 0.2;
    m.threshold_calibration =
        "pure groups of the 46 faces (3 people) in ../shared/data/faces-casia; not calibrated on "
        "LFW";
    m.source = "Xiaoccer/MobileFaceNet_Pytorch, model/best/068.ckpt (CASIA-WebFace, LFW 99.30%)";
    m.licence = "see the source repository";
    return m;
  }
  if (architecture == "inception_resnet_v1") {
    m.name = "facenet-inception-resnet-v1";
    use_rgb_standardisation(m, 160, 160);
    m.alignment_template = "facenet-margin-0";  // facenet-pytorch MTCNN defaults: 160 px, margin 0
    m.embedding_size = 512;
    m.same_person_threshold = 0.4;
    m.source =
        "facenet-pytorch InceptionResnetV1 (20180402-114759-vggface2.pt, "
        "20180408-102900-casia-webface.pt)";
    m.licence = "MIT (facenet-pytorch); weights: see their source";
    return m;
  }
  std::string known;
  for (const auto& a : builtin_architectures()) known += (known.empty() ? "" : ", ") + a;
  throw InvalidInput("unknown architecture '" + architecture + "' (known: " + known + ")");
}

}  // namespace facemag
