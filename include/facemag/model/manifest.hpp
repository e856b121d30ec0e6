// What facemag knows about a model besides its weights: the preprocessing that is part of it
// (colour order, pixel offset and scale, input size, alignment template), what its output means,
// its calibrated thresholds, and where it came from (source, licence, SHA-256 of the weights).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace facemag {

enum class ColorOrder { kBGR, kRGB };

// Everything needed to feed a model correctly and to interpret its output.
struct ModelManifest {
  std::string name;          // e.g. "magface-iresnet100"
  std::string architecture;  // e.g. "iresnet100"
  int input_height = 112;
  int input_width = 112;
  ColorOrder color_order = ColorOrder::kBGR;
  // Pixel p in [0, 255] becomes (p - pixel_offset) / pixel_scale.
  float pixel_offset = 0.0f;
  float pixel_scale = 255.0f;
  // Instead of the fixed offset/scale, standardise each face by its own mean and (unbiased)
  // standard deviation, clamped below at 1/sqrt(values): facenet-pytorch's prewhiten().
  bool prewhiten = false;
  // How a detected face becomes the input crop: "arcface-112x112" or "sphereface-96x112"
  // (5-point similarity alignment), or "facenet-margin-<m>" (facenet-pytorch's box crop
  // resized to input_width, with a margin of m pixels).
  std::string alignment_template = "arcface-112x112";
  int embedding_size = 512;
  // Classes of an optional classifier head (FaceNet: 8631 VGGFace2, 10575 CASIA-WebFace);
  // 0 = none. Loading takes it from the checkpoint.
  int num_classes = 0;
  // True only for MagFace-trained models, where the raw feature norm is a calibrated quality.
  bool magnitude_is_quality = true;
  // Embed each face and its mirror image and concatenate the two (MobileFaceNet's LFW
  // protocol): the embedding then has 2 x embedding_size values.
  bool concat_flipped = false;
  // Cosine similarity above which two faces are taken for the same person, and what it was
  // calibrated on.
  double same_person_threshold = 0.3;
  std::string threshold_calibration = "not calibrated (a generic value)";
  // The mean cosine similarity at which average linkage stops merging groups when a collection
  // of many people is grouped (`cluster`, `eval cluster`): not a pair threshold, since a group's
  // mean over many pairs is steadier than one pair's. 0: the same-person threshold.
  double cluster_threshold = 0;
  std::string cluster_calibration;
  // Set by `facemag calibrate`: cosine thresholds measured at target false match rates, and
  // the magnitude below which a face counts as too poor to compare (0: no such threshold).
  struct FmrThreshold {
    double fmr = 0;
    double threshold = 0;
  };
  std::vector<FmrThreshold> fmr_thresholds;
  double quality_threshold = 0;
  std::string quality_calibration;
  std::string sha256;  // of the weight file, when known
  std::string source;
  std::string licence;
};

// The manifest's cluster_threshold, or its same-person threshold where none was calibrated.
double clustering_threshold(const ModelManifest& manifest);

// Manifests of the architectures facemag knows. Throws InvalidInput for others.
//   iresnet18, iresnet34, iresnet50, iresnet100 (MagFace): 112x112 ArcFace-aligned, BGR, x / 255,
//     512-d; the magnitude is the quality.
//   mobilefacenet (CASIA-WebFace, 068.ckpt): 112x96 (h x w) SphereFace-aligned, RGB,
//     (x - 127.5) / 128, 128-d; the magnitude is *not* a calibrated quality.
//   inception_resnet_v1 (FaceNet, facenet-pytorch): 160x160 MTCNN margin crop, RGB,
//     (x - 127.5) / 128, 512-d. The raw vector is the network before facenet-pytorch's final L2
//     normalisation: Embedding::normalized() is facenet-pytorch's embedding.
ModelManifest builtin_manifest(const std::string& architecture);
std::vector<std::string> builtin_architectures();

// A manifest as a JSON object, and back. Reading starts from the built-in manifest of the
// file's "architecture" and overrides the fields the file gives; unknown fields, wrong types
// and an unknown architecture are InvalidInput naming `source`.
std::string manifest_to_json(const ModelManifest& manifest);
ModelManifest manifest_from_json(const std::string& json, const std::string& source);
void save_manifest(const std::filesystem::path& path, const ModelManifest& manifest);
ModelManifest load_manifest(const std::filesystem::path& path);

}  // namespace facemag
