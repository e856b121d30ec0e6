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

int run_cluster(const ClusterOptions& opt) {
  configure_runtime(opt.threads);
  const auto files = input_files(opt.inputs);
  ModelManifest manifest =
      opt.manifest.empty() ? builtin_manifest(opt.arch) : load_manifest(opt.manifest);
  manifest.concat_flipped = manifest.architecture == "mobilefacenet";  // its own protocol
  const Embedder embedder = Embedder::load(manifest, resolve_weights(opt.weights, manifest.name));
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
  const auto embeddings = torch::stack(rows);
  const Clustering clustering = cluster_faces(embeddings, threshold);
  const auto similarity = similarity_to_groups(embeddings, clustering);

  std::printf("model: %s (%s)\n", manifest.name.c_str(), manifest.source.c_str());
  std::printf(
      "%zu faces in %zu photos -> %d group(s) of the same person (mean cosine similarity >= "
      "%.2f)\n",
      faces.size(), files.size() - failures, clustering.groups, threshold);
  OutputStream records(opt.out.empty() ? "/dev/null" : opt.out);
  for (int g = 0; g < clustering.groups; ++g) {
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < faces.size(); ++i) {
      if (clustering.group[i] == g) members.push_back(i);
    }
    const auto sim = [&](std::size_t i, int group) {
      return similarity[static_cast<std::int64_t>(i)][group].item<double>();
    };
    std::stable_sort(members.begin(), members.end(),
                     [&](auto a, auto b) { return sim(a, g) > sim(b, g); });
    double mean = 0;
    for (auto i : members) mean += sim(i, g);
    std::printf(
        "\ngroup %d: %zu face(s)%s\n", g + 1, members.size(),
        members.size() > 1
            ? (", mean similarity " + std::to_string(mean / members.size()).substr(0, 4)).c_str()
            : "");
    for (auto i : members) {
      int other = -1;
      for (int h = 0; h < clustering.groups; ++h) {
        if (h != g && (other < 0 || sim(i, h) > sim(i, other))) other = h;
      }
      const double own = members.size() > 1 ? sim(i, g) : 0.0;
      const double next = other >= 0 ? sim(i, other) : -1.0;
      // "sure": the face is clearly closer to its own group than to any other.
      const char* verdict = members.size() == 1 ? "alone" : own - next >= 0.1 ? "sure" : "unsure";
      std::string name = faces[i].file.name.string();
      if (faces[i].record.index > 0)
        name += " (face " + std::to_string(faces[i].record.index) + ")";
      if (other >= 0) {
        std::printf("  %5.2f  %-6s  %s   [next: group %d at %.2f]\n", own, verdict, name.c_str(),
                    other + 1, next);
      } else {
        std::printf("  %5.2f  %-6s  %s\n", own, verdict, name.c_str());
      }
      nlohmann::json rec{{"path", faces[i].file.path.string()},
                         {"face", faces[i].record.index},
                         {"group", g + 1},
                         {"similarity", own},
                         {"verdict", verdict},
                         {"score", faces[i].record.detection.score}};
      if (other >= 0) {
        rec["next_group"] = other + 1;
        rec["next_similarity"] = next;
      }
      records.stream() << rec << "\n";
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
  cmd->add_option("--arch", opt->arch, "Embedding architecture")
      ->check(CLI::IsMember(builtin_architectures()))
      ->capture_default_str();
  cmd->add_option("--weights", opt->weights, "Checkpoint (default $FACEMAG_HOME/<model>.pth)");
  add_store_model_option(*cmd, opt->arch, opt->weights, &opt->manifest);
  add_detector_options(*cmd, opt->detector);
  cmd->add_option("--threshold", opt->threshold,
                  "Mean cosine similarity to join a group (default: the model's)");
  cmd->add_option("--out", opt->out, "Also write one JSON record per face here");
  cmd->add_option("--threads", opt->threads, "CPU threads (0 = all cores)")->capture_default_str();
  return [cmd, opt]() -> int { return cmd->parsed() ? run_cluster(*opt) : -1; };
}

}  // namespace facemag::cli
