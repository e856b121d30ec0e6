// `facemag cluster`: which faces in a set of photos belong to the same person, and how sure
// that is. Photos -> MTCNN -> alignment -> embeddings -> average-linkage groups.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <optional>

#include "cluster_options.hpp"
#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/embedding_cache.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster_photos.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {
namespace {

struct ClusterCommandOptions {
  std::vector<std::string> inputs;
  ModelOptions model;     // only --arch, --weights, --model, the detector and --threads
  double threshold = -2;  // default: the model's own
  std::string out;
  ClusterOptions clustering;
  std::string cache;  // --cache DIR: the embedding cache (none: embed everything)
};

// One line per face: its similarity to its group, the verdict, the photo (and which face in it)
// and the nearest other group.
void print_face(const eval::PhotoFace& face, const PlacedFace& placed) {
  std::string name = face.photo->name.string();
  if (face.record.index > 0) name += " (face " + std::to_string(face.record.index) + ")";
  const char* verdict = verdict_name(placed.verdict);
  if (placed.next_group >= 0) {
    std::printf("  %5.2f  %-6s  %s   [next: group %d at %.2f]\n", placed.similarity, verdict,
                name.c_str(), placed.next_group + 1, placed.next_similarity);
  } else {
    std::printf("  %5.2f  %-6s  %s\n", placed.similarity, verdict, name.c_str());
  }
}

int run_cluster(const ClusterCommandOptions& opt) {
  configure_runtime(opt.model.threads);
  const auto files = input_files(opt.inputs);
  auto model = resolve_model_files(opt.model);
  model.manifest = eval::clustering_manifest(std::move(model.manifest));
  const ModelManifest& manifest = model.manifest;
  const Embedder embedder = Embedder::load(model);
  const MtcnnDetector detector = load_detector(opt.model.detector);
  const FacePipeline pipeline(detector, embedder, to_mtcnn_options(opt.model.detector));
  const double threshold = opt.threshold > -2 ? opt.threshold : clustering_threshold(manifest);

  std::optional<EmbeddingCache> cache;
  if (!opt.cache.empty()) {
    const auto detection = to_mtcnn_options(opt.model.detector);
    cache.emplace(EmbeddingCache::open(
        opt.cache,
        cache_identity_of(embedder, detection, mtcnn_folder(opt.model.detector.weights_dir))));
    std::fprintf(stderr, "cache %s: %zu photo(s), %zu face(s) in %zu chunk(s)\n", opt.cache.c_str(),
                 cache->photos(), cache->faces(), cache->chunks());
  }

  const auto clusters = [&] {
    std::optional<ProgressBar> progress(std::in_place, files.size(), "faces");
    const auto advance = [&](std::size_t inputs) { progress->advance(inputs); };
    ClusterStageBars stages;
    auto clustering = opt.clustering;
    clustering.progress = [&, bars = stages.callback()](const char* stage, std::size_t done,
                                                        std::size_t total) {
      progress.reset();  // every face is embedded: that bar ends where clustering starts
      bars(stage, done, total);
    };
    return cache ? eval::cluster_photos(pipeline, files, threshold, clustering, report_skipped_file,
                                        advance, *cache)
                 : eval::cluster_photos(pipeline, files, threshold, clustering, report_skipped_file,
                                        advance);
  }();
  if (cache) {
    std::fprintf(stderr, "cache %s: %zu photo(s) from the cache, %zu embedded now\n",
                 opt.cache.c_str(), clusters.photos_cached, clusters.photos_embedded);
  }
  const auto& groups = clusters.groups;
  std::printf("model: %s (%s)\n", manifest.name.c_str(), manifest.source.c_str());
  std::printf(
      "%zu faces in %zu photos -> %zu group(s) of the same person (mean cosine similarity >= "
      "%.2f%s)\n",
      clusters.faces.size(), clusters.photos_read, groups.size(), threshold,
      clusters.method == ClusterMethod::kGraph ? ", over each face's nearest neighbours" : "");
  OutputStream records(opt.out.empty() ? "/dev/null" : opt.out);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto& group = groups[g];
    std::printf(
        "\ngroup %zu: %zu face(s)%s\n", g + 1, group.faces.size(),
        group.faces.size() > 1
            ? (", mean similarity " + std::to_string(group.mean_similarity).substr(0, 4)).c_str()
            : "");
    for (const auto& placed : group.faces) {
      const auto& face = clusters.faces[placed.row];
      print_face(face, placed);
      records.stream() << eval::to_json(face, g, placed) << "\n";
    }
  }
  return finish_batch(files.size() - clusters.photos_read, files.size());
}

}  // namespace

Runner add_cluster_command(CLI::App& app) {
  auto opt = std::make_shared<ClusterCommandOptions>();
  auto* cmd = app.add_subcommand("cluster",
                                 "Group the faces in photos by person, and say how sure each is");
  cmd->add_option("inputs", opt->inputs, "Photos, folders (recursive) or @list.txt")->required();
  auto& model = opt->model;
  model.arch = "mobilefacenet";
  model.arch_option = cmd->add_option("--arch", model.arch, "Embedding architecture")
                          ->check(CLI::IsMember(builtin_architectures()))
                          ->capture_default_str();
  cmd->add_option("--weights", model.weights,
                  "Checkpoint (default: the store's default model, or $FACEMAG_HOME/<model>.pth)");
  add_store_model_option(*cmd, model.arch, model.weights, &model.manifest);
  add_detector_options(*cmd, model.detector);
  cmd->add_option("--threshold", opt->threshold,
                  "Mean cosine similarity to join a group (default: the model's)");
  add_cluster_method_options(*cmd, opt->clustering);
  cmd->add_option("--out", opt->out, "Also write one JSON record per face here");
  cmd->add_option("--cache", opt->cache,
                  "Embedding cache folder: photos already in it are not embedded again, new "
                  "ones are added as they are embedded (a killed run resumes)");
  cmd->add_option("--threads", model.threads, "CPU threads (0 = all cores)")->capture_default_str();
  return [cmd, opt]() -> int { return cmd->parsed() ? run_cluster(*opt) : -1; };
}

}  // namespace facemag::cli
