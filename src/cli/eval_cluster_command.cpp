// `facemag eval cluster`: how well facemag's clustering recovers the people of a labelled set of
// faces, at one threshold and over a sweep, optionally leaving poor-quality faces out or
// attaching them last.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/io/image.hpp"

namespace facemag::cli {
namespace {

struct EvalClusterOptions {
  std::vector<std::string> inputs;  // photos (with --by-folder)
  bool by_folder = false;
  int min_per_person = 1;
  std::string features, labels;
  ModelOptions model;
  double threshold = -2;  // default: the model's same-person threshold (0.3 for features)
  std::vector<double> sweep{0.0, 0.8, 0.05};
  double min_quality = 0;
  std::string json, plot;
};

struct LabelledFaces {
  torch::Tensor features;          // N x D
  std::vector<int> identity;       // per row
  std::vector<std::string> names;  // identity names, by number
  std::vector<double> quality;     // raw norms
  double default_threshold = 0.3;
  std::string model;
};

// The photos of people with enough of them (first folder below each input folder = person).
struct PeoplePhotos {
  std::vector<io::InputFile> files;
  std::vector<int> person_of_file;
  std::vector<std::string> names;  // by person number
};

PeoplePhotos people_photos(const EvalClusterOptions& opt) {
  std::map<std::string, std::vector<io::InputFile>> by_person;
  for (auto& file : input_files(opt.inputs)) {
    const auto person = file.top_folder();
    if (!person)
      throw InvalidInput(file.path.string() +
                         ": --by-folder needs photos in one sub-folder per "
                         "person of the folders given");
    by_person[*person].push_back(std::move(file));
  }
  PeoplePhotos out;
  for (auto& [person, list] : by_person) {
    if (static_cast<int>(list.size()) < opt.min_per_person) continue;
    out.names.push_back(person);
    for (auto& f : list) {
      out.files.push_back(std::move(f));
      out.person_of_file.push_back(static_cast<int>(out.names.size()) - 1);
    }
  }
  if (out.files.empty())
    throw InvalidInput("no person has " + std::to_string(opt.min_per_person) + " or more photos");
  return out;
}

// The faces of --by-folder photos, embedded; photos without a face are left out (and reported).
LabelledFaces embed_people(const EvalClusterOptions& opt) {
  auto people = people_photos(opt);
  const auto& files = people.files;
  LabelledFaces out;
  out.names = std::move(people.names);
  const LoadedFaceEncoder encoder(opt.model);
  out.default_threshold = encoder.manifest().same_person_threshold;
  out.model = encoder.manifest().name;
  std::vector<float> rows;
  std::vector<FaceEncoder::Face> all_faces;
  std::size_t failures = 0;
  ProgressBar progress(files.size(), "embed");
  for (std::size_t start = 0; start < files.size(); start += 256) {
    const auto end = std::min(files.size(), start + 256);
    std::vector<cv::Mat> images;
    std::vector<std::string> names;
    std::vector<std::size_t> which;
    for (std::size_t i = start; i < end; ++i) {
      try {
        images.push_back(io::read_image_bgr(files[i].path));
        names.push_back(files[i].path.string());
        which.push_back(i);
      } catch (const InvalidInput& e) {
        report_skipped(files[i].path.string(), e.what());
        ++failures;
      }
    }
    auto faces = encoder.encode(images, names);
    for (std::size_t k = 0; k < faces.size(); ++k) {
      if (!faces[k].embedding) {
        report_skipped(names[k], faces[k].error);
        ++failures;
        continue;
      }
      rows.insert(rows.end(), faces[k].embedding->raw.begin(), faces[k].embedding->raw.end());
      out.identity.push_back(people.person_of_file[which[k]]);
    }
    for (auto& f : faces) all_faces.push_back(std::move(f));
    progress.advance(end - start);
  }
  if (out.identity.empty()) throw InvalidInput("no face found in the given photos");
  const auto summary = face_choice_summary(all_faces, encoder.keep(), opt.model.landmarks);
  std::printf("%zu photos of %zu people (%d or more photos each)%s; %s\n", files.size(),
              out.names.size(), opt.min_per_person,
              failures ? (", " + std::to_string(failures) + " left out").c_str() : "",
              summary.c_str());
  out.features = torch::from_blob(rows.data(),
                                  {static_cast<std::int64_t>(out.identity.size()),
                                   encoder.embedder().output_size()},
                                  torch::kFloat32)
                     .clone();
  return out;
}

LabelledFaces load_faces(const EvalClusterOptions& opt) {
  LabelledFaces out;
  if (!opt.features.empty()) {
    if (opt.labels.empty()) throw InvalidInput("--features needs --labels");
    auto read = eval::read_labelled_features(opt.features, opt.labels);
    out.features = std::move(read.features);
    out.identity = std::move(read.labels.identity);
    out.names = std::move(read.labels.names);
  } else {
    if (!opt.by_folder)
      throw InvalidInput(
          "photos need --by-folder (each sub-folder is a person), or give "
          "--features and --labels");
    out = embed_people(opt);
  }
  const auto norms = out.features.to(torch::kFloat64).norm(2, 1).contiguous();
  out.quality.assign(norms.data_ptr<double>(), norms.data_ptr<double>() + norms.numel());
  return out;
}

nlohmann::json scores_json(const ClusterScores& s) {
  return {
      {"groups", s.groups},
      {"identities", s.identities},
      {"pairwise",
       {{"precision", s.pairwise_precision}, {"recall", s.pairwise_recall}, {"f", s.pairwise_f}}},
      {"bcubed",
       {{"precision", s.bcubed_precision}, {"recall", s.bcubed_recall}, {"f", s.bcubed_f}}},
      {"nmi", s.nmi}};
}

void print_scores(const char* label, const ClusterScores& s) {
  std::printf("  %-22s %6d  %6.4f %6.4f %6.4f   %6.4f %6.4f %6.4f   %6.4f\n", label, s.groups,
              s.pairwise_precision, s.pairwise_recall, s.pairwise_f, s.bcubed_precision,
              s.bcubed_recall, s.bcubed_f, s.nmi);
}

const char* kHeader = "  %-22s groups  pairwise P/R/F          BCubed P/R/F             NMI\n";

// The rows of `keep` (a row subset), as a tensor and their labels.
torch::Tensor rows_of(const torch::Tensor& features, const std::vector<std::int64_t>& keep) {
  return features.index_select(0, torch::tensor(keep, torch::kInt64));
}

// Poor faces attached after the others are clustered: each joins the group with the highest mean
// cosine similarity to its members if that reaches the threshold, else stays alone.
std::vector<int> attach_last(const torch::Tensor& features, const std::vector<std::int64_t>& good,
                             const std::vector<std::int64_t>& poor, const Clustering& clustered,
                             double threshold) {
  std::vector<int> group(static_cast<std::size_t>(features.size(0)), -1);
  for (std::size_t k = 0; k < good.size(); ++k) group[good[k]] = clustered.group[k];
  if (poor.empty()) return group;
  const auto unit = torch::nn::functional::normalize(
      features.to(torch::kFloat64), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto sim = rows_of(unit, poor).matmul(rows_of(unit, good).t()).contiguous();
  int next = clustered.groups;
  for (std::size_t p = 0; p < poor.size(); ++p) {
    std::vector<double> sum(static_cast<std::size_t>(clustered.groups), 0.0);
    std::vector<double> count(sum.size(), 0.0);
    for (std::size_t k = 0; k < good.size(); ++k) {
      sum[clustered.group[k]] += sim[p][k].item<double>();
      ++count[clustered.group[k]];
    }
    int best = -1;
    double best_mean = threshold;
    for (std::size_t g = 0; g < sum.size(); ++g) {
      if (count[g] > 0 && sum[g] / count[g] >= best_mean) {
        best_mean = sum[g] / count[g];
        best = static_cast<int>(g);
      }
    }
    group[poor[p]] = best >= 0 ? best : next++;
  }
  return group;
}

int run_eval_cluster(const EvalClusterOptions& opt) {
  const auto faces = load_faces(opt);
  const double threshold = opt.threshold > -2 ? opt.threshold : faces.default_threshold;
  const auto dendrogram = average_linkage(faces.features);
  std::printf("%lld faces of %zu people; average-linkage clustering on cosine similarity%s\n",
              static_cast<long long>(faces.features.size(0)), faces.names.size(),
              faces.model.empty() ? "" : (", model " + faces.model).c_str());
  std::printf(kHeader, "");

  nlohmann::json result{{"faces", faces.features.size(0)}, {"identities", faces.names.size()}};
  const auto at = score_clustering(dendrogram.cut(threshold).group, faces.identity);
  char label[64];
  std::snprintf(label, sizeof label, "threshold %.3f", threshold);
  print_scores(label, at);
  result["threshold"] = threshold;
  result["scores"] = scores_json(at);

  // Sweep: every threshold of the range from the one hierarchy.
  if (opt.sweep.size() != 3 || !(opt.sweep[2] > 0) || opt.sweep[1] < opt.sweep[0])
    throw InvalidInput("--sweep is FROM,TO,STEP with STEP > 0 and TO >= FROM");
  nlohmann::json sweep = nlohmann::json::array();
  std::vector<double> xs, pairwise_f, bcubed_f, nmi;
  double best_f = -1, best_t = 0;
  for (double t = opt.sweep[0]; t <= opt.sweep[1] + 1e-9; t += opt.sweep[2]) {
    const auto s = score_clustering(dendrogram.cut(t).group, faces.identity);
    sweep.push_back({{"threshold", t}, {"scores", scores_json(s)}});
    xs.push_back(t);
    pairwise_f.push_back(s.pairwise_f);
    bcubed_f.push_back(s.bcubed_f);
    nmi.push_back(s.nmi);
    if (s.bcubed_f > best_f) {
      best_f = s.bcubed_f;
      best_t = t;
    }
  }
  const auto best = score_clustering(dendrogram.cut(best_t).group, faces.identity);
  std::snprintf(label, sizeof label, "best BCubed F %.3f", best_t);
  print_scores(label, best);
  result["sweep"] = sweep;
  result["best_bcubed_threshold"] = best_t;

  if (opt.min_quality > 0) {
    std::vector<std::int64_t> good, poor;
    for (std::size_t i = 0; i < faces.quality.size(); ++i)
      (faces.quality[i] >= opt.min_quality ? good : poor).push_back(static_cast<std::int64_t>(i));
    if (good.empty()) throw InvalidInput("--min-quality leaves no face");
    const auto clustered = cluster_faces(rows_of(faces.features, good), threshold);
    std::vector<int> truth_good;
    for (const auto i : good) truth_good.push_back(faces.identity[i]);
    const auto left_out = score_clustering(clustered.group, truth_good);
    const auto attached = score_clustering(
        attach_last(faces.features, good, poor, clustered, threshold), faces.identity);
    std::printf("quality below %.3f: %zu of %zu faces (%.1f %%)\n", opt.min_quality, poor.size(),
                faces.quality.size(), 100.0 * double(poor.size()) / double(faces.quality.size()));
    print_scores("poor faces left out", left_out);
    print_scores("poor faces last", attached);
    result["quality"] = {{"min_quality", opt.min_quality},
                         {"poor_faces", poor.size()},
                         {"left_out", scores_json(left_out)},
                         {"attached_last", scores_json(attached)}};
  }
  if (!opt.json.empty()) {
    std::ofstream out(opt.json);
    out << result.dump(2) << "\n";
    if (!out) throw InvalidInput(opt.json + ": cannot write");
  }
  if (!opt.plot.empty()) {
    plot::write_png(opt.plot,
                    plot::line_chart({{"pairwise F", xs, pairwise_f, plot::category_color(0)},
                                      {"BCubed F", xs, bcubed_f, plot::category_color(1)},
                                      {"NMI", xs, nmi, plot::category_color(2)}},
                                     {"Clustering against the true identities",
                                      "cosine similarity threshold", "score"}));
    spdlog::info("sweep plot written to {}", opt.plot);
  }
  return kExitOk;
}

}  // namespace

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
                  "same-person threshold, 0.3 for --features)");
  cmd->add_option("--sweep", opt->sweep, "Thresholds FROM,TO,STEP scored in one run")
      ->delimiter(',')
      ->expected(3)
      ->capture_default_str();
  cmd->add_option("--min-quality", opt->min_quality,
                  "Also score with faces below this magnitude left out, and attached last");
  cmd->add_option("--json", opt->json, "Write every number here");
  cmd->add_option("--plot", opt->plot, "Draw the sweep (PNG)");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_cluster(*opt) : -1; };
}

}  // namespace facemag::cli
