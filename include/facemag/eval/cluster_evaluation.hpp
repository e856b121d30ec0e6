// How well clustering recovers the people of a labelled set of faces (`facemag eval cluster`):
// the faces (a feature matrix with labels, or photos in one folder per person, embedded), the
// scores at one threshold and over a sweep of thresholds cut from one hierarchy, and optionally
// with poor-quality faces left out or attached last. The calls print nothing.
#pragma once

#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "facemag/eval/cluster.hpp"
#include "facemag/eval/knn_cluster.hpp"
#include "facemag/io/image.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::eval {

// Faces with their true identities, to score a clustering against.
struct LabelledFaces {
  torch::Tensor features;          // N x D
  std::vector<int> identity;       // per row, 0-based
  std::vector<std::string> names;  // identity names, by number
  // Each row's quality: read features, the L2 norm (MagFace's quality); photos, the model's
  // (Embedding::quality: magnitude x sharpness for models that are not MagFace-trained).
  std::vector<double> quality;
  double default_threshold = 0.3;  // the model's clustering_threshold(); 0.3 for read features
  std::string model;               // the model's name; empty for read features
};

// A feature matrix and the identity of each row (read_labelled_features), with their quality.
LabelledFaces read_labelled_faces(const std::filesystem::path& features,
                                  const std::filesystem::path& labels);

// The photos of people with at least `min_per_person` of them: the first folder below each input
// folder (io::InputFile::top_folder) is the person. InvalidInput for a photo outside such a folder
// and when nobody has enough photos.
struct PeoplePhotos {
  std::vector<io::InputFile> files;
  std::vector<int> person_of_file;
  std::vector<std::string> names;  // by person number, in name order
};
PeoplePhotos people_photos(std::vector<io::InputFile> files, int min_per_person);

// The photos' faces embedded by `encoder` (one per photo), 256 photos read at a time. A photo that
// cannot be read or has no face is left out and goes to on_skipped (path, reason); on_progress
// gets the number of photos done after each chunk. InvalidInput when no face is found at all.
struct EmbeddedPeople {
  LabelledFaces faces;  // default_threshold and model: the encoder's manifest's
  std::size_t left_out = 0;
  std::string face_choice;  // face_choice_summary() of the encoded faces
};
EmbeddedPeople embed_people(
    const FaceEncoder& encoder, const PeoplePhotos& people, const std::string& landmarks_name,
    const std::function<void(const std::string&, const std::string&)>& on_skipped,
    const std::function<void(std::size_t)>& on_progress);

// Poor faces attached after the good ones were clustered (`clustered`, rows `good`): each joins
// the group of highest mean cosine similarity to its members when that reaches `threshold`, else
// stays alone in a group of its own. The group of every row of `features`.
std::vector<int> attach_last(const torch::Tensor& features, const std::vector<std::int64_t>& good,
                             const std::vector<std::int64_t>& poor, const Clustering& clustered,
                             double threshold);

struct ClusterEvaluationOptions {
  std::optional<double> threshold;  // nullopt: LabelledFaces::default_threshold
  // Thresholds FROM, FROM + STEP, ... up to TO scored from the one hierarchy.
  double sweep_from = 0.0, sweep_to = 0.8, sweep_step = 0.05;
  double min_quality = 0;     // above 0: also score with faces of lower quality left out / last
  ClusterOptions clustering;  // exact or graph average linkage (LinkageHierarchy)
};

struct ClusterEvaluation {
  std::size_t faces = 0, identities = 0;
  ClusterMethod method = ClusterMethod::kExact;  // how the hierarchy was built
  double threshold = 0;                          // the one asked for (or the default)
  ClusterScores scores;                          // at `threshold`
  struct SweepPoint {
    double threshold = 0;
    ClusterScores scores;
  };
  std::vector<SweepPoint> sweep;
  double best_bcubed_threshold = 0;  // the sweep's threshold of highest BCubed F (the first)
  ClusterScores best;
  struct QualitySplit {
    double min_quality = 0;
    std::size_t poor_faces = 0;   // faces below min_quality
    ClusterScores left_out;       // the others clustered alone, at `threshold`
    ClusterScores attached_last;  // every face, the poor ones by attach_last()
  };
  std::optional<QualitySplit> quality;
};

// Average-linkage clustering of the faces scored against their identities. InvalidInput for a
// sweep that is not FROM <= TO with STEP > 0, and for a min_quality that leaves no face.
ClusterEvaluation evaluate_clustering(const LabelledFaces& faces,
                                      const ClusterEvaluationOptions& options);

// {"groups", "identities", "pairwise": {"precision", "recall", "f"}, "bcubed": {...}, "nmi"}.
nlohmann::json to_json(const ClusterScores& scores);
// {"faces", "identities", "method" ("exact" | "graph"), "threshold", "scores", "sweep":
// [{"threshold", "scores"}],
//  "best_bcubed_threshold", and "quality": {"min_quality", "poor_faces", "left_out",
//  "attached_last"} when scored}.
nlohmann::json to_json(const ClusterEvaluation& evaluation);

// The sweep drawn: pairwise F, BCubed F and NMI against the threshold, as a PNG.
void write_sweep_plot(const ClusterEvaluation& evaluation, const std::filesystem::path& png);

}  // namespace facemag::eval
