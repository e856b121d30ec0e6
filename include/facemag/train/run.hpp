// A whole training run, as `facemag train` runs it: the data read (and aligned when asked), the
// network built or loaded, then epochs of Trainer::step with a checkpoint in MagFace's layout
// after each, and the ways a run ends early: interrupted (a checkpoint to resume from, exactly)
// or diverged (the last good state kept). A run may span several processes (torchrun's
// variables, or launch_training on this machine): every process calls run_training with the
// same options and rank 0 alone writes files and reports.
//
// Messages of the errors name `facemag train`'s options (--resume, --align...), since the
// command line is where a user changes them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core/mat.hpp>

#include "facemag/pipeline.hpp"

#include "facemag/train/launcher.hpp"
#include "facemag/train/margin_loss.hpp"
#include "facemag/train/trainer.hpp"
#include "facemag/train/training_data.hpp"

namespace facemag::train {

// One photo's face aligned for the model, or why there is none.
struct AlignedPhoto {
  cv::Mat crop;  // 8-bit BGR, the model's input size; empty: failed, see `error`
  std::string error;
};
// Aligns decoded photos (8-bit BGR) for a model, one face each, in order; `names` are the
// photos' paths, for messages and landmark lookups. The run takes it from its front end, which
// owns the detector's options.
using PhotoAligner = std::function<std::vector<AlignedPhoto>(
    const std::vector<cv::Mat>& photos, const std::vector<std::string>& names)>;

// A FaceAligner (kLargest, kCenter or kBest; MTCNN or a LandmarkFile) as the run's PhotoAligner:
// each photo's first candidate crop, or the aligner's error.
PhotoAligner one_face_per_photo(FaceAligner aligner);

struct RunOptions {
  // A MagFace training list (relative paths from `root`, default the list's folder) or a folder
  // with one sub-folder per person; see read_training_list and read_training_folder. `classes`
  // > 0 must match the data.
  std::filesystem::path data;
  std::filesystem::path root;
  std::int64_t classes = 0;
  // Checkpoints NNNNN.pth (the epochs done) with NNNNN.pth.manifest.json, train.jsonl (a record
  // per iteration), vis_mag_NNNNN.png, aligned/ (the crops of `aligner`). A folder that holds
  // an earlier run's train.jsonl is refused unless `resume` or `overwrite`.
  std::filesystem::path out;
  bool overwrite = false;

  // The model: `manifest` if given, else the built-in manifest of `arch`; from the backbone of
  // `init` (a checkpoint) or MagFace's initialisation drawn from `seed`.
  std::string arch = "iresnet18";
  std::filesystem::path manifest;
  std::filesystem::path init;
  // Continue the run that wrote this checkpoint (Trainer::resume), appending to train.jsonl.
  std::filesystem::path resume;

  // The loss: a preset (margin_loss_preset) with these values overriding it; for arcface and
  // cosface one margin sets both ends.
  std::string loss = "magface";
  std::optional<double> l_a, u_a, l_margin, u_margin, lambda_g, scale;
  std::optional<bool> easy_margin;

  // The schedule (ScheduleOptions) and the update (TrainerOptions). `batch` is global: every
  // process together.
  int epochs = 25;
  std::int64_t batch = 64;
  double lr = 0.1;
  std::vector<std::int64_t> lr_drop_epochs{10, 18, 22};
  double lr_drop_ratio = 0.1;
  std::int64_t warmup = 0;
  bool cosine = false;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double dropout = 0.4;
  bool freeze_batch_norm = false;
  std::string layout = "nchw";     // activation_layout_from_name
  std::string precision = "fp32";  // fp32 or bf16 (TrainerOptions::bfloat16)
  std::uint64_t seed = 0;

  // Start the classifier at the class means under the initial backbone (class_centres); not
  // with `resume`, which restores it.
  bool imprint = false;
  // Only measure the magnitudes of training faces and propose bounds (RunEnd::kBoundsSuggested).
  bool suggest_bounds = false;

  int workers = 2;  // image decoding threads per process
  int threads = 0;  // LibTorch threads (0 = all cores); see configure_runtime
  // How long a process waits for the others before it fails (RendezvousOptions::timeout).
  std::chrono::seconds timeout{120};

  // Photos instead of aligned crops: given the model's manifest, the aligner that makes the
  // crops, which are cached under out/aligned (a rerun aligns only photos it has not seen).
  // Empty: `data` holds aligned crops already.
  std::function<PhotoAligner(const ModelManifest&)> aligner;
  // SIGINT and SIGTERM during the epochs stop the run as RunObserver::stop_requested does
  // (the previous handlers come back after). Off: the caller's handlers stay in place.
  bool stop_on_signals = false;
};

// What a front end sees of a run; each default does nothing. Called on the run's thread.
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  // A stretch of work of `total` units ("aligning" photos; "epoch 3" iterations, on rank 0
  // only) begins; advance counts units done; clear comes before a message that should start on
  // a clean line; end comes when the stretch is over, also when an exception ends it (so it must
  // not throw).
  virtual void begin_progress(std::size_t total, const std::string& label) {}
  virtual void advance_progress(std::size_t units) {}
  virtual void clear_progress() {}
  virtual void end_progress() {}
  // An image left out: no face could be aligned, or (once per run) unreadable in training.
  virtual void image_skipped(const std::string& path, const std::string& reason) {}
  // Polled after every step. When any process of the run says yes, all of them write
  // out/interrupted.pth and end the run (RunEnd::kInterrupted).
  virtual bool stop_requested() { return false; }
};

enum class RunEnd {
  kTrained,          // every epoch done
  kInterrupted,      // stopped on request; `checkpoint` continues it with RunOptions::resume
  kBoundsSuggested,  // RunOptions::suggest_bounds: nothing trained, nothing written
};

struct RunResult {
  RunEnd end = RunEnd::kTrained;
  bool writer = false;               // this process is rank 0, which wrote the files
  std::filesystem::path checkpoint;  // the last one written, if any
  // kBoundsSuggested: the measurement and the loss it was measured for.
  BoundsSuggestion bounds;
  MarginLossOptions loss;
  // Steps of the whole run (from its start, across a resume), and what this process's part of
  // it did since run_training was called (none for kBoundsSuggested).
  std::int64_t steps = 0;
  std::int64_t images = 0;            // rows trained on
  double seconds = 0;                 // wall time of the epochs
  std::int64_t missing_rows = 0;      // rows of the global batches left empty by unreadable images
  std::size_t unreadable_images = 0;  // distinct images left out of the batches
};

// RunOptions::suggest_bounds's measurement as one record: faces, min, p1, median, p99, max, l_a,
// u_a (the bounds proposed) and the loss's l_margin, u_margin, lambda_g.
nlohmann::json bounds_record(const RunResult& result);

// The advice of RunOptions::suggest_bounds in words, as `train --suggest-bounds` writes it to
// stderr: the magnitudes' range and median, and the --l-a/--u-a flags to use.
std::string bounds_text(const RunResult& result);

// The end of a finished run in words (`train`, rank 0): "trained N steps, X img/s; ...
// checkpoints in OUT".
std::string summary_text(const RunResult& result, const std::filesystem::path& out);

// Runs (or continues) a training run to its end. Throws InvalidInput for bad options or data
// before the first step, TrainingDiverged (after writing out/last-good.pth, the state
// before the step that failed) when the loss or a gradient stops being finite, and Error for
// what cannot be read or written.
RunResult run_training(const RunOptions& options, RunObserver& observer);

// The training set of a run as run_training reads it: `data` checked and, with an `aligner`,
// aligned into out/aligned. Lets one process align for all before several start.
TrainingSet prepare_training_set(const RunOptions& options, RunObserver& observer);

// The run on `launch.processes` processes of this machine (launch_local_workers, whose
// `arguments` start run_training in each): photos are aligned here first, once, so that the
// workers find the cache complete. InvalidInput when WORLD_SIZE is set already (a launcher
// started this process) or for suggest_bounds (one process measures).
LaunchResult launch_training(const RunOptions& options, const LaunchOptions& launch,
                             RunObserver& observer);

// A worker's command line from this process's (own_arguments()): without --nproc and --threads,
// then "--threads N" with its share of the cores.
std::vector<std::string> worker_command_line(const std::vector<std::string>& command_line,
                                             int threads_per_worker);

}  // namespace facemag::train
