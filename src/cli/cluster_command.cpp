// `facemag cluster`: which faces in a set of photos belong to the same person, and how sure
// that is. Photos -> MTCNN -> alignment -> embeddings -> average-linkage groups.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster.hpp"
#include "facemag/io/image.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {
namespace {

struct ClusterOptions {
  std::vector<std::string> inputs;
  std::string arch = "mobilefacenet";
  CLI::Option* arch_option = nullptr;
  std::string weights;
  std::string manifest;  // set by --model
  DetectorOptions detector;
  double threshold = -2;  // default: the model's own
  std::string out;
  int threads = 0;
};

struct Face {
  io::InputFile file;
  FaceRecord record;
};

// One line per face: its similarity to its group, the verdict, the photo (and which face in it)
// and the nearest other group.
void print_face(const Face& face, const PlacedFace& placed) {
  std::string name = face.file.name.string();
  if (face.record.index > 0) name += " (face " + std::to_string(face.record.index) + ")";
  const char* verdict = verdict_name(placed.verdict);
  if (placed.next_group >= 0) {
    std::printf("  %5.2f  %-6s  %s   [next: group %d at %.2f]\n", placed.similarity, verdict,
                name.c_str(), placed.next_group + 1, placed.next_similarity);
  } else {
    std::printf("  %5.2f  %-6s  %s\n", placed.similarity, verdict, name.c_str());
  }
}

nlohmann::json face_record(const Face& face, int group, const PlacedFace& placed) {
  nlohmann::json rec{{"path", face.file.path.string()},
                     {"face", face.record.index},
                     {"group", group + 1},
                     {"similarity", placed.similarity},
                     {"verdict", verdict_name(placed.verdict)},
                     {"score", face.record.detection.score}};
  if (placed.next_group >= 0) {
    rec["next_group"] = placed.next_group + 1;
    rec["next_similarity"] = placed.next_similarity;
  }
  return rec;
}

int run_cluster(const ClusterOptions& opt) {
  configure_runtime(opt.threads);
  const auto files = input_files(opt.inputs);
  ModelRequest request;
  request.architecture = opt.arch;
  request.architecture_given = opt.arch_option && opt.arch_option->count() > 0;
  request.weights = opt.weights;
  request.manifest = opt.manifest;
  auto model = resolve_model(request);
  ModelManifest& manifest = model.manifest;
  manifest.concat_flipped = manifest.architecture == "mobilefacenet";  // its own protocol
  const Embedder embedder = Embedder::load(model);
  const MtcnnDetector detector = load_detector(opt.detector);
  const FacePipeline pipeline(detector, embedder, to_mtcnn_options(opt.detector));
  const double threshold = opt.threshold > -2 ? opt.threshold : manifest.same_person_threshold;

  std::vector<Face> faces;
  const std::size_t failures =
      for_each_photo_chunk(files, pipeline, KeepFaces::kAll, "faces",
                           [&](const std::vector<const io::InputFile*>& which,
                               std::vector<std::vector<FaceRecord>>& records) {
                             for (std::size_t k = 0; k < records.size(); ++k) {
                               for (auto& r : records[k])
                                 faces.push_back({*which[k], std::move(r)});
                             }
                           });
  if (faces.empty()) throw InvalidInput("no faces found in the given photos");
  std::vector<torch::Tensor> rows;
  for (const auto& f : faces) rows.push_back(torch::tensor(f.record.embedding.raw));
  const auto groups = group_faces(torch::stack(rows), threshold);

  std::printf("model: %s (%s)\n", manifest.name.c_str(), manifest.source.c_str());
  std::printf(
      "%zu faces in %zu photos -> %zu group(s) of the same person (mean cosine similarity >= "
      "%.2f)\n",
      faces.size(), files.size() - failures, groups.size(), threshold);
  OutputStream records(opt.out.empty() ? "/dev/null" : opt.out);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto& group = groups[g];
    std::printf(
        "\ngroup %zu: %zu face(s)%s\n", g + 1, group.faces.size(),
        group.faces.size() > 1
            ? (", mean similarity " + std::to_string(group.mean_similarity).substr(0, 4)).c_str()
            : "");
    for (const auto& placed : group.faces) {
      const Face& face = faces[placed.row];
      print_face(face, placed);
      records.stream() << face_record(face, static_cast<int>(g), placed) << "\n";
    }
  }
  return finish_batch(failures, files.size());
}

}  // namespace

Runner add_cluster_command(CLI::App& app) {
  auto opt = std::make_shared<ClusterOptions>();
  auto* cmd = app.add_subcommand("cluster",
                                 "Group the faces in photos by person, and say how sure each is");
  cmd->add_option("inputs", opt->inputs, "Photos, folders (recursive) or @list.txt")->required();
  opt->arch_option = cmd->add_option("--arch", opt->arch, "Embedding architecture")
                         ->check(CLI::IsMember(builtin_architectures()))
                         ->capture_default_str();
  cmd->add_option("--weights", opt->weights,
                  "Checkpoint (default: the store's default model, or $FACEMAG_HOME/<model>.pth)");
  add_store_model_option(*cmd, opt->arch, opt->weights, &opt->manifest);
  add_detector_options(*cmd, opt->detector);
  cmd->add_option("--threshold", opt->threshold,
                  "Mean cosine similarity to join a group (default: the model's)");
  cmd->add_option("--out", opt->out, "Also write one JSON record per face here");
  cmd->add_option("--threads", opt->threads, "CPU threads (0 = all cores)")->capture_default_str();
  return [cmd, opt]() -> int { return cmd->parsed() ? run_cluster(*opt) : -1; };
}

}  // namespace facemag::cli
