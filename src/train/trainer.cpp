#include "facemag/train/trainer.hpp"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <unistd.h>
#include <cmath>

#include "facemag/io/checkpoint.hpp"
#include "facemag/io/pickle.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/blocked_training.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "facemag/train/collective.hpp"

namespace facemag::train {

double learning_rate(const ScheduleOptions& s, std::int64_t epoch, std::int64_t global_iteration) {
  double lr = s.lr;
  if (s.cosine && s.total_iterations > 0) {
    const double t = std::min(
        1.0, static_cast<double>(global_iteration) / static_cast<double>(s.total_iterations));
    lr = 0.5 * s.lr * (1.0 + std::cos(M_PI * t));
  } else {
    for (auto drop : s.lr_drop_epochs) {
      if (epoch >= drop) lr *= s.lr_drop_ratio;
    }
  }
  if (global_iteration < s.warmup_iterations) {
    lr *= static_cast<double>(global_iteration + 1) / static_cast<double>(s.warmup_iterations);
  }
  return lr;
}

namespace {

using pickle::Value;
using pickle::ValuePtr;

ValuePtr str(const std::string& s) { return Value::make(s); }

std::vector<torch::nn::Module*> batch_norms(torch::nn::Module& module) {
  std::vector<torch::nn::Module*> out;
  for (const auto& m : module.modules()) {
    if (m->as<torch::nn::BatchNorm2d>() || m->as<torch::nn::BatchNorm1d>()) out.push_back(m.get());
  }
  return out;
}

// Two significant digits, rounded down (up): a bound just outside the observed range.
double round_to_two_digits(double value, bool up) {
  if (value <= 0) return value;
  const int exponent = static_cast<int>(std::floor(std::log10(value))) - 1;
  const double scale = std::pow(10.0, std::abs(exponent));  // exact: 2.8 rather than 28 * 0.1
  const double digits = exponent < 0 ? value * scale : value / scale;
  const double rounded = up ? std::ceil(digits) : std::floor(digits);
  return exponent < 0 ? rounded / scale : rounded * scale;
}

// Whether every value of every tensor is finite: one float sum per tensor (a NaN or infinity
// anywhere makes it non-finite), confirmed value by value only when a sum is not (a sum of huge
// finite values can overflow).
bool all_finite(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return true;
  std::vector<torch::Tensor> sums;
  for (const auto& t : tensors) sums.push_back(t.sum());
  if (torch::isfinite(torch::stack(sums)).all().item<bool>()) return true;
  for (const auto& t : tensors) {
    if (!torch::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

// LibTorch's CPU autocast in bfloat16 for one scope.
class BFloat16Autocast {
 public:
  explicit BFloat16Autocast(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  ~BFloat16Autocast() {
    if (!enabled_) return;
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }

 private:
  bool enabled_;
};

}  // namespace

ActivationLayout activation_layout_from_name(const std::string& name) {
  if (name == "nchw") return ActivationLayout::kNchw;
  if (name == "channels-last") return ActivationLayout::kChannelsLast;
  if (name == "blocked") return ActivationLayout::kBlocked;
  throw InvalidInput("activation layout: nchw, channels-last or blocked, not '" + name + "'");
}

const char* activation_layout_name(ActivationLayout layout) {
  switch (layout) {
    case ActivationLayout::kNchw:
      return "nchw";
    case ActivationLayout::kChannelsLast:
      return "channels-last";
    case ActivationLayout::kBlocked:
      return "blocked";
  }
  return "?";
}

void initialize_like_magface(torch::nn::Module& network, std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (const auto& m : network.modules()) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (m->as<torch::nn::BatchNorm2d>() || m->as<torch::nn::BatchNorm1d>()) {
      for (auto& p : m->named_parameters(false)) p.value().fill_(p.key() == "weight" ? 1.0 : 0.0);
    }
  }
}

namespace {

// Embeds the faces `which` of the set (eval mode, no autograd) in batches of 32 and hands each
// readable aligned face's raw embedding to `use(sample index, embedding)`.
template <class F>
void embed_samples(const TrainableNetwork& network, const TrainingSet& set,
                   const ModelManifest& manifest, const std::vector<std::size_t>& which, F use) {
  const bool was_training = network.module->is_training();
  network.module->eval();
  std::vector<cv::Mat> faces;
  std::vector<std::size_t> owners;
  auto flush = [&] {
    if (faces.empty()) return;
    c10::InferenceMode guard;
    const auto embeddings = network.forward(preprocess_faces(manifest, faces)).to(torch::kFloat32);
    for (std::size_t k = 0; k < owners.size(); ++k)
      use(owners[k], embeddings[static_cast<std::int64_t>(k)]);
    faces.clear();
    owners.clear();
  };
  for (const std::size_t i : which) {
    cv::Mat image = cv::imread(set.samples[i].path.string(), cv::IMREAD_COLOR);
    if (image.cols != manifest.input_width || image.rows != manifest.input_height) continue;
    faces.push_back(image);
    owners.push_back(i);
    if (faces.size() == 32) flush();
  }
  flush();
  if (was_training) network.module->train();
}

}  // namespace

BoundsSuggestion suggest_bounds(const TrainableNetwork& network, const TrainingSet& set,
                                const ModelManifest& manifest, std::int64_t max_faces) {
  const auto total = static_cast<std::int64_t>(set.samples.size());
  const auto count = std::min<std::int64_t>(max_faces, total);
  std::vector<std::size_t> which;
  for (std::int64_t k = 0; k < count; ++k)
    which.push_back(static_cast<std::size_t>(k * total / count));
  std::vector<float> magnitudes;
  embed_samples(network, set, manifest, which, [&](std::size_t, const torch::Tensor& e) {
    magnitudes.push_back(e.norm().item<float>());
  });
  if (magnitudes.empty()) throw InvalidInput(set.source + ": no readable aligned face to measure");
  std::sort(magnitudes.begin(), magnitudes.end());
  auto quantile = [&](double q) {
    return static_cast<double>(
        magnitudes[static_cast<std::size_t>(q * static_cast<double>(magnitudes.size() - 1))]);
  };
  BoundsSuggestion out;
  out.faces = static_cast<std::int64_t>(magnitudes.size());
  out.min = magnitudes.front();
  out.max = magnitudes.back();
  out.p1 = quantile(0.01);
  out.median = quantile(0.5);
  out.p99 = quantile(0.99);
  out.l_a = round_to_two_digits(0.9 * out.min, false);
  out.u_a = round_to_two_digits(1.1 * out.max, true);
  return out;
}

torch::Tensor class_centres(const TrainableNetwork& network, const TrainingSet& set,
                            const ModelManifest& manifest) {
  auto sums = torch::zeros({manifest.embedding_size, set.num_classes}, torch::kFloat64);
  std::vector<std::size_t> all(set.samples.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  embed_samples(network, set, manifest, all, [&](std::size_t i, const torch::Tensor& e) {
    sums.select(1, set.samples[i].label) += (e / e.norm()).to(torch::kFloat64);
  });
  const auto norms = sums.norm(2, 0, true);
  if ((norms == 0).any().item<bool>())
    throw InvalidInput(set.source + ": a class has no readable face to imprint its column from");
  return (sums / norms).to(torch::kFloat32);
}

struct Trainer::Impl {
  TrainerOptions options;
  TrainableNetwork network;
  Collective& collective;
  std::int64_t class_offset = 0;
  std::vector<std::int64_t> class_counts;      // per process
  nn::IResNetImpl* blocked_network = nullptr;  // the network, when trained in blocks
  torch::Tensor classifier;                    // D x C_local, requires grad
  std::vector<torch::Tensor> parameters;       // backbone parameters, then the classifier
  std::vector<torch::Tensor> momentum;         // SGD buffers, undefined until the first step
  std::int64_t steps = 0;

  Impl(const TrainerOptions& o, TrainableNetwork n, Collective& c)
      : options(o), network(std::move(n)), collective(c) {
    validate(o.loss);
    // Autocast's bf16 runs on oneDNN's bf16 kernels, which need AVX-512; without them it fell to
    // reference code (iResNet-18, batch 8, on an AVX2 Zen 3: 0.20 img/s against fp32's 5.7).
    if (o.bfloat16) nn::OneDnnGraph::require_of_this_cpu(torch::kBFloat16);
    if (o.num_classes < 2) throw InvalidInput("training needs at least 2 classes");
    class_counts = split_counts(o.num_classes, c.world_size());
    for (int r = 0; r < c.rank(); ++r) class_offset += class_counts[static_cast<std::size_t>(r)];
    const std::int64_t dim = o.manifest.embedding_size;
    const std::int64_t local = class_counts[static_cast<std::size_t>(c.rank())];
    // MagLinear: uniform(-1, 1) columns renormalised to unit length. Drawn from (seed, element)
    // so every split of the columns holds the same values.
    auto w = torch::empty({dim, local}, torch::kFloat64);
    auto acc = w.accessor<double, 2>();
    const std::string stream = "classifier:" + std::to_string(o.seed);
    for (std::int64_t i = 0; i < dim; ++i) {
      for (std::int64_t j = 0; j < local; ++j) {
        acc[i][j] = nn::formula_uniform(
            stream, static_cast<std::uint64_t>(i * o.num_classes + class_offset + j));
      }
    }
    const auto dtype = network.module->parameters().front().scalar_type();
    classifier = (w / w.norm(2, 0, true)).to(dtype).requires_grad_(true);
    if (auto* iresnet = network.module->as<nn::IResNetImpl>())
      iresnet->dropout->options.p(o.dropout);
    if (o.layout == ActivationLayout::kBlocked) {
      blocked_network = network.module->as<nn::IResNetImpl>();
      if (!blocked_network || o.bfloat16 || !nn::blocked::available())
        throw InvalidInput(
            "the blocked activation layout trains iResNet in float32 on CPUs with AVX2 "
            "(here: " +
            o.manifest.architecture + (o.bfloat16 ? ", bf16" : ", fp32") +
            (nn::blocked::available() ? "" : ", no AVX2 or no oneDNN") + ")");
    }
    if (o.layout == ActivationLayout::kChannelsLast) {
      torch::NoGradGuard no_grad;
      for (auto& p : network.module->parameters()) {
        if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
      }
    }
    for (auto& p : network.module->parameters()) parameters.push_back(p);
    parameters.push_back(classifier);
    momentum.resize(parameters.size());
  }

  void set_modes() {
    network.module->train();
    if (options.freeze_batch_norm) {
      for (auto* bn : batch_norms(*network.module)) bn->eval();
    }
  }

  StepStats step(const torch::Tensor& images, const torch::Tensor& labels, double lr) {
    const int world = collective.world_size();
    // Every process's row count (a bad image shrinks a share).
    auto rows = torch::zeros({world}, torch::kInt64);
    rows[collective.rank()] = images.size(0);
    collective.all_reduce_sum(rows);
    std::vector<std::int64_t> counts(rows.data_ptr<std::int64_t>(),
                                     rows.data_ptr<std::int64_t>() + world);
    std::int64_t total = 0, first_row = 0;
    for (int r = 0; r < world; ++r) {
      if (r < collective.rank()) first_row += counts[static_cast<std::size_t>(r)];
      total += counts[static_cast<std::size_t>(r)];
    }
    if (total == 0) throw InvalidInput("a training batch with no readable image");

    set_modes();
    // Dropout masks from (seed, step, rank): a resumed run draws what the uninterrupted one did.
    torch::manual_seed(options.seed * 1000003ull + static_cast<std::uint64_t>(steps) * 131ull +
                       static_cast<std::uint64_t>(collective.rank()));
    for (auto& p : parameters) p.mutable_grad() = torch::Tensor();

    // Backbone on this process's rows; the classifier on everybody's embeddings.
    torch::Tensor embeddings;
    if (images.size(0)) {
      const BFloat16Autocast autocast(options.bfloat16);
      embeddings = blocked_network ? blocked_network->forward_blocked(images)
                   : options.layout == ActivationLayout::kChannelsLast && images.dim() == 4
                       ? network.forward(images.contiguous(torch::MemoryFormat::ChannelsLast))
                       : network.forward(images);
      embeddings = embeddings.to(classifier.scalar_type());
    } else {
      embeddings = torch::zeros({0, options.manifest.embedding_size},
                                classifier.options().requires_grad(false));
    }
    auto gathered = collective.all_gather_rows(embeddings.detach(), counts).requires_grad_(true);
    const auto all_labels = collective.all_gather_rows(labels, counts);
    const auto logits = margin_logits(gathered, classifier, options.loss);
    const auto ce = sharded_cross_entropy(logits, all_labels, class_offset, collective);
    ce.objective.backward();

    // d loss / d embeddings: the sum of every process's classifier share, then this process's
    // rows, plus the magnitude regulariser of these rows (its mean is over the global batch).
    auto grad = gathered.grad();
    collective.all_reduce_sum(grad);
    if (images.size(0)) {
      const auto local_norm = embeddings.norm(2, 1, true).clamp(options.loss.l_a, options.loss.u_a);
      const double share = static_cast<double>(images.size(0)) / static_cast<double>(total);
      auto objective = (embeddings * grad.narrow(0, first_row, images.size(0))).sum();
      if (options.loss.lambda_g > 0)
        objective = objective +
                    options.loss.lambda_g * share * magnitude_regularizer(local_norm, options.loss);
      objective.backward();
    }
    all_reduce_backbone_gradients();

    StepStats stats;
    stats.rows = total;
    stats.loss_id = ce.loss;
    torch::NoGradGuard no_grad;
    stats.loss_g = magnitude_regularizer(logits.x_norm, options.loss).item<double>();
    stats.loss = stats.loss_id + options.loss.lambda_g * stats.loss_g;
    stats.magnitude_mean = logits.x_norm.mean().item<double>();
    stats.magnitude_min = logits.x_norm.min().item<double>();
    stats.magnitude_max = logits.x_norm.max().item<double>();
    stats.margin_mean = logits.margin.mean().item<double>();
    stats.top1 = 100.0 * static_cast<double>(ce.correct) / static_cast<double>(total);
    stats.x_norm = logits.x_norm.detach().view(-1).clone();
    stats.margin = logits.margin.detach().view(-1).clone();
    stats.target_cos = ce.target_logit / options.loss.scale;

    std::vector<torch::Tensor> gradients;
    for (const auto& p : parameters) {
      if (p.grad().defined()) gradients.push_back(p.grad());
    }
    const bool finite = std::isfinite(stats.loss) && all_finite(gradients);
    if (!finite) {
      throw TrainingDiverged("training step " + std::to_string(steps) + ": loss " +
                             std::to_string(stats.loss) +
                             (std::isfinite(stats.loss) ? " with a non-finite gradient" : "") +
                             "; the update was not applied");
    }
    sgd_update(lr);
    ++steps;
    return stats;
  }

  void all_reduce_backbone_gradients() {
    if (collective.world_size() == 1) return;
    std::vector<torch::Tensor> grads;
    for (std::size_t i = 0; i + 1 < parameters.size(); ++i) {
      auto& p = parameters[i];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      if (!p.grad().is_contiguous()) p.mutable_grad() = p.grad().contiguous();  // channels-last
      grads.push_back(p.grad().view(-1));
    }
    auto flat = torch::cat(grads);
    collective.all_reduce_sum(flat);
    std::int64_t at = 0;
    for (auto& g : grads) {
      g.copy_(flat.narrow(0, at, g.numel()));
      at += g.numel();
    }
  }

  // torch.optim.SGD(momentum, weight_decay), dampening 0, no Nesterov. Computed for every
  // parameter before any changes: an update that would make a value non-finite is refused whole.
  void sgd_update(double lr) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> next_values(parameters.size()), next_momentum(parameters.size());
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      auto& p = parameters[i];
      if (!p.grad().defined()) continue;
      auto d = p.grad();
      if (options.weight_decay != 0) d = d.add(p, options.weight_decay);
      if (options.momentum != 0) {
        d = momentum[i].defined() ? momentum[i].mul(options.momentum).add_(d) : d.clone();
        next_momentum[i] = d;
      }
      next_values[i] = p.add(d, -lr);
    }
    std::vector<torch::Tensor> defined;
    for (const auto& v : next_values) {
      if (v.defined()) defined.push_back(v);
    }
    if (!all_finite(defined)) {
      std::size_t i = 0;
      while (i + 1 < next_values.size() &&
             (!next_values[i].defined() || torch::isfinite(next_values[i]).all().item<bool>()))
        ++i;
      throw TrainingDiverged("training step " + std::to_string(steps) + ": the update at lr " +
                             std::to_string(lr) + " would make parameter " + std::to_string(i) +
                             " non-finite; the update was not applied");
    }
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      if (!next_values[i].defined()) continue;
      parameters[i].copy_(next_values[i]);
      if (next_momentum[i].defined()) momentum[i] = next_momentum[i];
    }
  }

  // The classifier (or a buffer shaped like it) with every process's columns.
  torch::Tensor gather_columns(const torch::Tensor& shard) const {
    return collective.all_gather_rows(shard.detach().t().contiguous(), class_counts)
        .t()
        .contiguous();
  }

  io::NamedTensors state_dict(bool gather) const {
    io::NamedTensors out;
    for (const auto& [name, t] : nn::state_dict(*network.module))
      out.emplace_back("features." + name, t);
    out.emplace_back("fc.weight", gather ? gather_columns(classifier) : classifier.detach());
    return out;
  }
};

Trainer::Trainer(const TrainerOptions& options, TrainableNetwork network, Collective& collective)
    : impl_(std::make_unique<Impl>(options, std::move(network), collective)) {}
Trainer::~Trainer() = default;

StepStats Trainer::step(const torch::Tensor& images, const torch::Tensor& labels, double lr) {
  // A diverged step applies no update, and leaves the buffers (BatchNorm's running statistics,
  // which its forward pass moved) as they were: the state after it is the state before it.
  std::vector<torch::Tensor> buffers_before;
  {
    torch::NoGradGuard no_grad;
    for (const auto& b : impl_->network.module->buffers()) buffers_before.push_back(b.clone());
  }
  try {
    return impl_->step(images, labels, lr);
  } catch (const TrainingDiverged&) {
    torch::NoGradGuard no_grad;
    const auto buffers = impl_->network.module->buffers();
    for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(buffers_before[i]);
    throw;
  }
}

io::NamedTensors Trainer::state_dict(bool gather_classifier) const {
  return impl_->state_dict(gather_classifier);
}

const TrainableNetwork& Trainer::network() const { return impl_->network; }
std::int64_t Trainer::steps_done() const { return impl_->steps; }

void Trainer::save_checkpoint(const std::filesystem::path& path, std::int64_t epoch,
                              std::int64_t iteration, bool writer) const {
  const auto& o = impl_->options;
  auto tensors = impl_->state_dict(true);
  for (auto& [name, t] : tensors) name = "module." + name;  // as DataParallel names them
  // Momentum buffers in parameter order (PyTorch's optimizer.state_dict() indices).
  pickle::Dict state;
  const auto& params = impl_->parameters;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto buffer = impl_->momentum[i];
    const bool last = i + 1 == params.size();
    if (last && buffer.defined()) buffer = impl_->gather_columns(buffer);
    if (!buffer.defined()) continue;
    pickle::Dict entry;
    pickle::dict_set(entry, str("momentum_buffer"), Value::make(buffer.detach().contiguous()));
    pickle::dict_set(state, Value::make(static_cast<std::int64_t>(i)),
                     Value::make(std::move(entry)));
  }
  if (!writer) return;
  pickle::List indices;
  for (std::size_t i = 0; i < params.size(); ++i)
    indices.items.push_back(Value::make(static_cast<std::int64_t>(i)));
  pickle::Dict group;
  pickle::dict_set(group, str("lr"), Value::make(0.0));
  pickle::dict_set(group, str("momentum"), Value::make(o.momentum));
  pickle::dict_set(group, str("dampening"), Value::make(0.0));
  pickle::dict_set(group, str("weight_decay"), Value::make(o.weight_decay));
  pickle::dict_set(group, str("nesterov"), Value::make(false));
  pickle::dict_set(group, str("maximize"), Value::make(false));
  pickle::dict_set(group, str("foreach"), std::make_shared<Value>());
  pickle::dict_set(group, str("params"), Value::make(std::move(indices)));
  pickle::List groups;
  groups.items.push_back(Value::make(std::move(group)));
  pickle::Dict optimizer;
  pickle::dict_set(optimizer, str("state"), Value::make(std::move(state)));
  pickle::dict_set(optimizer, str("param_groups"), Value::make(std::move(groups)));

  pickle::Dict meta;
  pickle::dict_set(meta, str("iteration"), Value::make(iteration));
  pickle::dict_set(meta, str("steps"), Value::make(impl_->steps));
  pickle::dict_set(meta, str("num_classes"), Value::make(o.num_classes));
  pickle::dict_set(meta, str("loss"), str(o.loss.name));
  pickle::dict_set(meta, str("seed"), Value::make(static_cast<std::int64_t>(o.seed)));
  pickle::dict_set(meta, str("manifest"), str(manifest_to_json(o.manifest)));

  pickle::Dict root;
  // MagFace's `epoch` is the number of the next epoch to run (epoch + 1 after finishing one).
  pickle::dict_set(root, str("epoch"), Value::make(epoch));
  pickle::dict_set(root, str("arch"), str(o.manifest.architecture));
  pickle::dict_set(root, str("state_dict"), io::make_state_dict_value(tensors));
  pickle::dict_set(root, str("optimizer"), Value::make(std::move(optimizer)));
  pickle::dict_set(root, str("facemag"), Value::make(std::move(meta)));

  auto temporary = path;
  temporary += ".part-" + std::to_string(::getpid());
  io::save_checkpoint(temporary, Value(std::move(root)));
  std::filesystem::rename(temporary, path);
}

void Trainer::load_weights(const io::NamedTensors& tensors, const std::string& source) {
  auto& impl = *impl_;
  const auto& o = impl.options;
  io::NamedTensors backbone;
  torch::Tensor head;
  for (const auto& [name, t] : tensors) {
    const std::string key = name.rfind("module.", 0) == 0 ? name.substr(7) : name;
    if (key == "fc.weight") {
      head = t;
    } else if (key.rfind("features.", 0) == 0) {
      backbone.emplace_back(key.substr(9), t);
    } else {
      throw ModelLoadError(source + ": unexpected tensor '" + name + "'");
    }
  }
  nn::load_state_dict_strict(*impl.network.module, backbone, source);
  const std::int64_t dim = o.manifest.embedding_size;
  if (!head.defined() || head.dim() != 2 || head.size(0) != dim || head.size(1) != o.num_classes) {
    throw ModelLoadError(source + ": classifier 'fc.weight' should be " + std::to_string(dim) +
                         " x " + std::to_string(o.num_classes) +
                         (head.defined() ? ", is " + c10::str(head.sizes()) : ", is missing"));
  }
  const std::int64_t local = impl.class_counts[static_cast<std::size_t>(impl.collective.rank())];
  torch::NoGradGuard no_grad;
  impl.classifier.copy_(head.narrow(1, impl.class_offset, local));
}

void Trainer::set_classifier(const torch::Tensor& weight) {
  auto& impl = *impl_;
  const auto& o = impl.options;
  if (weight.dim() != 2 || weight.size(0) != o.manifest.embedding_size ||
      weight.size(1) != o.num_classes) {
    throw InvalidInput("classifier should be " + std::to_string(o.manifest.embedding_size) + " x " +
                       std::to_string(o.num_classes) + ", is " + c10::str(weight.sizes()));
  }
  const std::int64_t local = impl.class_counts[static_cast<std::size_t>(impl.collective.rank())];
  torch::NoGradGuard no_grad;
  impl.classifier.copy_(weight.narrow(1, impl.class_offset, local));
}

Trainer::Position Trainer::resume(const std::filesystem::path& path) {
  auto& impl = *impl_;
  const auto& o = impl.options;
  const auto checkpoint = io::load_checkpoint(path);
  const auto& root = checkpoint.root->as_dict("checkpoint");
  const auto where = path.string();
  auto meta_value = pickle::dict_get(root, "facemag");
  if (!meta_value) {
    throw InvalidInput(where +
                       " was not written by facemag train (no 'facemag' entry); to start "
                       "from its weights use --init");
  }
  const auto& meta = meta_value->as_dict("facemag");
  const auto arch = pickle::dict_get(root, "arch")->as_string("arch");
  if (arch != o.manifest.architecture)
    throw InvalidInput(where + ": trained as '" + arch + "', not '" + o.manifest.architecture +
                       "'");
  const auto classes = pickle::dict_get(meta, "num_classes")->as_int("num_classes");
  if (classes != o.num_classes) {
    throw InvalidInput(where + ": has " + std::to_string(classes) + " classes, the data " +
                       std::to_string(o.num_classes));
  }
  const auto loss = pickle::dict_get(meta, "loss")->as_string("loss");
  if (loss != o.loss.name)
    throw InvalidInput(where + ": trained with the " + loss + " loss, not " + o.loss.name);

  load_weights(io::find_state_dict(checkpoint), where);
  const std::int64_t local = impl.class_counts[static_cast<std::size_t>(impl.collective.rank())];
  const auto& state =
      pickle::dict_get(pickle::dict_get(root, "optimizer")->as_dict("optimizer"), "state")
          ->as_dict("optimizer state");
  for (std::size_t i = 0; i < impl.parameters.size(); ++i) {
    impl.momentum[i] = torch::Tensor();
    for (const auto& [key, value] : state.items) {
      if (key->as_int("optimizer state key") != static_cast<std::int64_t>(i)) continue;
      auto buffer =
          pickle::dict_get(value->as_dict(), "momentum_buffer")->as_tensor("momentum_buffer");
      if (i + 1 == impl.parameters.size()) buffer = buffer.narrow(1, impl.class_offset, local);
      if (!buffer.sizes().equals(impl.parameters[i].sizes()))
        throw ModelLoadError(where + ": momentum buffer " + std::to_string(i) + " has shape " +
                             c10::str(buffer.sizes()) + ", its parameter " +
                             c10::str(impl.parameters[i].sizes()));
      impl.momentum[i] = buffer.to(impl.classifier.scalar_type()).clone();
    }
  }
  impl.steps = pickle::dict_get(meta, "steps")->as_int("steps");
  Position p;
  p.epoch = pickle::dict_get(root, "epoch")->as_int("epoch");
  p.iteration = pickle::dict_get(meta, "iteration")->as_int("iteration");
  return p;
}

}  // namespace facemag::train
