#include "facemag/gallery/decide.hpp"

#include "facemag/io/sha256.hpp"

namespace facemag::gallery {

ModelBinding binding_of(const Embedder& embedder, const std::filesystem::path& weights) {
  const auto& m = embedder.manifest();
  ModelBinding b;
  b.model_name = m.name;
  b.architecture = m.architecture;
  b.embedding_size = embedder.output_size();
  b.weights_sha256 = m.sha256.empty() ? io::sha256_file(weights) : m.sha256;
  b.magnitude_is_quality = m.magnitude_is_quality;
  b.same_person_threshold = m.same_person_threshold;
  b.quality_threshold = m.quality_threshold;
  b.cluster_threshold = clustering_threshold(m);
  b.weights_path = std::filesystem::absolute(weights).lexically_normal().string();
  return b;
}

ModelRequest model_request_of(const ModelBinding& binding) {
  ModelRequest request;
  request.weights = binding.weights_path;
  request.architecture = binding.architecture;
  request.architecture_given = true;
  request.concat_flipped =
      binding.embedding_size == 2 * builtin_manifest(binding.architecture).embedding_size;
  return request;
}

ModelRequest gallery_model_request(ModelRequest given, const ModelBinding& binding) {
  if (given.weights.empty() && given.manifest.empty() && given.store_name.empty()) {
    const auto own = model_request_of(binding);
    given.weights = own.weights;
    given.architecture = own.architecture;
    given.architecture_given = true;
    given.concat_flipped = own.concat_flipped;
  } else if (!given.architecture_given) {
    given.architecture = binding.architecture;
  }
  return given;
}

std::string decision_name(Decision decision) {
  switch (decision) {
    case Decision::kMatch:
      return "match";
    case Decision::kUnknown:
      return "unknown";
    case Decision::kTooPoor:
      return "too poor to decide";
  }
  return "unknown";
}

DecisionRules decision_rules(const ModelBinding& model, double min_quality,
                             std::optional<double> same_person_threshold) {
  DecisionRules rules;
  rules.same_person_threshold = same_person_threshold.value_or(model.same_person_threshold);
  if (min_quality > 0) {
    rules.quality_gate = min_quality;
  } else {
    rules.quality_gate = model.magnitude_is_quality ? model.quality_threshold : 0.0;
  }
  return rules;
}

Decision decide(const std::vector<Candidate>& candidates, double quality,
                const DecisionRules& rules) {
  if (!rules.passes_gate(quality)) return Decision::kTooPoor;
  if (!candidates.empty() && candidates.front().template_similarity >= rules.same_person_threshold)
    return Decision::kMatch;
  return Decision::kUnknown;
}

Identification identify(const Gallery& gallery, const std::vector<float>& embedding, double quality,
                        int top_k, const DecisionRules& rules) {
  Identification out;
  out.candidates = gallery.search(embedding, top_k);
  out.decision = decide(out.candidates, quality, rules);
  if (out.decision == Decision::kMatch) out.person = out.candidates.front().person;
  out.threshold = rules.same_person_threshold;
  return out;
}

std::optional<std::string> enrolment_refusal(double quality, const DecisionRules& rules) {
  if (rules.passes_gate(quality)) return std::nullopt;
  return "face quality " + std::to_string(quality) + " is below " +
         std::to_string(rules.quality_gate);
}

}  // namespace facemag::gallery
