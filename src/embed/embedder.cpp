#include "facemag/embed/embedder.hpp"

#include "facemag/embed/network.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <future>
#include <set>

#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/io/file.hpp"
#include "facemag/model/store.hpp"
#include "facemag/nn/graph.hpp"
#include "facemag/nn/inception_resnet_v1.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/mobilefacenet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn_graph.hpp"
#include "facemag/nn/onednn_iresnet.hpp"
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

template <class Net>
std::shared_ptr<Embedder::Impl> wrap(const ModelManifest& manifest, std::shared_ptr<Net> net) {
  net->eval();
  auto impl = std::make_shared<Embedder::Impl>();
  impl->manifest = manifest;
  impl->module = net;
  impl->forward = [net](const torch::Tensor& x) { return net->forward(x); };
  return impl;
}

std::shared_ptr<Embedder::Impl> build(const ModelManifest& manifest) {
  if (const auto depth = nn::iresnet_depth_from_name(manifest.architecture)) {
    return wrap(manifest, std::make_shared<nn::IResNetImpl>(*depth, manifest.embedding_size));
  }
  if (manifest.architecture == "mobilefacenet") {
    return wrap(manifest, std::make_shared<nn::MobileFaceNetImpl>());
  }
  if (manifest.architecture == "inception_resnet_v1") {
    auto net = std::make_shared<nn::InceptionResnetV1Impl>(manifest.num_classes);
    auto impl = wrap(manifest, net);
    if (manifest.num_classes > 0)
      impl->logits = [net](const torch::Tensor& x) { return net->logits(x); };
    return impl;
  }
  throw InvalidInput("unknown architecture '" + manifest.architecture + "'");
}

// MagFace checkpoints name the backbone `features.module.*` (or `module.features.*` from other
// wrappers) and keep the classifier beside it; DataParallel state dicts use `module.*`. Pick
// the prefix under which the most backbone tensors are found.
io::NamedTensors select_backbone(const io::NamedTensors& all, const torch::nn::Module& model,
                                 const std::string& source, std::vector<std::string>& notes) {
  std::set<std::string> expected;
  for (const auto& [name, t] : nn::state_dict(model)) expected.insert(name);
  static const char* kPrefixes[] = {"features.module.", "module.features.", "module.", "features.",
                                    ""};
  std::string best;
  std::size_t best_count = 0;
  for (const char* prefix : kPrefixes) {
    const std::string p = prefix;
    std::size_t count = 0;
    for (const auto& [name, t] : all) {
      count += name.rfind(p, 0) == 0 && expected.count(name.substr(p.size()));
    }
    if (count > best_count) {
      best = p;
      best_count = count;
    }
  }
  io::NamedTensors backbone;
  for (const auto& [name, t] : all) {
    if (name.rfind(best, 0) == 0) {
      backbone.emplace_back(name.substr(best.size()), t);
    } else if (name == "fc.weight" || name == "module.fc.weight" || name == "fc.bias" ||
               name == "module.fc.bias") {
      notes.push_back("ignored the training classifier '" + name + "' " + c10::str(t.sizes()) +
                      " (not part of the embedding network)");
    } else {
      throw ModelLoadError(source + ": unexpected tensor '" + name +
                           "' outside the backbone prefix '" + best + "'");
    }
  }
  return backbone;
}

}  // namespace

namespace {
// The network's op-by-op description (nn::GraphSink), for nn::OneDnnGraph and int8 calibration.
// The closure holds the network.
nn::OneDnnGraph::Describe describe_of(const Embedder::Impl& impl) {
  const auto module = impl.network();
  if (const auto net = std::dynamic_pointer_cast<const nn::IResNetImpl>(module))
    return [net](nn::GraphSink& sink, const std::string& x) { return net->describe(sink, x); };
  if (const auto net = std::dynamic_pointer_cast<const nn::MobileFaceNetImpl>(module))
    return [net](nn::GraphSink& sink, const std::string& x) { return net->describe(sink, x); };
  if (const auto net = std::dynamic_pointer_cast<const nn::InceptionResnetV1Impl>(module)) {
    return [net](nn::GraphSink& sink, const std::string& x) {
      return net->describe(sink, x, /*with_classifier=*/false).front();
    };
  }
  return {};
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

std::filesystem::path int8_calibration_path(const std::filesystem::path& weights) {
  return weights.string() + ".int8.json";
}

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

// Builds the network of `manifest` (the classifier size of InceptionResnetV1 taken from the
// checkpoint) and loads its backbone strictly.
std::shared_ptr<Embedder::Impl> load_unverified(const ModelManifest& requested,
                                                const std::filesystem::path& weights) {
  const io::Checkpoint checkpoint = io::load_checkpoint(weights);
  const io::NamedTensors tensors = io::find_state_dict(checkpoint);
  ModelManifest manifest = requested;
  if (manifest.architecture == "inception_resnet_v1") {  // the classifier is optional
    manifest.num_classes = 0;
    for (const auto& [name, t] : tensors) {
      if (name == "logits.weight" && t.dim() == 2)
        manifest.num_classes = static_cast<int>(t.size(0));
    }
  }
  auto impl = build(manifest);
  if (checkpoint.root->is<pickle::Dict>()) {
    if (auto arch = pickle::dict_get(checkpoint.root->as_dict(), "arch");
        arch && arch->is<std::string>() && arch->as_string() != manifest.architecture) {
      throw ModelLoadError(checkpoint.source + ": checkpoint was trained as '" + arch->as_string() +
                           "', not '" + manifest.architecture + "'");
    }
  }
  const io::NamedTensors backbone =
      select_backbone(tensors, *impl->module, checkpoint.source, impl->notes);
  nn::load_state_dict_strict(*impl->module, backbone, checkpoint.source);
  return impl;
}

std::shared_ptr<Embedder::Impl> load_impl(const ModelManifest& requested,
                                          const std::filesystem::path& weights, bool verify) {
  // The hash is computed beside the parsing, so that checking costs (almost) no time.
  std::future<void> verified;
  if (verify && !requested.sha256.empty()) {
    verified =
        std::async(std::launch::async, [&] { verify_weights_sha256(weights, requested.sha256); });
  }
  try {
    auto impl = load_unverified(requested, weights);
    if (verified.valid()) verified.get();
    return impl;
  } catch (const Error&) {
    if (verified.valid()) verified.get();  // a damaged file: say so rather than how it broke
    throw;
  }
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

TrainableNetwork trainable(const Embedder::Impl& impl) {
  impl.module->train();
  return {impl.module, impl.forward};
}

}  // namespace

TrainableNetwork build_network(const ModelManifest& manifest) {
  return trainable(*build(manifest));
}

TrainableNetwork load_network(const ModelManifest& manifest, const std::filesystem::path& weights,
                              std::vector<std::string>* notes) {
  const auto impl = load_impl(manifest, weights, /*verify=*/true);
  if (notes) notes->insert(notes->end(), impl->notes.begin(), impl->notes.end());
  return trainable(*impl);
}

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

Embedder Embedder::with_formula_weights(const ModelManifest& manifest,
                                        const EmbedderOptions& options) {
  auto impl = with_formula(manifest);
  prepare(*impl, options, {});
  return Embedder(impl);
}

torch::Tensor preprocess_faces(const ModelManifest& m, const std::vector<cv::Mat>& faces) {
  auto batch =
      torch::empty({static_cast<std::int64_t>(faces.size()), 3, m.input_height, m.input_width});
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const cv::Mat& face = faces[i];
    if (face.type() != CV_8UC3 || face.rows != m.input_height || face.cols != m.input_width) {
      throw InvalidInput("face " + std::to_string(i) + " is " + std::to_string(face.cols) + "x" +
                         std::to_string(face.rows) + " with " + std::to_string(face.channels()) +
                         " channel(s); " + m.name + " expects an aligned " +
                         std::to_string(m.input_width) + "x" + std::to_string(m.input_height) +
                         " 8-bit BGR image");
    }
    const cv::Mat continuous = face.isContinuous() ? face : face.clone();
    auto hwc = torch::from_blob(continuous.data, {m.input_height, m.input_width, 3}, torch::kUInt8);
    auto chw = hwc.permute({2, 0, 1}).to(torch::kFloat32);
    if (m.color_order == ColorOrder::kRGB) chw = chw.flip(0);  // OpenCV gives BGR
    if (m.prewhiten) {
      const auto std_adj = chw.std().clamp_min(1.0 / std::sqrt(static_cast<double>(chw.numel())));
      batch[static_cast<std::int64_t>(i)].copy_((chw - chw.mean()) / std_adj);
    } else {
      batch[static_cast<std::int64_t>(i)].copy_((chw - m.pixel_offset) / m.pixel_scale);
    }
  }
  return batch;
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
  const torch::Tensor batch = preprocess(faces);
  torch::Tensor features = forward(batch);
  if (impl_->manifest.concat_flipped) features = torch::cat({features, forward(batch.flip(3))}, 1);
  features = features.contiguous();
  std::vector<Embedding> out(faces.size());
  const auto dim = features.size(1);
  const float* data = features.data_ptr<float>();
  for (std::size_t i = 0; i < faces.size(); ++i) {
    out[i].raw.assign(data + i * dim, data + (i + 1) * dim);
    double sum = 0;
    for (float v : out[i].raw) sum += static_cast<double>(v) * v;
    out[i].magnitude = static_cast<float>(std::sqrt(sum));
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
