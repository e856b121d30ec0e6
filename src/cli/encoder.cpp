#include "encoder.hpp"

#include <spdlog/spdlog.h>

#include "facemag/error.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {

void add_precision_option(CLI::App& cmd, std::string& precision) {
  cmd.add_option("--precision", precision,
                 "fp32 (BatchNorm folded, on oneDNN, iResNet's 3x3 convolutions Winograd: "
                 "their transformed weights cost memory, iResNet100 peaks at batch 16 at "
                 "~0.8-0.9 GB on AVX2 and ~1.7-2.0 GB on AVX-512 against PyTorch's ~0.74-1.0 GB), "
                 "bf16 (oneDNN bfloat16 "
                 "on AVX-512 CPUs: faster, about half the memory of fp32, cosine >= 0.9997 to "
                 "fp32), int8 (VNNI CPUs, after `facemag calibrate-int8`: ~1.4-1.8x bf16's speed "
                 "for iResNet and Inception, ~1.2x for MobileFaceNet) or reference (PyTorch's "
                 "ops one by one)")
      ->check(CLI::IsMember(precision_names()))
      ->capture_default_str();
}

void add_model_options(CLI::App& cmd, ModelOptions& opt, const std::string& default_arch) {
  opt.arch = default_arch;
  opt.arch_option = cmd.add_option("--arch", opt.arch, "Network architecture")
                        ->check(CLI::IsMember(builtin_architectures()))
                        ->capture_default_str();
  cmd.add_option("--weights", opt.weights,
                 "Checkpoint (default: the store's default model, or $FACEMAG_HOME/<model>.pth)");
  cmd.add_option("--manifest", opt.manifest,
                 "Model manifest JSON (default: WEIGHTS.manifest.json when it exists)");
  add_store_model_option(cmd, opt.arch, opt.weights, &opt.manifest, "--weights", &opt.store);
  cmd.add_flag("--no-verify", opt.no_verify,
               "Load weights even when their SHA-256 is not the manifest's (said on stderr)");
  cmd.add_flag("--flip", opt.flip, "Concatenate the embedding of the mirrored face");
  add_detector_options(cmd, opt.detector);
  cmd.add_option("--batch", opt.batch, "Faces per forward pass")->capture_default_str();
  cmd.add_option("--threads", opt.threads, "CPU threads (0 = all cores)")->capture_default_str();
  add_precision_option(cmd, opt.precision);
  cmd.add_option("--int8-calibration", opt.int8_calibration,
                 "--precision int8: the file `facemag calibrate-int8` wrote (default "
                 "WEIGHTS.int8.json)");
}

ModelRequest model_request(const ModelOptions& opt) {
  ModelRequest request;
  request.architecture = opt.arch;
  request.architecture_given = opt.arch_given();
  request.weights = opt.weights;
  request.manifest = opt.manifest;
  request.concat_flipped = opt.flip;
  request.prewhiten = opt.prewhiten;
  return request;
}

ResolvedModel resolve_model_files(const ModelOptions& opt) {
  const auto request = model_request(opt);
  if (!opt.store || opt.store->weights != request.weights) return resolve_model(request);
  ResolvedModel model = *opt.store;
  model.manifest = with_embedding_options(std::move(model.manifest), request);
  return model;
}

ModelManifest resolve_manifest(const ModelOptions& opt, const std::filesystem::path& weights) {
  if (!weights.empty() && weights == opt.weights) return resolve_model_files(opt).manifest;
  auto request = model_request(opt);
  request.weights = weights;
  return facemag::resolve_manifest(request);
}

ResolvedModel resolve_model_of_embeddings(const ModelOptions& opt, bool embedded_here) {
  if (embedded_here) return resolve_model_files(opt);
  ResolvedModel model;
  model.weights = opt.weights;
  model.manifest = resolve_manifest(opt, model.weights);
  return model;
}

Embedder load_model(const ModelOptions& opt) { return load_model(resolve_model_files(opt), opt); }

Embedder load_model(const ResolvedModel& model, const ModelOptions& opt) {
  if (opt.batch < 1) throw InvalidInput("--batch must be at least 1");
  spdlog::debug("{} threads", configure_runtime(opt.threads));
  const EmbedderOptions options{parse_precision(opt.precision), !opt.no_verify,
                                opt.int8_calibration};
  if (opt.no_verify)
    spdlog::warn("--no-verify: {} is loaded without checking its SHA-256", model.weights.string());
  spdlog::debug("weights: {}", model.origin);
  Embedder embedder = Embedder::load(model, options);
  for (const auto& note : embedder.load_notes()) spdlog::info("{}", note);
  return embedder;
}

void add_landmarks_option(CLI::App& cmd, std::string& landmarks) {
  cmd.add_option("--landmarks", landmarks,
                 "A dataset's 5-point landmarks (lines 'path x1 y1 ... x5 y5', e.g. LFW's from "
                 "the SphereFace ports): photos listed there are aligned from them, no detection");
}

void add_keep_all_option(CLI::App& cmd, std::string& keep) {
  cmd.add_option("--keep", keep,
                 "Faces per photo: all (default), or one: center (the face the photo is about: the "
                 "largest box nearest the image centre; what a bare --keep means), largest, or "
                 "best (highest quality)")
      ->expected(0, 1);
}

KeepFaces keep_option_value(const std::string& keep) {
  return parse_keep_faces(keep.empty() ? "center" : keep);
}

void add_face_choice_options(CLI::App& cmd, ModelOptions& opt) {
  cmd.add_option("--keep", opt.keep,
                 "Which face of a photo with several: center (the largest box nearest the image "
                 "centre: the face the photo is about), largest, or best (highest magnitude)")
      ->check(CLI::IsMember({"center", "largest", "best"}))
      ->capture_default_str();
  add_landmarks_option(cmd, opt.landmarks);
}

std::optional<LandmarkFile> read_landmarks_option(const std::string& path) {
  if (path.empty()) return std::nullopt;
  auto file = LandmarkFile::read(path);
  spdlog::info("{} photos with landmarks in {}", file.size(), path);
  return file;
}

FaceAligner make_face_aligner(const ModelOptions& opt, ModelManifest manifest) {
  const KeepFaces keep = parse_keep_faces(opt.keep);
  auto landmarks = read_landmarks_option(opt.landmarks);
  if (keep == KeepFaces::kAll) throw InvalidInput("--keep all: this command takes one face");
  return FaceAligner([detector = opt.detector] { return load_detector(detector); },
                     to_mtcnn_options(opt.detector), std::move(manifest), keep,
                     std::move(landmarks));
}

LoadedFaceEncoder::LoadedFaceEncoder(const ModelOptions& opt)
    : detail::OwnedEmbedder{load_model(opt)},
      FaceEncoder(owned_embedder, make_face_aligner(opt, owned_embedder.manifest()), opt.batch) {}

}  // namespace facemag::cli
