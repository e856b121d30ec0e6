#include "facemag/embed/embedder.hpp"

#include "facemag/model/network.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>

#include "facemag/embed/embed_matrix.hpp"
#include "facemag/embed/face_quality.hpp"
#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/nn/graph.hpp"
#include "facemag/nn/inception_resnet_v1.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "facemag/nn/onednn/onednn_iresnet.hpp"
#include "facemag/runtime.hpp"

namespace facemag {

struct Embedder::Impl {
  ModelManifest manifest;
  // Never mutated after load. Null where the fused network let go of it (an iResNet at float32
  // below AVX-512: nn::OneDnnIResNet; a network nn::OneDnnGraph runs, which records its own
  // weights, unless a classifier still runs the loaded one); network() then builds it again from
  // `rebuild`.
  std::shared_ptr<torch::nn::Module> module;
  std::function<std::shared_ptr<torch::nn::Module>()> rebuild;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  std::function<torch::Tensor(const torch::Tensor&)> logits;  // empty without a classifier
  std::vector<std::string> notes;
  Precision precision = Precision::kReference;

  std::shared_ptr<const torch::nn::Module> network() const { return module ? module : rebuild(); }
};

namespace {

std::shared_ptr<Embedder::Impl> wrap(const ModelManifest& manifest, TrainableNetwork network) {
  network.module->eval();
  auto impl = std::make_shared<Embedder::Impl>();
  impl->manifest = manifest;
  impl->module = std::move(network.module);
  impl->forward = std::move(network.forward);
  impl->logits = std::move(network.logits);
  return impl;
}

std::shared_ptr<Embedder::Impl> build(const ModelManifest& manifest) {
  return wrap(manifest, build_network(manifest));
}

}  // namespace

namespace {
// The network's op-by-op description (nn::GraphSink), for nn::OneDnnGraph and int8 calibration.
// The closure holds the network.
nn::OneDnnGraph::Describe describe_of(const Embedder::Impl& impl) {
  auto describe = find_architecture(impl.manifest.architecture).describe(impl.network());
  if (!describe) return {};
  return [describe = std::move(describe)](nn::GraphSink& sink, const std::string& x) {
    return describe(sink, x, /*with_classifier=*/false).front();
  };
}

std::array<std::int64_t, 3> input_chw(const ModelManifest& m) {
  return {3, m.input_height, m.input_width};
}

// Makes the fused network with `make`, which gets the only reference to the loaded one where
// that can be built again (network()) and nothing else runs it (a classifier's logits do): the
// fused network may let go of it, freed then, before its own weights are made (OneDnnIResNet
// below AVX-512; OneDnnGraph, which records its own copy: InceptionResnetV1 94 MB).
template <class Make>
auto hand_over(Embedder::Impl& impl, const Make& make) {
  const std::weak_ptr<torch::nn::Module> loaded = impl.module;
  if (impl.rebuild && !impl.logits) {
    impl.module.reset();
    impl.forward = {};
  }
  auto fused = make();
  impl.module = loaded.lock();
  return fused;
}

// Replaces the reference forward by the fused network where the architecture has one.
// `weights`: where the checkpoint came from (empty for formula weights), for int8's default
// calibration file.
void fuse(Embedder::Impl& impl, const EmbedderOptions& options,
          const std::filesystem::path& weights) {
  const auto precision = options.precision;
  impl.precision = precision;
  if (precision == Precision::kReference) return;
  if (precision == Precision::kInt8) {
    nn::OneDnnGraph::require(torch::kChar);  // before asking for a calibration this CPU cannot use
    auto file = options.int8_calibration;
    if (file.empty() && !weights.empty()) file = int8_calibration_path(weights);
    if (file.empty() || !std::filesystem::exists(file)) {
      throw InvalidInput("--precision int8 needs a calibration of " + impl.manifest.name +
                         (file.empty() ? std::string() : " (looked for " + file.string() + ")") +
                         ": run `facemag calibrate-int8` on a few hundred of your faces first");
    }
    const auto calibration = read_int8_calibration(file, impl.manifest);
    auto describe = describe_of(impl);
    auto graph = hand_over(impl, [&] {
      return std::make_shared<const nn::OneDnnGraph>(std::move(describe), input_chw(impl.manifest),
                                                     calibration);
    });
    impl.forward = [graph](const torch::Tensor& x) { return graph->forward(x); };
    return;
  }
  const auto dtype = precision == Precision::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
  // LibTorch's bf16 without AVX-512: iResNet-18 on an AVX2 CPU 0.27 against fp32's 17.6 img/s.
  nn::OneDnnGraph::require_of_this_cpu(dtype);
  if (auto net = std::dynamic_pointer_cast<const nn::IResNetImpl>(impl.module)) {
    if (nn::OneDnnIResNet::available(dtype)) {
      auto onednn = hand_over(
          impl, [&] { return std::make_shared<const nn::OneDnnIResNet>(std::move(net), dtype); });
      impl.forward = [onednn](const torch::Tensor& x) { return onednn->forward(x); };
      return;
    }
    // LibTorch's channels-last path: a build without oneDNN.
    auto fused = std::make_shared<const nn::FusedIResNet>(*net, dtype);
    impl.forward = [fused](const torch::Tensor& x) { return fused->forward(x); };
    return;
  }
  // Every other network on oneDNN through its own description (nn::OneDnnGraph).
  if (auto describe = describe_of(impl); describe && nn::OneDnnGraph::available(dtype)) {
    auto graph = hand_over(impl, [&] {
      return std::make_shared<const nn::OneDnnGraph>(std::move(describe), input_chw(impl.manifest),
                                                     dtype);
    });
    impl.forward = [graph](const torch::Tensor& x) { return graph->forward(x); };
    return;
  }
  if (precision == Precision::kBFloat16) nn::OneDnnGraph::require(dtype);
  if (auto* inception = dynamic_cast<nn::InceptionResnetV1Impl*>(impl.module.get())) {
    inception->prepare_inference();  // a build without oneDNN: the folded LibTorch network
    return;
  }
  impl.precision = Precision::kReference;
}

// fuse() between two returns of the heap's free pages (facemag never trims it otherwise): what
// loading left (a checkpoint's tensors, 260 MB for iResNet100) goes before the fused network's
// weights are made, and afterwards what fusing left (the loaded network where the fused one let go
// of it, folding's temporaries).
void prepare(Embedder::Impl& impl, const EmbedderOptions& options,
             const std::filesystem::path& weights) {
  release_free_heap();
  fuse(impl, options, weights);
  release_free_heap();
}

}  // namespace

namespace {
constexpr const char* kInt8Format = "facemag-int8-calibration/1";
}  // namespace

void write_int8_calibration(const std::filesystem::path& file, const ModelManifest& manifest,
                            const nn::Int8Calibration& calibration) {
  const nlohmann::json j{{"format", kInt8Format},
                         {"model", manifest.name},
                         {"architecture", manifest.architecture},
                         {"weights_sha256", manifest.sha256},
                         {"faces", calibration.faces},
                         {"percentile", calibration.percentile},
                         {"input_max_abs", calibration.input},
                         {"max_abs", calibration.values}};
  io::write_file_atomic(file, j.dump(1) + "\n");
}

nn::Int8Calibration read_int8_calibration(const std::filesystem::path& file,
                                          const ModelManifest& manifest) {
  nlohmann::json j;
  try {
    std::ifstream in(file);
    if (!in) throw InvalidInput(file.string() + ": cannot read the int8 calibration");
    j = nlohmann::json::parse(in);
    if (j.value("format", "") != kInt8Format)
      throw InvalidInput(file.string() + ": not an int8 calibration (format '" +
                         j.value("format", "") + "', expected '" + kInt8Format + "')");
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(file.string() + ": " + e.what());
  }
  const auto architecture = j.value("architecture", "");
  if (architecture != manifest.architecture) {
    throw ModelLoadError(file.string() + ": an int8 calibration of " + architecture + ", not of " +
                         manifest.architecture);
  }
  const auto sha = j.value("weights_sha256", "");
  if (!sha.empty() && !manifest.sha256.empty() && sha != manifest.sha256) {
    throw ModelLoadError(file.string() + ": calibrated on weights with SHA-256 " + sha +
                         ", these have " + manifest.sha256);
  }
  nn::Int8Calibration c;
  c.faces = j.value("faces", std::int64_t{0});
  c.percentile = j.value("percentile", 100.0);
  c.input = j.value("input_max_abs", 0.0f);
  c.values = j.value("max_abs", std::vector<float>{});
  return c;
}

namespace {
constexpr std::pair<Precision, const char*> kPrecisionNames[] = {
    {Precision::kReference, "reference"},
    {Precision::kFloat32, "fp32"},
    {Precision::kBFloat16, "bf16"},
    {Precision::kInt8, "int8"}};
}  // namespace

Precision parse_precision(const std::string& name) {
  for (const auto& [precision, text] : kPrecisionNames) {
    if (name == text) return precision;
  }
  std::string known;
  for (const auto& [precision, text] : kPrecisionNames)
    known += (known.empty() ? "" : ", ") + std::string(text);
  throw InvalidInput("unknown precision '" + name + "' (" + known + ")");
}

std::string precision_name(Precision precision) {
  for (const auto& [p, text] : kPrecisionNames) {
    if (p == precision) return text;
  }
  return "?";
}

std::vector<std::string> precision_names() {
  std::vector<std::string> names;
  for (const auto& [p, text] : kPrecisionNames) names.emplace_back(text);
  return names;
}

std::vector<float> Embedding::normalized() const {
  std::vector<float> out(raw);
  if (magnitude > 0) {
    for (auto& v : out) v /= magnitude;
  }
  return out;
}

namespace {

std::shared_ptr<Embedder::Impl> load_impl(const ModelManifest& requested,
                                          const std::filesystem::path& weights, bool verify) {
  std::vector<std::string> notes;
  ModelManifest manifest;
  auto network = load_network(requested, weights, &notes, &manifest, verify);
  auto impl = wrap(manifest, std::move(network));
  impl->notes = std::move(notes);
  return impl;
}

// The network of a checkpoint, loaded again (for state_dict() and calibrate_int8() of a model
// that let go of it); ModelLoadError if the file changed since the first load.
std::function<std::shared_ptr<torch::nn::Module>()> reloader(const ModelManifest& requested,
                                                             const std::filesystem::path& weights,
                                                             bool verify) {
  const auto stamp = [weights] {
    std::error_code size_error, time_error;
    return std::pair(std::filesystem::file_size(weights, size_error),
                     std::filesystem::last_write_time(weights, time_error));
  };
  return [=, loaded = stamp()] {
    if (stamp() != loaded) {
      throw ModelLoadError(weights.string() +
                           " changed or went away since the model was loaded from it; load it "
                           "again (the model keeps only its fused weights)");
    }
    return load_impl(requested, weights, verify)->module;
  };
}

std::shared_ptr<Embedder::Impl> with_formula(const ModelManifest& manifest) {
  auto impl = build(manifest);
  nn::fill_formula_weights(*impl->module);
  impl->notes.push_back("formula weights (deterministic, untrained)");
  impl->rebuild = [manifest] { return with_formula(manifest)->module; };
  return impl;
}

}  // namespace

Embedder Embedder::load(const ModelManifest& requested, const std::filesystem::path& weights,
                        const EmbedderOptions& options) {
  auto impl = load_impl(requested, weights, options.verify_sha256);
  // A loaded model's sha256 is one that was checked, or none.
  if (!options.verify_sha256) impl->manifest.sha256.clear();
  impl->module->eval();
  impl->rebuild = reloader(requested, weights, options.verify_sha256);
  prepare(*impl, options, weights);
  return Embedder(impl);
}

Embedder Embedder::load(const ResolvedModel& model, const EmbedderOptions& options) {
  return load(model.manifest, model.weights, options);
}

Embedder Embedder::with_formula_weights(const ModelManifest& manifest,
                                        const EmbedderOptions& options) {
  auto impl = with_formula(manifest);
  prepare(*impl, options, {});
  return Embedder(impl);
}

torch::Tensor Embedder::preprocess(const std::vector<cv::Mat>& faces) const {
  return preprocess_faces(impl_->manifest, faces);
}

torch::Tensor Embedder::forward(const torch::Tensor& batch) const {
  c10::InferenceMode guard;
  return impl_->forward(batch);
}

std::vector<Embedding> Embedder::embed(const std::vector<cv::Mat>& faces) const {
  if (faces.empty()) return {};
  // The matrix front ends hand out (embed_matrix.hpp), split into rows: both give the same bits.
  const torch::Tensor features = embed_matrix(*this, faces);
  std::vector<Embedding> out(faces.size());
  const auto dim = features.size(1);
  const float* data = features.data_ptr<float>();
  for (std::size_t i = 0; i < faces.size(); ++i) {
    out[i].raw.assign(data + i * dim, data + (i + 1) * dim);
    out[i].magnitude = embedding_magnitude(out[i].raw);
    out[i].quality = face_quality(impl_->manifest, out[i].magnitude, faces[i]);
  }
  return out;
}

int Embedder::output_size() const {
  return impl_->manifest.embedding_size * (impl_->manifest.concat_flipped ? 2 : 1);
}

torch::Tensor Embedder::logits(const torch::Tensor& batch) const {
  if (!impl_->logits) throw InvalidInput(impl_->manifest.name + " has no classifier head");
  c10::InferenceMode guard;
  return impl_->logits(batch);
}

std::vector<std::pair<std::string, torch::Tensor>> Embedder::state_dict() const {
  return nn::state_dict(*impl_->network());
}

nn::Int8Calibration Embedder::calibrate_int8(const std::vector<cv::Mat>& faces,
                                             double percentile) const {
  const auto describe = describe_of(*impl_);
  if (!describe) throw InvalidInput(impl_->manifest.architecture + " has no int8 network");
  if (faces.empty()) throw InvalidInput("int8 calibration needs at least one face");
  std::vector<torch::Tensor> batches;
  constexpr std::size_t kChunk = 16;
  for (std::size_t start = 0; start < faces.size(); start += kChunk) {
    const std::vector<cv::Mat> chunk(
        faces.begin() + static_cast<std::ptrdiff_t>(start),
        faces.begin() + static_cast<std::ptrdiff_t>(std::min(faces.size(), start + kChunk)));
    batches.push_back(preprocess(chunk));
    // Mirror features run the network on the mirrored faces too.
    if (impl_->manifest.concat_flipped) batches.push_back(batches.back().flip(3));
  }
  auto calibration = nn::OneDnnGraph::calibrate(describe, batches, percentile);
  if (impl_->manifest.concat_flipped) calibration.faces /= 2;
  return calibration;
}

const ModelManifest& Embedder::manifest() const { return impl_->manifest; }
Precision Embedder::precision() const { return impl_->precision; }
const std::vector<std::string>& Embedder::load_notes() const { return impl_->notes; }

}  // namespace facemag
