// One training run of a face recognition backbone with a margin-softmax classifier, updated
// exactly as MagFace's run/trainer.py: output, x_norm = model(input, target); loss = loss_id +
// lambda_g * loss_g; SGD with momentum and weight decay on every parameter.
//
// The classifier (D x C, MagLinear's layout) is split by columns over the processes of the
// Collective; each process holds the whole backbone and runs its share of every global batch.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/model/network.hpp"
#include "facemag/train/margin_loss.hpp"
#include "facemag/train/training_data.hpp"

namespace facemag::train {

class Collective;

// The loss or a gradient stopped being finite; the update of that step was not applied.
class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

struct ScheduleOptions {
  double lr = 0.1;
  // upstream's utils.adjust_learning_rate: lr times `lr_drop_ratio` from each listed epoch on
  // (run/run.sh: 10, 18, 22), i.e. lr * ratio^(drops at or before the epoch).
  std::vector<std::int64_t> lr_drop_epochs{10, 18, 22};
  double lr_drop_ratio = 0.1;
  // Optional (not upstream): the lr rises linearly from 0 over the first warmup iterations, and
  // with `cosine` decays as 0.5 (1 + cos(pi t)) over the run instead of the drops.
  std::int64_t warmup_iterations = 0;
  bool cosine = false;
  std::int64_t total_iterations = 0;  // for `cosine`
};

// The learning rate of an iteration (iterations counted from the start of the run).
double learning_rate(const ScheduleOptions& schedule, std::int64_t epoch,
                     std::int64_t global_iteration);

enum class ActivationLayout {
  kNchw,          // upstream's
  kChannelsLast,  // LibTorch's channels-last (weights too)
  // oneDNN's channel blocks end to end (nn::IResNetImpl::forward_blocked): iResNet in float32 on
  // CPUs with AVX2 or AVX-512; 1.2-1.8x PyTorch's fastest step (README, Training). Its Winograd 3x3
  // convolutions round more than upstream's (AVX-512: gradients ~3x LibTorch float32's distance
  // from float64; AVX2, from 128 channels: up to ~2x), so not the default: the one-step goldens
  // hold NCHW and channels-last to PyTorch's own rounding.
  kBlocked,
};

// "nchw", "channels-last", "blocked"; InvalidInput for other names.
ActivationLayout activation_layout_from_name(const std::string& name);
const char* activation_layout_name(ActivationLayout layout);

struct TrainerOptions {
  ModelManifest manifest;  // architecture, input size, preprocessing, embedding size
  MarginLossOptions loss;
  std::int64_t num_classes = 0;
  double momentum = 0.9;
  double weight_decay = 5e-4;  // run/run.sh (trainer.py's default is 1e-4)
  // Dropout2d before the iResNet's fc (upstream 0.4); ignored for other networks.
  double dropout = 0.4;
  // BatchNorm layers normalise with their running statistics and keep them (fine-tuning with
  // small batches); their scale and shift still train.
  bool freeze_batch_norm = false;
  std::uint64_t seed = 0;  // classifier initialisation and dropout masks
  // The backbone's forward and backward in bfloat16 (LibTorch's CPU autocast), parameters,
  // gradients, the classifier and the loss in float32.
  bool bfloat16 = false;
  // The backbone's activation memory. Same values up to float rounding in each.
  ActivationLayout layout = ActivationLayout::kNchw;
};

// What one step measured (over the global batch).
struct StepStats {
  double loss = 0, loss_id = 0, loss_g = 0;
  double magnitude_mean = 0, magnitude_min = 0, magnitude_max = 0;  // clamped, as the loss sees it
  double margin_mean = 0;
  double top1 = 0;  // percent of the batch whose largest cos_theta logit is its label's
  std::int64_t rows = 0;
  // Per sample of the global batch, in order: clamped magnitude, margin, cos(theta) to the
  // label's class centre (MagFace's vis_mag plots the last two against each other).
  torch::Tensor x_norm, margin, target_cos;
};

// MagFace's initialisation of a network trained from scratch (models/iresnet.py): convolutions
// Kaiming-normal (fan_out, ReLU gain), BatchNorm weight 1 and bias 0; drawn from `seed`.
void initialize_like_magface(torch::nn::Module& network, std::uint64_t seed);

// The magnitudes (raw feature norms) of up to `max_faces` training faces, drawn evenly from the
// set, under `network` in eval mode, and the bounds MagFace's README advises for fine-tuning
// (l_a below and u_a above the observed magnitudes).
struct BoundsSuggestion {
  std::int64_t faces = 0;
  double min = 0, p1 = 0, median = 0, p99 = 0, max = 0;
  double l_a = 0, u_a = 0;
};
BoundsSuggestion suggest_bounds(const TrainableNetwork& network, const TrainingSet& set,
                                const ModelManifest& manifest, std::int64_t max_faces);

// Per-class mean of the unit embeddings of every training face under `network` (eval mode),
// normalised: D x C, a classifier that starts where the backbone already is ("weight
// imprinting", Qi et al. 2018) instead of random columns whose gradients disturb a pretrained
// backbone. InvalidInput when a class has no readable face.
torch::Tensor class_centres(const TrainableNetwork& network, const TrainingSet& set,
                            const ModelManifest& manifest);

class Trainer {
 public:
  // `network` is trained in place. The classifier starts as MagLinear does (uniform columns
  // renormalised to unit length), from `options.seed`, the same on any number of processes.
  Trainer(const TrainerOptions& options, TrainableNetwork network, Collective& collective);
  ~Trainer();

  // One update on this process's rows of the global batch (images preprocessed for the model,
  // labels int64). Collective: every process calls it for every step. Throws TrainingDiverged
  // when the loss, a gradient or an update is not finite, leaving the parameters and buffers
  // (BatchNorm statistics) as they were before the step.
  StepStats step(const torch::Tensor& images, const torch::Tensor& labels, double lr);

  // MagFace's SoftmaxBuilder state_dict: `features.*` (the backbone) then `fc.weight` (D x C;
  // this process's columns only unless gathered).
  io::NamedTensors state_dict(bool gather_classifier) const;

  // Writes a checkpoint in MagFace's layout (atomically: a temporary file, then rename): epoch,
  // arch, state_dict with DataParallel's `module.` prefix, optimizer (SGD momentum buffers in
  // parameter order) and facemag's own `facemag` entry (position in the run, loss, classes).
  // Collective (the classifier is gathered); only `writer` writes.
  void save_checkpoint(const std::filesystem::path& path, std::int64_t epoch,
                       std::int64_t iteration, bool writer) const;

  struct Position {
    std::int64_t epoch = 0;      // epoch to continue in
    std::int64_t iteration = 0;  // first iteration of it still to run
  };
  // Restores weights, classifier shard, momentum buffers and the position from a checkpoint
  // that save_checkpoint wrote; InvalidInput when it belongs to another architecture, class count
  // or loss.
  Position resume(const std::filesystem::path& path);

  // Replaces the classifier (D x C, every class; this process keeps its columns).
  void set_classifier(const torch::Tensor& weight);

  // Sets the backbone and the classifier from SoftmaxBuilder names (`features.*`, `fc.weight`
  // D x C, optionally under `module.`); strict, as every load.
  void load_weights(const io::NamedTensors& tensors, const std::string& source);

  const TrainableNetwork& network() const;
  std::int64_t steps_done() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace facemag::train
