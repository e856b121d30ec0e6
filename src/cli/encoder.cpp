#include "encoder.hpp"

#include <spdlog/spdlog.h>

#include "facemag/error.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {

void add_precision_option(CLI::App& cmd, std::string& precision) {
  cmd.add_option("--precision", precision,
                 "fp32 (BatchNorm folded, oneDNN), bf16 (iResNet: ~2x faster, cosine >= 0.9998 "
                 "to fp32) or reference (PyTorch's ops one by one)")
      ->check(CLI::IsMember(precision_names()))
      ->capture_default_str();
}

void add_model_options(CLI::App& cmd, ModelOptions& opt, const std::string& default_arch) {
  opt.arch = default_arch;
  cmd.add_option("--arch", opt.arch, "Network architecture")
      ->check(CLI::IsMember(builtin_architectures()))
      ->capture_default_str();
  cmd.add_option("--weights", opt.weights, "Checkpoint (default $FACEMAG_HOME/<model>.pth)");
  cmd.add_option("--manifest", opt.manifest,
                 "Model manifest JSON (default: WEIGHTS.manifest.json when it exists)");
  cmd.add_flag("--flip", opt.flip, "Concatenate the embedding of the mirrored face");
  add_detector_options(cmd, opt.detector);
  cmd.add_option("--batch", opt.batch, "Faces per forward pass")->capture_default_str();
  cmd.add_option("--threads", opt.threads, "CPU threads (0 = all cores)")->capture_default_str();
  add_precision_option(cmd, opt.precision);
}

std::filesystem::path manifest_path_for(const std::filesystem::path& weights) {
  return weights.string() + ".manifest.json";
}

ModelManifest resolve_manifest(const ModelOptions& opt, const std::filesystem::path& weights) {
  ModelManifest manifest;
  if (!opt.manifest.empty()) {
    manifest = load_manifest(opt.manifest);
  } else if (!weights.empty() && std::filesystem::exists(manifest_path_for(weights))) {
    manifest = load_manifest(manifest_path_for(weights));
    spdlog::info("using the calibrated manifest {}", manifest_path_for(weights).string());
  } else {
    manifest = builtin_manifest(opt.arch);
  }
  if (manifest.architecture != opt.arch && !opt.manifest.empty())
    spdlog::info("the manifest describes {}: using it instead of --arch {}", manifest.architecture,
                 opt.arch);
  if (opt.flip) manifest.concat_flipped = true;
  if (opt.prewhiten) manifest.prewhiten = true;
  return manifest;
}

Embedder load_model(const ModelOptions& opt) {
  if (opt.batch < 1) throw InvalidInput("--batch must be at least 1");
  spdlog::debug("{} threads", configure_runtime(opt.threads));
  const auto weights = resolve_weights(opt.weights, builtin_manifest(opt.arch).name);
  Embedder embedder =
      Embedder::load(resolve_manifest(opt, weights), weights, {parse_precision(opt.precision)});
  for (const auto& note : embedder.load_notes()) spdlog::info("{}", note);
  return embedder;
}

FaceEncoder::FaceEncoder(const ModelOptions& opt) : opt_(opt), embedder_(load_model(opt)) {}

std::vector<FaceEncoder::Face> FaceEncoder::encode(const std::vector<cv::Mat>& images,
                                                   const std::vector<std::string>& names) const {
  const auto& m = manifest();
  std::vector<Face> faces(images.size());
  std::vector<std::size_t> batch_index;
  std::vector<cv::Mat> batch;
  const auto flush = [&] {
    if (batch.empty()) return;
    auto embeddings = embedder_.embed(batch);
    for (std::size_t k = 0; k < batch.size(); ++k)
      faces[batch_index[k]].embedding = std::move(embeddings[k]);
    batch.clear();
    batch_index.clear();
  };
  for (std::size_t i = 0; i < images.size(); ++i) {
    cv::Mat crop;
    if (images[i].rows == m.input_height && images[i].cols == m.input_width) {
      crop = images[i];
    } else {
      if (!detector_) detector_ = std::make_unique<MtcnnDetector>(load_detector(opt_.detector));
      const auto detections = detector_->detect(images[i], to_mtcnn_options(opt_.detector));
      if (detections.empty()) {
        faces[i].error = names[i] + ": no face found";
        continue;
      }
      // MTCNN lists the largest face first.
      crop = crop_for_model(images[i], detections.front(), m);
    }
    faces[i].crop = crop;
    batch.push_back(crop);
    batch_index.push_back(i);
    if (batch.size() >= static_cast<std::size_t>(opt_.batch)) flush();
  }
  flush();
  return faces;
}

}  // namespace facemag::cli
