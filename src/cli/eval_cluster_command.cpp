// `facemag eval cluster`: how well facemag's clustering recovers the people of a labelled set of
// faces, at one threshold and over a sweep, optionally leaving poor-quality faces out or
// attaching them last.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "cluster_options.hpp"
#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/calibration.hpp"
#include "facemag/eval/cluster_evaluation.hpp"
#include "facemag/model/manifest.hpp"

namespace facemag::cli {
namespace {

struct EvalClusterOptions {
  std::vector<std::string> inputs;  // photos (with --by-folder)
  bool by_folder = false;
  int min_per_person = 1;
  std::string features, labels;
  ModelOptions model;
  double threshold = -2;  // default: the model's clustering threshold (0.3 for features)
  std::vector<double> sweep{0.0, 0.8, 0.05};
  double min_quality = 0;
  ClusterOptions clustering;
  std::string json, plot;
  bool save = false;  // the sweep's best threshold as the model's clustering threshold
  std::string manifest_out;
};

// The faces of --by-folder photos, embedded; photos without a face are left out (and reported).
eval::LabelledFaces embed_people(const EvalClusterOptions& opt) {
  const auto people = eval::people_photos(input_files(opt.inputs), opt.min_per_person);
  const LoadedFaceEncoder encoder(opt.model);
  ProgressBar progress(people.files.size(), "embed");
  auto embedded = eval::embed_people(encoder, people, opt.model.landmarks, report_skipped,
                                     [&](std::size_t n) { progress.advance(n); });
  const auto left_out = embedded.left_out;
  std::printf("%zu photos of %zu people (%d or more photos each)%s; %s\n", people.files.size(),
              people.names.size(), opt.min_per_person,
              left_out ? (", " + std::to_string(left_out) + " left out").c_str() : "",
              embedded.face_choice.c_str());
  return std::move(embedded.faces);
}

eval::LabelledFaces load_faces(const EvalClusterOptions& opt) {
  if (!opt.features.empty()) {
    if (opt.labels.empty()) throw InvalidInput("--features needs --labels");
    return eval::read_labelled_faces(opt.features, opt.labels);
  }
  if (!opt.by_folder)
    throw InvalidInput(
        "photos need --by-folder (each sub-folder is a person), or give "
        "--features and --labels");
  return embed_people(opt);
}

void print_scores(const char* label, const ClusterScores& s) {
  std::printf("  %-22s %6d  %6.4f %6.4f %6.4f   %6.4f %6.4f %6.4f   %6.4f\n", label, s.groups,
              s.pairwise_precision, s.pairwise_recall, s.pairwise_f, s.bcubed_precision,
              s.bcubed_recall, s.bcubed_f, s.nmi);
}

void print_evaluation(const eval::ClusterEvaluation& e, const std::string& model, int neighbours) {
  const std::string how = e.method == ClusterMethod::kGraph
                              ? "graph average-linkage clustering (" + std::to_string(neighbours) +
                                    " nearest neighbours per face)"
                              : "average-linkage clustering";
  std::printf("%zu faces of %zu people; %s on cosine similarity%s\n", e.faces, e.identities,
              how.c_str(), model.empty() ? "" : (", model " + model).c_str());
  std::printf("  %-22s groups  pairwise P/R/F          BCubed P/R/F             NMI\n", "");
  char label[64];
  std::snprintf(label, sizeof label, "threshold %.3f", e.threshold);
  print_scores(label, e.scores);
  std::snprintf(label, sizeof label, "best BCubed F %.3f", e.best_bcubed_threshold);
  print_scores(label, e.best);
  if (const auto& q = e.quality) {
    std::printf("quality below %.3f: %zu of %zu faces (%.1f %%)\n", q->min_quality, q->poor_faces,
                e.faces, 100.0 * double(q->poor_faces) / double(e.faces));
    print_scores("poor faces left out", q->left_out);
    print_scores("poor faces last", q->attached_last);
  }
}

// --save / --manifest-out: the model's manifest with the sweep's best-BCubed threshold as its
// clustering threshold, written beside the weights or where asked.
void save_clustering_threshold(const EvalClusterOptions& opt,
                               const eval::ClusterEvaluation& evaluation) {
  const bool embedded_here = opt.features.empty();
  const auto model = resolve_model_of_embeddings(opt.model, embedded_here);
  std::string data = embedded_here ? "" : opt.features;
  for (const auto& input : opt.inputs) data += (data.empty() ? "" : ", ") + input;
  const auto manifest = eval::with_clustering_calibration(model.manifest, evaluation, data);
  const auto path = eval::calibrated_manifest_path(opt.manifest_out, model.weights);
  save_manifest(path, manifest);
  std::printf("clustering threshold: %.4f (%s)\nmanifest written to %s\n",
              manifest.cluster_threshold, manifest.cluster_calibration.c_str(),
              path.string().c_str());
}

int run_eval_cluster(const EvalClusterOptions& opt) {
  const auto faces = load_faces(opt);
  if (opt.sweep.size() != 3)
    throw InvalidInput("--sweep is FROM,TO,STEP with STEP > 0 and TO >= FROM");
  eval::ClusterEvaluationOptions options{std::nullopt, opt.sweep[0],    opt.sweep[1],
                                         opt.sweep[2], opt.min_quality, opt.clustering};
  if (opt.threshold > -2) options.threshold = opt.threshold;
  ClusterStageBars stages;
  options.clustering.progress = stages.callback();
  const auto evaluation = eval::evaluate_clustering(faces, options);
  print_evaluation(evaluation, faces.model, opt.clustering.graph.k);
  if (!opt.json.empty()) {
    std::ofstream out(opt.json);
    out << eval::to_json(evaluation).dump(2) << "\n";
    if (!out) throw InvalidInput(opt.json + ": cannot write");
  }
  if (!opt.plot.empty()) {
    eval::write_sweep_plot(evaluation, opt.plot);
    spdlog::info("sweep plot written to {}", opt.plot);
  }
  if (opt.save || !opt.manifest_out.empty()) save_clustering_threshold(opt, evaluation);
  return kExitOk;
}

}  // namespace

int run_clustering_calibration(const std::vector<std::string>& people, const ModelOptions& model,
                               bool save, const std::string& manifest_out) {
  EvalClusterOptions opt;
  opt.inputs = people;
  opt.by_folder = true;
  opt.model = model;
  opt.sweep = {0.05, 0.80, 0.01};
  opt.save = save;
  opt.manifest_out = manifest_out;
  return run_eval_cluster(opt);
}

Runner add_eval_cluster_command(CLI::App& evalc) {
  auto opt = std::make_shared<EvalClusterOptions>();
  auto* cmd = evalc.add_subcommand(
      "cluster",
      "Clustering quality against true identities: pairwise and BCubed precision/recall/F, NMI, "
      "over a threshold sweep");
  cmd->add_option("photos", opt->inputs, "Folders with one sub-folder per person (--by-folder)");
  cmd->add_flag("--by-folder", opt->by_folder, "Each sub-folder of the folders given is a person");
  cmd->add_option("--min-per-person", opt->min_per_person,
                  "With --by-folder: leave out people with fewer photos")
      ->capture_default_str();
  cmd->add_option("--features", opt->features, "Feature matrix (.npy) or MagFace feature list");
  cmd->add_option("--labels", opt->labels,
                  "Identity of each feature row (.npy integers, or text: one label per line)");
  add_model_options(*cmd, opt->model, "mobilefacenet");
  add_face_choice_options(*cmd, opt->model);
  cmd->add_option("--threshold", opt->threshold,
                  "Cosine similarity at which groups stop merging (default: the model's "
                  "clustering threshold, 0.3 for --features)");
  cmd->add_option("--sweep", opt->sweep, "Thresholds FROM,TO,STEP scored in one run")
      ->delimiter(',')
      ->expected(3)
      ->capture_default_str();
  cmd->add_option("--min-quality", opt->min_quality,
                  "Also score with faces below this quality (photos: the model's, --features: the "
                  "magnitude) left out, and attached last");
  add_cluster_method_options(*cmd, opt->clustering);
  cmd->add_option("--json", opt->json, "Write every number here");
  cmd->add_option("--plot", opt->plot, "Draw the sweep (PNG)");
  cmd->add_flag("--save", opt->save,
                "Store the sweep's best-BCubed threshold as the model's clustering threshold in "
                "WEIGHTS.manifest.json");
  cmd->add_option("--manifest-out", opt->manifest_out, "Store it in this manifest instead");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_cluster(*opt) : -1; };
}

}  // namespace facemag::cli
