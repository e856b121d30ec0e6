#include "encoder.hpp"

#include <spdlog/spdlog.h>

#include "facemag/error.hpp"
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
  cmd.add_option("--arch", opt.arch, "Network architecture")
      ->check(CLI::IsMember(builtin_architectures()))
      ->capture_default_str();
  cmd.add_option("--weights", opt.weights, "Checkpoint (default $FACEMAG_HOME/<model>.pth)");
  cmd.add_option("--manifest", opt.manifest,
                 "Model manifest JSON (default: WEIGHTS.manifest.json when it exists)");
  add_store_model_option(cmd, opt.arch, opt.weights, &opt.manifest);
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
  EmbedderOptions options{parse_precision(opt.precision)};
  options.int8_calibration = opt.int8_calibration;
  if (opt.no_verify) {
    options.verify_sha256 = false;
    spdlog::warn("--no-verify: {} is loaded without checking its SHA-256", weights.string());
  }
  Embedder embedder = Embedder::load(resolve_manifest(opt, weights), weights, options);
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

std::string face_choice_summary(std::size_t several, std::size_t detected, KeepFaces keep) {
  return std::to_string(several) + " of " + std::to_string(detected) +
         " photo(s) showed several faces; kept " + keep_faces_rule(keep) + " ('" +
         keep_faces_name(keep) + "')";
}

std::string face_choice_summary(const std::vector<FaceEncoder::Face>& faces, KeepFaces keep,
                                const std::string& landmarks) {
  std::size_t several = 0, detected = 0, from_landmarks = 0;
  for (const auto& f : faces) {
    from_landmarks += f.source == FaceEncoder::Face::Source::kLandmarks;
    detected += f.source == FaceEncoder::Face::Source::kDetector && f.faces_in_photo > 0;
    several += f.faces_in_photo > 1;
  }
  std::string out;
  if (from_landmarks)
    out = std::to_string(from_landmarks) + " photo(s) aligned from the landmarks in " + landmarks;
  if (detected) out += (out.empty() ? "" : "; ") + face_choice_summary(several, detected, keep);
  return out;
}

FaceAligner::FaceAligner(const ModelOptions& opt, ModelManifest manifest)
    : detector_options_(opt.detector),
      manifest_(std::move(manifest)),
      keep_(parse_keep_faces(opt.keep)),
      landmarks_(read_landmarks_option(opt.landmarks)) {
  if (keep_ == KeepFaces::kAll) throw InvalidInput("--keep all: this command takes one face");
}

std::vector<FaceAligner::Candidates> FaceAligner::align(
    const std::vector<cv::Mat>& images, const std::vector<std::string>& names) const {
  const auto& m = manifest_;
  std::vector<Candidates> out(images.size());
  std::vector<std::size_t> to_detect;
  for (std::size_t i = 0; i < images.size(); ++i) {
    if (images[i].rows == m.input_height && images[i].cols == m.input_width) {
      out[i].crops.push_back(images[i]);
    } else if (landmarks_) {
      out[i].source = FaceSource::kLandmarks;
      const Landmarks5* marks = landmarks_->find(names[i]);
      if (!marks) {
        out[i].error = names[i] + ": no landmarks in " + landmarks_->source().string();
        continue;
      }
      out[i].crops.push_back(crop_for_model(images[i], detection_from_landmarks(*marks), m));
    } else {
      to_detect.push_back(i);
    }
  }
  if (to_detect.empty()) return out;
  if (!detector_) detector_ = std::make_unique<MtcnnDetector>(load_detector(detector_options_));
  std::vector<cv::Mat> photos;
  for (const std::size_t i : to_detect) photos.push_back(images[i]);
  const auto detections = detector_->detect_batch(photos, to_mtcnn_options(detector_options_));
  for (std::size_t k = 0; k < to_detect.size(); ++k) {
    const std::size_t i = to_detect[k];
    const auto& found = detections[k];
    out[i].source = FaceSource::kDetector;
    out[i].faces_in_photo = found.size();
    if (found.empty()) {
      out[i].error = names[i] + ": no face found";
      continue;
    }
    // kBest needs every face's embedding; the other rules choose from the boxes.
    std::size_t first = 0, last = found.size();
    if (keep_ == KeepFaces::kLargest) last = 1;  // MTCNN lists the largest face first
    if (keep_ == KeepFaces::kCenter) {
      first = central_face(found, images[i].cols, images[i].rows);
      last = first + 1;
    }
    for (std::size_t f = first; f < last; ++f)
      out[i].crops.push_back(crop_for_model(images[i], found[f], m));
  }
  return out;
}

FaceEncoder::FaceEncoder(const ModelOptions& opt)
    : opt_(opt), embedder_(load_model(opt)), aligner_(opt, embedder_.manifest()) {}

std::vector<FaceEncoder::Face> FaceEncoder::encode(const std::vector<cv::Mat>& images,
                                                   const std::vector<std::string>& names) const {
  const auto candidates = aligner_.align(images, names);
  std::vector<Face> faces(images.size());
  std::vector<std::size_t> owner;  // image of each crop
  std::vector<cv::Mat> crops;
  for (std::size_t i = 0; i < images.size(); ++i) {
    faces[i].error = candidates[i].error;
    faces[i].source = candidates[i].source;
    faces[i].faces_in_photo = candidates[i].faces_in_photo;
    for (const auto& crop : candidates[i].crops) {
      crops.push_back(crop);
      owner.push_back(i);
    }
  }
  std::vector<Embedding> embeddings;
  for (std::size_t start = 0; start < crops.size(); start += static_cast<std::size_t>(opt_.batch)) {
    const std::size_t end = std::min(crops.size(), start + static_cast<std::size_t>(opt_.batch));
    for (auto& e : embedder_.embed({crops.begin() + start, crops.begin() + end}))
      embeddings.push_back(std::move(e));
  }
  for (std::size_t c = 0; c < crops.size(); ++c) {
    Face& face = faces[owner[c]];
    if (face.embedding && face.embedding->magnitude >= embeddings[c].magnitude) continue;
    face.embedding = std::move(embeddings[c]);
    face.crop = crops[c];
  }
  return faces;
}

}  // namespace facemag::cli
