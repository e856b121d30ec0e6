// `facemag embed` / `facemag quality`: embeddings and MagFace quality of faces (the library's
// FileEmbedder), printed as JSON Lines and optionally an .npy matrix.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/embed/face_quality.hpp"
#include "facemag/embed_files.hpp"
#include "facemag/embed_records.hpp"
#include "facemag/error.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"
#include "facemag/shard.hpp"

namespace facemag::cli {
namespace {

struct EmbedOptions {
  std::vector<std::string> inputs;
  ModelOptions model;  // --arch, --weights, --manifest, --flip, detector, --batch, --threads...
  bool aligned = false;
  std::string out;
  std::string npy;
  bool embeddings = false;
  bool sort = false;
  std::string keep = "all";
  std::string landmarks;
  int classify = 0;  // top-k classes to print (0: no classification)
  std::string labels;
  std::string shard;   // --shard K/N | auto | auto/N: this job's part of the inputs
  bool merge = false;  // --merge: the inputs are shards' --npy outputs, merged into --npy
};

// --out may not be the file --npy writes its row index to.
void check_outputs(const EmbedOptions& opt) {
  if (!opt.npy.empty() && !opt.out.empty() && opt.out != "-" &&
      std::filesystem::weakly_canonical(opt.out) ==
          std::filesystem::weakly_canonical(npy_row_index_path(opt.npy)))
    throw InvalidInput("--out " + opt.out + " is where --npy writes its row index: choose another");
}

int run_merge(const EmbedOptions& opt) {
  if (opt.npy.empty()) throw InvalidInput("--merge needs --npy OUT.npy (where the parts merge)");
  std::vector<std::filesystem::path> parts(opt.inputs.begin(), opt.inputs.end());
  merge_embeddings(parts, opt.npy);
  std::fprintf(stderr, "merged %zu part(s) into %s\n", parts.size(), opt.npy.c_str());
  return kExitOk;
}

int run_embed(const EmbedOptions& opt, bool vectors_by_default) {
  if (opt.merge) return run_merge(opt);
  const ModelOptions& model = opt.model;
  const auto files = input_files(opt.inputs, opt.shard);
  const Embedder embedder = load_model(model);
  const ModelManifest& manifest = embedder.manifest();
  if (!manifest.magnitude_is_quality) {
    spdlog::info(
        "{} is not MagFace-trained: its quality is the magnitude times the crop's "
        "sharpness factor (quality_source {})",
        manifest.name, quality_source(manifest));
  }
  std::optional<MtcnnDetector> detector;
  if (!opt.aligned) detector = load_detector(model.detector);
  EmbedFilesOptions options;
  options.landmarks = read_landmarks_option(opt.landmarks);
  const KeepFaces keep = keep_option_value(opt.keep);
  options.keep = keep;
  options.classify = opt.classify;
  options.detection = to_mtcnn_options(model.detector);
  options.chunk = static_cast<std::size_t>(model.batch);
  check_outputs(opt);
  OutputStream out(opt.out);
  FaceRecordWriter writer(out.stream(), static_cast<std::size_t>(embedder.output_size()),
                          {manifest.name, vectors_by_default || opt.embeddings, opt.sort, opt.npy,
                           quality_source(manifest)});
  if (!opt.labels.empty()) options.labels = read_class_labels(opt.labels);
  const FileEmbedder file_embedder(embedder, detector ? &*detector : nullptr, std::move(options));

  std::vector<std::filesystem::path> paths;
  for (const auto& file : files) paths.push_back(file.path);
  std::size_t failures = 0, faceless = 0, several = 0, detected = 0;
  ProgressBar progress(files.size(), opt.npy.empty() ? "embed" : "embed -> " + opt.npy);
  file_embedder.embed(paths, [&](EmbeddedFiles chunk) {
    for (const auto& failure : chunk.failures) report_skipped(failure.path, failure.reason);
    for (const auto& path : chunk.faceless) spdlog::info("no face in {}", path);
    for (auto& face : chunk.faces) writer.write(std::move(face));
    out.stream().flush();
    progress.advance(chunk.files);
    failures += chunk.failures.size();
    faceless += chunk.faceless.size();
    several += chunk.several;
    detected += chunk.detected;
  });
  writer.finish();
  if (faceless) spdlog::info("{} of {} photo(s) had no face", faceless, files.size());
  if (keep != KeepFaces::kAll && detected > 0)
    spdlog::info("{}", face_choice_summary(several, detected, keep));
  return finish_batch(failures, files.size());
}

void add_common_options(CLI::App& cmd, EmbedOptions& opt) {
  cmd.add_option("inputs", opt.inputs, "Image files, folders (recursive) or @list.txt")->required();
  cmd.add_flag("--aligned", opt.aligned,
               "Inputs are already aligned crops of the model's input size (MagFace 112x112, "
               "MobileFaceNet 96x112, FaceNet 160x160; else: detect and align faces in photos)");
  add_keep_all_option(cmd, opt.keep);
  add_landmarks_option(cmd, opt.landmarks);
  cmd.add_option("--classify", opt.classify,
                 "Also print the top-k classes of a model with a classifier head")
      ->capture_default_str();
  cmd.add_option("--labels", opt.labels,
                 "Class names for --classify (one per line, or CSV with the name last)");
  cmd.add_flag("--prewhiten", opt.model.prewhiten,
               "Standardise each face by its own mean and std (facenet-pytorch prewhiten)");
  add_model_options(cmd, opt.model, "iresnet100");
  cmd.add_option("--out", opt.out, "Write JSON Lines here instead of stdout");
  cmd.add_option(
      "--npy", opt.npy,
      "Also write the N x D float32 embedding matrix (.npy) and its row index (.jsonl) beside it");
  cmd.add_flag("--sort", opt.sort, "List faces by quality, best first");
  add_shard_option(cmd, opt.shard);
  cmd.add_flag("--merge", opt.merge,
               "The inputs are the --npy outputs of shards: merge them into --npy, rows in file "
               "order");
}

}  // namespace

Runner add_embed_commands(CLI::App& app) {
  auto embed_opt = std::make_shared<EmbedOptions>();
  auto quality_opt = std::make_shared<EmbedOptions>();
  auto* embed = app.add_subcommand("embed", "Embeddings (raw vector and its magnitude) of faces");
  add_common_options(*embed, *embed_opt);
  auto* quality = app.add_subcommand("quality", "MagFace quality (feature magnitude) of faces");
  add_common_options(*quality, *quality_opt);
  quality->add_flag("--embeddings", quality_opt->embeddings,
                    "Include the raw vectors in the records");
  return [&app, embed, quality, embed_opt, quality_opt]() -> int {
    if (embed->parsed()) return run_embed(*embed_opt, true);
    if (quality->parsed()) return run_embed(*quality_opt, false);
    return -1;
  };
}

}  // namespace facemag::cli
