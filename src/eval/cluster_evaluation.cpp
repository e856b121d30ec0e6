#include "facemag/eval/cluster_evaluation.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "facemag/error.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"

namespace facemag::eval {
namespace {

// Each row's L2 norm.
std::vector<double> row_norms(const torch::Tensor& features) {
  const auto norms = features.to(torch::kFloat64).norm(2, 1).contiguous();
  return {norms.data_ptr<double>(), norms.data_ptr<double>() + norms.numel()};
}

torch::Tensor rows_of(const torch::Tensor& features, const std::vector<std::int64_t>& keep) {
  return features.index_select(0, torch::tensor(keep, torch::kInt64));
}

// The faces of one chunk of photos embedded: rows appended to `rows`, identities to `out`.
void embed_chunk(const FaceEncoder& encoder, const PeoplePhotos& people, std::size_t start,
                 std::size_t end,
                 const std::function<void(const std::string&, const std::string&)>& on_skipped,
                 std::vector<float>& rows, EmbeddedPeople& out,
                 std::vector<FaceEncoder::Face>& all_faces) {
  std::vector<cv::Mat> images;
  std::vector<std::string> names;
  std::vector<std::size_t> which;
  for (std::size_t i = start; i < end; ++i) {
    try {
      images.push_back(io::read_image_bgr(people.files[i].path));
      names.push_back(people.files[i].path.string());
      which.push_back(i);
    } catch (const InvalidInput& e) {
      on_skipped(people.files[i].path.string(), e.what());
      ++out.left_out;
    }
  }
  auto faces = encoder.encode(images, names);
  for (std::size_t k = 0; k < faces.size(); ++k) {
    if (!faces[k].embedding) {
      on_skipped(names[k], faces[k].error);
      ++out.left_out;
      continue;
    }
    rows.insert(rows.end(), faces[k].embedding->raw.begin(), faces[k].embedding->raw.end());
    out.faces.identity.push_back(people.person_of_file[which[k]]);
    out.faces.quality.push_back(faces[k].embedding->quality);
  }
  for (auto& f : faces) all_faces.push_back(std::move(f));
}

// The quality split of `options.min_quality`: poor faces left out, and attached last.
ClusterEvaluation::QualitySplit score_without_poor_faces(const LabelledFaces& faces,
                                                         double threshold, double min_quality,
                                                         const ClusterOptions& clustering) {
  std::vector<std::int64_t> good, poor;
  for (std::size_t i = 0; i < faces.quality.size(); ++i)
    (faces.quality[i] >= min_quality ? good : poor).push_back(static_cast<std::int64_t>(i));
  if (good.empty()) throw InvalidInput("--min-quality leaves no face");
  const auto clustered =
      LinkageHierarchy(rows_of(faces.features, good), threshold, clustering).cut(threshold);
  std::vector<int> truth_good;
  for (const auto i : good) truth_good.push_back(faces.identity[i]);
  ClusterEvaluation::QualitySplit split;
  split.min_quality = min_quality;
  split.poor_faces = poor.size();
  split.left_out = score_clustering(clustered.group, truth_good);
  split.attached_last = score_clustering(
      attach_last(faces.features, good, poor, clustered, threshold), faces.identity);
  return split;
}

}  // namespace

LabelledFaces read_labelled_faces(const std::filesystem::path& features,
                                  const std::filesystem::path& labels) {
  auto read = read_labelled_features(features, labels);
  LabelledFaces out;
  out.features = std::move(read.features);
  out.identity = std::move(read.labels.identity);
  out.names = std::move(read.labels.names);
  out.quality = row_norms(out.features);
  return out;
}

PeoplePhotos people_photos(std::vector<io::InputFile> files, int min_per_person) {
  std::map<std::string, std::vector<io::InputFile>> by_person;
  for (auto& file : files) {
    const auto person = file.top_folder();
    if (!person)
      throw InvalidInput(file.path.string() +
                         ": --by-folder needs photos in one sub-folder per "
                         "person of the folders given");
    by_person[*person].push_back(std::move(file));
  }
  PeoplePhotos out;
  for (auto& [person, list] : by_person) {
    if (static_cast<int>(list.size()) < min_per_person) continue;
    out.names.push_back(person);
    for (auto& f : list) {
      out.files.push_back(std::move(f));
      out.person_of_file.push_back(static_cast<int>(out.names.size()) - 1);
    }
  }
  if (out.files.empty())
    throw InvalidInput("no person has " + std::to_string(min_per_person) + " or more photos");
  return out;
}

EmbeddedPeople embed_people(
    const FaceEncoder& encoder, const PeoplePhotos& people, const std::string& landmarks_name,
    const std::function<void(const std::string&, const std::string&)>& on_skipped,
    const std::function<void(std::size_t)>& on_progress) {
  constexpr std::size_t kChunk = 256;  // photos read and encoded together
  EmbeddedPeople out;
  out.faces.names = people.names;
  out.faces.default_threshold = clustering_threshold(encoder.manifest());
  out.faces.model = encoder.manifest().name;
  std::vector<float> rows;
  std::vector<FaceEncoder::Face> all_faces;
  const auto& files = people.files;
  for (std::size_t start = 0; start < files.size(); start += kChunk) {
    const auto end = std::min(files.size(), start + kChunk);
    embed_chunk(encoder, people, start, end, on_skipped, rows, out, all_faces);
    on_progress(end - start);
  }
  if (out.faces.identity.empty()) throw InvalidInput("no face found in the given photos");
  out.face_choice = face_choice_summary(all_faces, encoder.keep(), landmarks_name);
  out.faces.features = torch::from_blob(rows.data(),
                                        {static_cast<std::int64_t>(out.faces.identity.size()),
                                         encoder.embedder().output_size()},
                                        torch::kFloat32)
                           .clone();
  return out;
}

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

ClusterEvaluation evaluate_clustering(const LabelledFaces& faces,
                                      const ClusterEvaluationOptions& options) {
  if (!(options.sweep_step > 0) || options.sweep_to < options.sweep_from)
    throw InvalidInput("--sweep is FROM,TO,STEP with STEP > 0 and TO >= FROM");
  ClusterEvaluation out;
  out.faces = static_cast<std::size_t>(faces.features.size(0));
  out.identities = faces.names.size();
  out.threshold = options.threshold.value_or(faces.default_threshold);
  const LinkageHierarchy dendrogram(faces.features, std::min(options.sweep_from, out.threshold),
                                    options.clustering);
  out.method = dendrogram.method();
  out.scores = score_clustering(dendrogram.cut(out.threshold).group, faces.identity);
  // Every threshold of the sweep, cut from the one hierarchy.
  double best_f = -1;
  for (double t = options.sweep_from; t <= options.sweep_to + 1e-9; t += options.sweep_step) {
    out.sweep.push_back({t, score_clustering(dendrogram.cut(t).group, faces.identity)});
    if (out.sweep.back().scores.bcubed_f > best_f) {
      best_f = out.sweep.back().scores.bcubed_f;
      out.best_bcubed_threshold = t;
    }
  }
  out.best = score_clustering(dendrogram.cut(out.best_bcubed_threshold).group, faces.identity);
  if (options.min_quality > 0)
    out.quality =
        score_without_poor_faces(faces, out.threshold, options.min_quality, options.clustering);
  return out;
}

nlohmann::json to_json(const ClusterScores& s) {
  return {
      {"groups", s.groups},
      {"identities", s.identities},
      {"pairwise",
       {{"precision", s.pairwise_precision}, {"recall", s.pairwise_recall}, {"f", s.pairwise_f}}},
      {"bcubed",
       {{"precision", s.bcubed_precision}, {"recall", s.bcubed_recall}, {"f", s.bcubed_f}}},
      {"nmi", s.nmi}};
}

nlohmann::json to_json(const ClusterEvaluation& e) {
  nlohmann::json out{
      {"faces", e.faces}, {"identities", e.identities}, {"method", cluster_method_name(e.method)}};
  out["threshold"] = e.threshold;
  out["scores"] = to_json(e.scores);
  nlohmann::json sweep = nlohmann::json::array();
  for (const auto& point : e.sweep)
    sweep.push_back({{"threshold", point.threshold}, {"scores", to_json(point.scores)}});
  out["sweep"] = sweep;
  out["best_bcubed_threshold"] = e.best_bcubed_threshold;
  if (e.quality) {
    out["quality"] = {{"min_quality", e.quality->min_quality},
                      {"poor_faces", e.quality->poor_faces},
                      {"left_out", to_json(e.quality->left_out)},
                      {"attached_last", to_json(e.quality->attached_last)}};
  }
  return out;
}

void write_sweep_plot(const ClusterEvaluation& evaluation, const std::filesystem::path& png) {
  std::vector<double> xs, pairwise_f, bcubed_f, nmi;
  for (const auto& point : evaluation.sweep) {
    xs.push_back(point.threshold);
    pairwise_f.push_back(point.scores.pairwise_f);
    bcubed_f.push_back(point.scores.bcubed_f);
    nmi.push_back(point.scores.nmi);
  }
  plot::write_png(png, plot::line_chart({{"pairwise F", xs, pairwise_f, plot::category_color(0)},
                                         {"BCubed F", xs, bcubed_f, plot::category_color(1)},
                                         {"NMI", xs, nmi, plot::category_color(2)}},
                                        {"Clustering against the true identities",
                                         "cosine similarity threshold", "score"}));
}

}  // namespace facemag::eval
