// `facemag train`: MagFace-style training and fine-tuning, in one process or several. The run
// itself (epochs, checkpoints, resume, divergence, signals, the worker processes) is
// facemag::train's: this file turns the command line into its options and prints what it did.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/train/launcher.hpp"
#include "facemag/train/run.hpp"

namespace facemag::cli {
namespace {

// What the command line fills: the run's options where CLI11 binds them as they are, and what
// only the command line has. Paths are strings here: CLI11 2.1 takes std::filesystem::path for
// a container of characters.
struct TrainFlags {
  train::RunOptions run;
  std::string data, root, out, manifest, init, resume;
  int timeout = 120;
  bool align = false;
  ModelOptions align_options;  // detector, --landmarks, --keep for --align
  int nproc = 1;
};

// The run's progress and skipped images on stderr, as every command shows them.
class TerminalObserver final : public train::RunObserver {
 public:
  void begin_progress(std::size_t total, const std::string& label) override {
    bar_ = std::make_unique<ProgressBar>(total, label);
  }
  void advance_progress(std::size_t units) override {
    if (bar_) bar_->advance(units);
  }
  void clear_progress() override {
    if (bar_) bar_->clear();
  }
  void end_progress() override { bar_.reset(); }
  void image_skipped(const std::string& path, const std::string& reason) override {
    report_skipped(path, reason);
  }

 private:
  std::unique_ptr<ProgressBar> bar_;
};

train::RunOptions run_options(const TrainFlags& flags) {
  train::RunOptions options = flags.run;
  options.data = flags.data;
  options.root = flags.root;
  options.out = flags.out;
  options.manifest = flags.manifest;
  options.init = flags.init;
  options.resume = flags.resume;
  options.timeout = std::chrono::seconds(flags.timeout);
  options.stop_on_signals = true;  // SIGINT/SIGTERM write OUT/interrupted.pth
  if (flags.align) {
    options.aligner = [align_options = flags.align_options](const ModelManifest& manifest) {
      return train::one_face_per_photo(make_face_aligner(align_options, manifest));
    };
  }
  return options;
}

// --suggest-bounds: the measurement as one JSON record on stdout, the advice on stderr.
void print_bounds(const train::RunResult& r) {
  std::cout << train::bounds_record(r).dump() << "\n";
  std::cerr << train::bounds_text(r);
}

int finish(const train::RunResult& r, const std::string& out) {
  switch (r.end) {
    case train::RunEnd::kBoundsSuggested:
      print_bounds(r);
      return kExitOk;
    case train::RunEnd::kInterrupted:
      return kExitOk;  // the run said how to continue it
    case train::RunEnd::kTrained:
      break;
  }
  if (r.writer) std::cerr << train::summary_text(r, out);
  return r.unreadable_images ? kExitSomeInputsFailed : kExitOk;
}

// --nproc N: N worker processes of this command on this machine.
int launch(const TrainFlags& flags, train::RunObserver& observer) {
  train::LaunchOptions launch;
  launch.processes = flags.nproc;
  launch.threads = flags.run.threads;
  launch.arguments = [](int threads) {
    return train::worker_command_line(train::own_arguments(), threads);
  };
  // Exit code 1 (some images skipped) is a finished worker; anything else broke the run.
  launch.finished_codes = {kExitOk, kExitSomeInputsFailed};
  const auto r = train::launch_training(run_options(flags), launch, observer);
  if (r.failed_rank < 0) return r.exit_code;
  std::cerr << "facemag: error: training worker " << r.failed_rank << " of " << flags.nproc << " "
            << r.failure << "; stopped the other workers\n";
  return kExitError;
}

// ---- the options, in --help's order ----

void add_data_options(CLI::App& cmd, TrainFlags& f) {
  cmd.add_option("data", f.data, "Training list or folder")->required();
  cmd.add_option("--out", f.out, "Folder for checkpoints and logs")->required();
  cmd.add_option("--root", f.root, "Folder the list's relative paths start from");
  cmd.add_option("--classes", f.run.classes, "Number of classes (default: largest label + 1)");
  cmd.add_option("--arch", f.run.arch,
                 "iresnet18, iresnet34, iresnet50, iresnet100 or mobilefacenet")
      ->capture_default_str();
  cmd.add_option("--manifest", f.manifest, "A model manifest instead of --arch");
}

void add_loss_options(CLI::App& cmd, train::RunOptions& o) {
  cmd.add_option("--loss", o.loss, "magface, mag-cosface, arcface or cosface")
      ->capture_default_str();
  cmd.add_option("--l-a", o.l_a, "Lower magnitude bound (magface: 10)");
  cmd.add_option("--u-a", o.u_a, "Upper magnitude bound (magface: 110)");
  cmd.add_option("--l-margin", o.l_margin, "Margin at l_a (magface 0.45; arcface: the margin)");
  cmd.add_option("--u-margin", o.u_margin, "Margin at u_a (magface 0.8)");
  cmd.add_option("--lambda-g", o.lambda_g, "Weight of the magnitude regulariser (magface 35)");
  cmd.add_option("--scale", o.scale, "Logit scale (64)");
  cmd.add_option(
      "--easy-margin", o.easy_margin,
      "true: the angular margin only where cos(theta) > 0 (MagLinear's default); false: ArcFace's");
}

void add_schedule_options(CLI::App& cmd, train::RunOptions& o) {
  cmd.add_option("--epochs", o.epochs, "Epochs")->capture_default_str();
  cmd.add_option("--batch", o.batch, "Global batch size (all processes together)")
      ->capture_default_str();
  cmd.add_option("--lr", o.lr, "Learning rate")->capture_default_str();
  cmd.add_option("--lr-drop-epochs", o.lr_drop_epochs,
                 "Epochs from which the lr is multiplied by --lr-drop-ratio")
      ->capture_default_str();
  cmd.add_option("--lr-drop-ratio", o.lr_drop_ratio, "")->capture_default_str();
  cmd.add_option("--warmup", o.warmup, "Iterations of linear lr warm-up (not upstream)")
      ->capture_default_str();
  cmd.add_flag("--cosine", o.cosine,
               "Cosine lr decay over the run instead of the drops (not upstream)");
  cmd.add_option("--momentum", o.momentum, "SGD momentum")->capture_default_str();
  cmd.add_option("--weight-decay", o.weight_decay, "SGD weight decay (every parameter)")
      ->capture_default_str();
  cmd.add_option("--dropout", o.dropout, "iResNet Dropout2d before fc")->capture_default_str();
  cmd.add_flag("--freeze-bn", o.freeze_batch_norm,
               "BatchNorm uses and keeps its running statistics (small-batch fine-tuning)");
  cmd.add_option("--layout", o.layout,
                 "Activations: nchw (upstream's rounding), channels-last, or blocked (iResNet, "
                 "fp32, oneDNN's channel blocks end to end, 1.2-1.8x PyTorch's fastest step; "
                 "AVX-512: oneDNN's Winograd F(4x4), gradients ~3x LibTorch's float rounding; "
                 "AVX2: direct kernels and facemag's Winograd F(2x2) from 128 channels, "
                 "rounding within 3x LibTorch's)")
      ->check(CLI::IsMember({"nchw", "channels-last", "blocked"}))
      ->capture_default_str();
}

void add_start_options(CLI::App& cmd, TrainFlags& f) {
  cmd.add_option("--init", f.init, "Start the backbone from this checkpoint (classifier fresh)");
  add_store_model_option(cmd, f.run.arch, f.init, &f.manifest, "--init");
  cmd.add_option("--resume", f.resume, "Continue a run from its checkpoint");
  cmd.add_flag("--imprint", f.run.imprint,
               "Start the classifier at each class's mean embedding under the initial backbone "
               "(gentler fine-tuning than random columns; not upstream)");
  cmd.add_flag(
      "--suggest-bounds", f.run.suggest_bounds,
      "Measure the magnitudes of training faces under the initial backbone, propose l_a/u_a, exit");
  cmd.add_option("--seed", f.run.seed, "Seed of the order, flips, classifier and dropout")
      ->capture_default_str();
}

void add_process_options(CLI::App& cmd, TrainFlags& f) {
  cmd.add_option("--workers", f.run.workers, "Image decoding threads per process")
      ->capture_default_str();
  cmd.add_option("--threads", f.run.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd.add_option("--precision", f.run.precision,
                 "fp32, or bf16 (bfloat16 compute, float32 weights)")
      ->capture_default_str();
  cmd.add_option("--nproc", f.nproc, "Worker processes on this machine")->capture_default_str();
  cmd.add_option("--timeout", f.timeout, "Seconds a process waits for the others before failing")
      ->capture_default_str();
  cmd.add_flag("--align", f.align, "Detect and align the photos first (MTCNN, or --landmarks)");
  add_detector_options(cmd, f.align_options.detector);
  add_landmarks_option(cmd, f.align_options.landmarks);
  cmd.add_flag("--overwrite", f.run.overwrite, "Replace an earlier run in --out");
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  auto* cmd = app.add_subcommand(
      "train", "Train or fine-tune a face recognizer with the MagFace (or ArcFace/CosFace) loss");
  cmd->footer(
      "DATA is a MagFace list ('path 0 label 0' or 'path label' per line; paths relative to "
      "--root,\n"
      "default the list's folder) or a folder with one sub-folder per person. Faces must be "
      "aligned\n"
      "to the model's input (--align aligns photos first, cached under OUT/aligned).\n"
      "Writes OUT/NNNNN.pth after each epoch (MagFace's checkpoint layout; embed/quality load it\n"
      "with its .manifest.json), OUT/train.jsonl (one record per iteration) and "
      "OUT/vis_mag_*.png.\n"
      "SIGINT/SIGTERM write OUT/interrupted.pth; --resume continues exactly where it stopped.\n"
      "Defaults follow MagFace's run/run.sh (lr 0.1 dropped x0.1 at epochs 10, 18, 22; momentum\n"
      "0.9; weight decay 5e-4; 25 epochs) except the batch: 64 on a CPU (upstream 512 on 8 GPUs).\n"
      "Several processes: --nproc N here, or RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set by a\n"
      "launcher on each machine; the classifier is split by columns across them.");
  add_data_options(*cmd, *flags);
  add_loss_options(*cmd, flags->run);
  add_schedule_options(*cmd, flags->run);
  add_start_options(*cmd, *flags);
  add_process_options(*cmd, *flags);
  return [cmd, flags]() -> int {
    if (!cmd->parsed()) return -1;
    if (flags->nproc < 1) throw InvalidInput("--nproc must be at least 1");
    TerminalObserver observer;
    if (flags->nproc > 1) return launch(*flags, observer);
    return finish(train::run_training(run_options(*flags), observer), flags->out);
  };
}

}  // namespace facemag::cli
