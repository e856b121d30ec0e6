#include "facemag/gallery/evaluate.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "facemag/eval/verification.hpp"
#include "facemag/gallery/decide.hpp"

namespace facemag::gallery {

std::vector<IdentificationProbe> probes_from_features(const eval::LabelledFeatures& features) {
  const auto matrix = features.features.to(torch::kFloat32).contiguous();
  std::vector<IdentificationProbe> probes;
  for (std::int64_t i = 0; i < matrix.size(0); ++i) {
    const float* v = matrix[i].data_ptr<float>();
    IdentificationProbe p;
    p.person =
        features.labels
            .names[static_cast<std::size_t>(features.labels.identity[static_cast<std::size_t>(i)])];
    p.embedding.assign(v, v + matrix.size(1));
    double sum = 0;
    for (const float x : p.embedding) sum += double(x) * x;
    p.quality = std::sqrt(sum);
    probes.push_back(std::move(p));
  }
  return probes;
}

std::vector<IdentificationProbe> probes_from_photos(
    const FacePipeline& pipeline, const std::vector<io::InputFile>& files, KeepFaces keep,
    const FailureSink& on_failure, const std::function<void(std::size_t inputs)>& per_chunk) {
  std::vector<IdentificationProbe> probes;
  for_each_photo_faces(pipeline, files, keep, on_failure, [&](const PhotoChunk& chunk) {
    for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
      const auto person = chunk.photos[k]->top_folder();
      if (!person) continue;
      for (const auto& r : chunk.faces[k])
        probes.push_back({*person, r.embedding.raw, r.embedding.quality});
    }
    if (per_chunk) per_chunk(chunk.inputs);
  });
  return probes;
}

namespace {

// The probe's outcome against the gallery's `depth` nearest people.
eval::ProbeOutcome outcome_of(const Gallery& gallery, const std::set<std::string>& enrolled,
                              const IdentificationProbe& probe, int depth) {
  eval::ProbeOutcome o;
  o.mated = enrolled.count(probe.person) > 0;
  const auto candidates = gallery.search(probe.embedding, depth);
  if (!candidates.empty()) o.top_score = candidates.front().template_similarity;
  for (std::size_t r = 0; r < candidates.size(); ++r) {
    if (candidates[r].person == probe.person) {
      o.rank = static_cast<int>(r + 1);
      break;
    }
  }
  return o;
}

}  // namespace

IdentificationEvaluation evaluate_identification(const Gallery& gallery,
                                                 const std::vector<IdentificationProbe>& probes,
                                                 const IdentificationEvalOptions& options) {
  std::set<std::string> enrolled;
  for (const auto& p : gallery.persons()) enrolled.insert(p.name);
  DecisionRules rules = decision_rules(gallery.model(), options.min_quality);
  if (options.reject_rate > 0) {
    std::vector<double> qualities;
    for (const auto& p : probes) qualities.push_back(p.quality);
    rules.quality_gate = eval::quality_threshold(qualities, options.reject_rate);
  }
  const int depth = *std::max_element(options.ranks.begin(), options.ranks.end());
  std::vector<eval::ProbeOutcome> all, kept;
  for (const auto& p : probes) {
    all.push_back(outcome_of(gallery, enrolled, p, depth));
    if (rules.passes_gate(p.quality)) kept.push_back(all.back());
  }
  IdentificationEvaluation out;
  out.probes = probes.size();
  out.enrolled_people = enrolled.size();
  out.quality_gate = rules.quality_gate;
  out.kept = kept.size();
  out.all = eval::identification_metrics(all, options.ranks, options.fpirs);
  if (rules.quality_gate > 0)
    out.gated = eval::identification_metrics(kept, options.ranks, options.fpirs);
  return out;
}

}  // namespace facemag::gallery
