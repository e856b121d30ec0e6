#include "facemag/train/run.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "facemag/error.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/model/manifest.hpp"
#include "facemag/model/network.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/runtime.hpp"
#include "facemag/stop_signal.hpp"
#include "facemag/train/collective.hpp"

namespace facemag::train {
namespace {

using json = nlohmann::json;

// A stretch of the observer's progress that ends when it leaves scope, exceptions included.
// Without an observer (the processes other than rank 0) it shows nothing.
class Progress {
 public:
  Progress(RunObserver* observer, std::size_t total, const std::string& label)
      : observer_(observer) {
    if (observer_) observer_->begin_progress(total, label);
  }
  ~Progress() {
    if (observer_) observer_->end_progress();
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void advance(std::size_t units = 1) {
    if (observer_) observer_->advance_progress(units);
  }
  void clear() {
    if (observer_) observer_->clear_progress();
  }

 private:
  RunObserver* observer_;
};

// ---- the data ----

// The manifest of the model to train: `manifest`, else the built-in one of `arch`.
ModelManifest model_manifest(const RunOptions& opt) {
  return opt.manifest.empty() ? builtin_manifest(opt.arch) : load_manifest(opt.manifest);
}

// `data` as a training list or a folder per person, checked (see read_training_list).
TrainingSet read_training_data(const RunOptions& opt) {
  if (!std::filesystem::is_directory(opt.data))
    return read_training_list(opt.data, opt.root, opt.classes);
  auto set = read_training_folder(opt.data);
  if (opt.classes > 0 && opt.classes != set.num_classes) {
    throw InvalidInput(opt.data.string() + " holds " + std::to_string(set.num_classes) +
                       " people; --classes says " + std::to_string(opt.classes));
  }
  return set;
}

// Where a photo's crop is cached: the file name is a hash of the photo's path, so a rerun on the
// same list finds it.
std::filesystem::path cached_crop(const std::filesystem::path& cache, const TrainingSample& s) {
  const auto key = io::sha256_hex(s.path.string()).substr(0, 16);
  return cache / std::to_string(s.label) / (key + ".png");
}

void write_crop(const cv::Mat& crop, const std::filesystem::path& crop_path) {
  std::filesystem::create_directories(crop_path.parent_path());
  // Written aside and renamed, so that a worker never reads half a crop; the extension last:
  // it tells OpenCV the format.
  const auto temporary = crop_path.parent_path() / (crop_path.stem().string() + ".part-" +
                                                    std::to_string(::getpid()) + ".png");
  if (!cv::imwrite(temporary.string(), crop))
    throw Error("cannot write the aligned crop " + temporary.string());
  std::filesystem::rename(temporary, crop_path);
}

// Samples [start, end) of `set` into `out`: cached crops first, then the photos aligned now
// (the order a rerun must reproduce). Returns the photos left out.
std::size_t align_chunk(const TrainingSet& set, std::size_t start, std::size_t end,
                        const PhotoAligner& aligner, const std::filesystem::path& cache,
                        RunObserver& observer, TrainingSet& out) {
  std::size_t failed = 0;
  std::vector<cv::Mat> photos;
  std::vector<std::string> names;
  std::vector<std::size_t> which;
  for (std::size_t i = start; i < end; ++i) {
    const auto& sample = set.samples[i];
    auto crop_path = cached_crop(cache, sample);
    if (std::filesystem::exists(crop_path)) {
      out.samples.push_back({crop_path, sample.label});
      continue;
    }
    cv::Mat photo = cv::imread(sample.path.string(), cv::IMREAD_COLOR);
    if (photo.empty()) {
      observer.image_skipped(sample.path.string(), "not a readable image");
      ++failed;
      continue;
    }
    photos.push_back(photo);
    names.push_back(sample.path.string());
    which.push_back(i);
  }
  const auto aligned = aligner(photos, names);
  for (std::size_t k = 0; k < which.size(); ++k) {
    const auto& sample = set.samples[which[k]];
    if (aligned[k].crop.empty()) {
      observer.image_skipped(sample.path.string(), aligned[k].error);
      ++failed;
      continue;
    }
    const auto crop_path = cached_crop(cache, sample);
    write_crop(aligned[k].crop, crop_path);
    out.samples.push_back({crop_path, sample.label});
  }
  return failed;
}

// The set with each photo replaced by its crop for `manifest`'s model, aligned in chunks
// (photos of a chunk are detected together).
TrainingSet align_training_set(const TrainingSet& set, const ModelManifest& manifest,
                               const RunOptions& opt, RunObserver& observer) {
  const PhotoAligner aligner = opt.aligner(manifest);
  const auto cache = opt.out / "aligned";
  TrainingSet out;
  out.source = set.source;
  out.num_classes = set.num_classes;
  std::size_t failed = 0;
  Progress progress(&observer, set.samples.size(), "aligning");
  constexpr std::size_t kChunk = 32;
  for (std::size_t start = 0; start < set.samples.size(); start += kChunk) {
    const auto end = std::min(set.samples.size(), start + kChunk);
    failed += align_chunk(set, start, end, aligner, cache, observer, out);
    progress.advance(end - start);
  }
  if (failed) {
    spdlog::warn("--align: {} of {} photos gave no face and are left out", failed,
                 set.samples.size());
  }
  if (out.samples.empty()) throw InvalidInput(set.source + ": no face could be aligned");
  return out;
}

TrainingSet prepared_set(const RunOptions& opt, const ModelManifest& manifest,
                         RunObserver& observer) {
  TrainingSet set = read_training_data(opt);
  if (opt.aligner) set = align_training_set(set, manifest, opt, observer);
  return set;
}

// Photos given without aligning them would train on whole pictures squeezed to the input
// size: the first image tells.
void check_aligned(const TrainingSet& set, const ModelManifest& manifest) {
  const auto& path = set.samples.front().path;
  const cv::Mat first = cv::imread(path.string(), cv::IMREAD_COLOR);
  if (!first.empty() &&
      (first.cols != manifest.input_width || first.rows != manifest.input_height)) {
    throw InvalidInput(path.string() + " is " + std::to_string(first.cols) + "x" +
                       std::to_string(first.rows) + ", not an aligned " +
                       std::to_string(manifest.input_width) + "x" +
                       std::to_string(manifest.input_height) + " face for " + manifest.name +
                       "; add --align to detect and align the photos first");
  }
}

// ---- the model and its update ----

MarginLossOptions loss_options(const RunOptions& opt) {
  auto o = margin_loss_preset(opt.loss);
  if (opt.l_a) o.l_a = *opt.l_a;
  if (opt.u_a) o.u_a = *opt.u_a;
  if (opt.l_margin) o.l_margin = *opt.l_margin;
  if (opt.u_margin) o.u_margin = *opt.u_margin;
  if (opt.lambda_g) o.lambda_g = *opt.lambda_g;
  if (opt.scale) o.scale = *opt.scale;
  if (opt.easy_margin) o.easy_margin = *opt.easy_margin;
  if ((opt.loss == "arcface" || opt.loss == "cosface") && (opt.l_margin || opt.u_margin)) {
    // A fixed margin: one value sets both ends.
    o.l_margin = o.u_margin = opt.u_margin ? *opt.u_margin : *opt.l_margin;
  }
  validate(o);
  return o;
}

// The network to train: `init`'s backbone, or a fresh one initialised as MagFace does.
TrainableNetwork starting_network(const RunOptions& opt, const ModelManifest& manifest) {
  std::vector<std::string> notes;
  TrainableNetwork network =
      opt.init.empty() ? build_network(manifest) : load_network(manifest, opt.init, &notes);
  for (const auto& n : notes) spdlog::info("--init {}: {}", opt.init.string(), n);
  if (opt.init.empty()) initialize_like_magface(*network.module, opt.seed);
  return network;
}

TrainerOptions trainer_options(const RunOptions& opt, const ModelManifest& manifest,
                               const MarginLossOptions& loss, std::int64_t num_classes) {
  TrainerOptions options;
  options.manifest = manifest;
  options.loss = loss;
  options.num_classes = num_classes;
  options.momentum = opt.momentum;
  options.weight_decay = opt.weight_decay;
  options.dropout = opt.dropout;
  options.freeze_batch_norm = opt.freeze_batch_norm;
  options.layout = activation_layout_from_name(opt.layout);
  options.seed = opt.seed;
  options.bfloat16 = opt.precision == "bf16";
  return options;
}

// Where the epochs begin: a resumed run's position, or the start (with the classifier
// imprinted when asked).
Trainer::Position starting_position(const RunOptions& opt, Trainer& trainer,
                                    const TrainableNetwork& network, const TrainingSet& set,
                                    const ModelManifest& manifest) {
  if (!opt.resume.empty()) return trainer.resume(opt.resume);
  if (opt.imprint) trainer.set_classifier(class_centres(network, set, manifest));
  return {};
}

// Rank 0 makes `out`, and refuses to start a new run over an earlier one's log.
void prepare_output(const RunOptions& opt, bool writer) {
  if (!writer) return;
  std::filesystem::create_directories(opt.out);
  if (opt.resume.empty() && !opt.overwrite && std::filesystem::exists(opt.out / "train.jsonl")) {
    throw InvalidInput(opt.out.string() +
                       " holds an earlier run (train.jsonl); continue it with "
                       "--resume CHECKPOINT or replace it with --overwrite");
  }
}

std::int64_t checked_iterations_per_epoch(const TrainingSet& set, std::int64_t batch) {
  const std::int64_t per_epoch =
      iterations_per_epoch(static_cast<std::int64_t>(set.samples.size()), batch);
  if (per_epoch == 0) {
    throw InvalidInput(set.source + ": " + std::to_string(set.samples.size()) +
                       " images make no full batch of " + std::to_string(batch));
  }
  return per_epoch;
}

ScheduleOptions schedule_options(const RunOptions& opt, std::int64_t per_epoch) {
  ScheduleOptions schedule;
  schedule.lr = opt.lr;
  schedule.lr_drop_epochs = opt.lr_drop_epochs;
  schedule.lr_drop_ratio = opt.lr_drop_ratio;
  schedule.warmup_iterations = opt.warmup;
  schedule.cosine = opt.cosine;
  schedule.total_iterations = per_epoch * opt.epochs;
  return schedule;
}

// The manifest written beside each checkpoint: the trained model's, not yet calibrated.
ModelManifest trained_manifest(const ModelManifest& manifest, const MarginLossOptions& loss,
                               const TrainingSet& set) {
  ModelManifest trained = manifest;
  trained.name = manifest.architecture + "-" + loss.name + "-trained";
  trained.magnitude_is_quality = loss.lambda_g > 0;
  trained.source = "facemag train on " + set.source;
  trained.sha256.clear();
  trained.fmr_thresholds.clear();
  trained.quality_threshold = 0;
  trained.threshold_calibration = "not calibrated (a generic value)";
  return trained;
}

std::filesystem::path epoch_checkpoint(const std::filesystem::path& out, std::int64_t epoch) {
  char name[32];
  std::snprintf(name, sizeof name, "%05lld.pth", static_cast<long long>(epoch));
  return out / name;  // MagFace's naming: the number of epochs done
}

// MagFace's vis_mag: magnitude against cos(theta) to the class centre, for an epoch's samples.
void write_vis_mag(const std::filesystem::path& path, const std::vector<cv::Point2d>& points,
                   std::int64_t epoch, const std::string& loss) {
  plot::Axes axes;
  axes.title = "epoch " + std::to_string(epoch) + " (" + loss + "): magnitude against cosine";
  axes.x_label = "cos(theta) to the class centre";
  axes.y_label = "feature magnitude (clamped to [l_a, u_a])";
  plot::write_png(path, plot::scatter_chart({{"training faces", points}}, axes));
}

// ---- the epochs ----

// Everything the epochs of a run share, and the loop over them. Every process runs it; rank 0
// (the writer) alone writes the log and the pictures and shows progress.
class Epochs {
 public:
  Epochs(const RunOptions& opt, const TrainingSet& set, const ModelManifest& manifest,
         const MarginLossOptions& loss, std::int64_t per_epoch, Trainer& trainer,
         Collective& collective, RunObserver& observer, bool writer);

  RunResult run(Trainer::Position start);

 private:
  // One epoch from `first` on; false when the run was stopped in it.
  bool run_epoch(std::int64_t epoch, std::int64_t first);
  void report_skipped(const std::vector<std::string>& skipped);
  // Trainer::step, or on divergence the state before it saved and the error made precise.
  StepStats step(const TrainingBatch& batch, std::int64_t epoch, double lr, Progress& progress);
  void log_step(const TrainingBatch& batch, std::int64_t epoch, double lr, const StepStats& stats,
                double seconds);
  // Whether any process was asked to stop: they stop together, after the same step.
  bool stop_agreed();
  void save(const std::filesystem::path& path, std::int64_t epoch, std::int64_t iteration);

  const RunOptions& opt_;
  const TrainingSet& set_;
  const ModelManifest& manifest_;
  const MarginLossOptions& loss_;
  const std::int64_t per_epoch_;
  Trainer& trainer_;
  Collective& collective_;
  RunObserver& observer_;
  const bool writer_;
  LoaderOptions loader_options_;
  ScheduleOptions schedule_;
  ModelManifest trained_;
  std::ofstream log_;
  std::optional<StopOnSignal> stop_signals_;
  std::set<std::string> reported_;
  RunResult result_;
};

Epochs::Epochs(const RunOptions& opt, const TrainingSet& set, const ModelManifest& manifest,
               const MarginLossOptions& loss, std::int64_t per_epoch, Trainer& trainer,
               Collective& collective, RunObserver& observer, bool writer)
    : opt_(opt),
      set_(set),
      manifest_(manifest),
      loss_(loss),
      per_epoch_(per_epoch),
      trainer_(trainer),
      collective_(collective),
      observer_(observer),
      writer_(writer),
      schedule_(schedule_options(opt, per_epoch)),
      trained_(trained_manifest(manifest, loss, set)) {
  loader_options_.batch_size = opt.batch;
  loader_options_.seed = opt.seed;
  loader_options_.workers = opt.workers;
  loader_options_.rank = collective.rank();
  loader_options_.world_size = collective.world_size();
  if (writer) {
    log_.open(opt.out / "train.jsonl", opt.resume.empty() ? std::ios::trunc : std::ios::app);
    if (!log_) throw Error("cannot write " + (opt.out / "train.jsonl").string());
  }
  if (opt.stop_on_signals) stop_signals_.emplace();
  result_.writer = writer;
}

RunResult Epochs::run(Trainer::Position start) {
  const auto run_start = std::chrono::steady_clock::now();
  for (std::int64_t epoch = start.epoch; epoch < opt_.epochs; ++epoch) {
    if (!run_epoch(epoch, epoch == start.epoch ? start.iteration : 0)) {
      result_.end = RunEnd::kInterrupted;
      break;
    }
  }
  result_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  result_.steps = trainer_.steps_done();
  result_.unreadable_images = reported_.size();
  return result_;
}

bool Epochs::run_epoch(std::int64_t epoch, std::int64_t first) {
  BatchLoader loader(set_, manifest_, loader_options_, epoch, first);
  Progress bar(writer_ ? &observer_ : nullptr, static_cast<std::size_t>(per_epoch_ - first),
               "epoch " + std::to_string(epoch));
  std::vector<cv::Point2d> vis;
  auto step_start = std::chrono::steady_clock::now();
  while (auto batch = loader.next()) {
    report_skipped(batch->skipped);
    const double lr = learning_rate(schedule_, epoch, epoch * per_epoch_ + batch->iteration);
    const StepStats stats = step(*batch, epoch, lr, bar);
    result_.missing_rows += opt_.batch - stats.rows;
    result_.images += stats.rows;
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - step_start).count();
    step_start = now;
    if (writer_) {
      log_step(*batch, epoch, lr, stats, seconds);
      bar.advance();
      const auto cos = stats.target_cos.contiguous();
      const auto mag = stats.x_norm.to(torch::kFloat64).contiguous();
      for (std::int64_t i = 0; i < cos.numel() && vis.size() < 50000; ++i)
        vis.emplace_back(cos[i].item<double>(), mag[i].item<double>());
    }
    if (stop_agreed()) {
      const auto path = opt_.out / "interrupted.pth";
      save(path, epoch, batch->iteration + 1);
      bar.clear();
      if (writer_) spdlog::info("interrupted; continue with --resume {}", path.string());
      return false;
    }
  }
  bar.clear();
  const auto path = epoch_checkpoint(opt_.out, epoch + 1);
  save(path, epoch + 1, 0);
  if (writer_) {
    auto png = opt_.out / ("vis_mag_" + path.stem().string() + ".png");
    write_vis_mag(png, vis, epoch, loss_.name);
    spdlog::info("epoch {} done: {}", epoch, path.string());
  }
  return true;
}

void Epochs::report_skipped(const std::vector<std::string>& skipped) {
  for (const auto& s : skipped) {
    if (reported_.insert(s).second)
      observer_.image_skipped(s.substr(0, s.find(": ")), s.substr(s.find(": ") + 2));
  }
}

StepStats Epochs::step(const TrainingBatch& batch, std::int64_t epoch, double lr,
                       Progress& progress) {
  try {
    return trainer_.step(batch.images, batch.labels, lr);
  } catch (const TrainingDiverged& e) {
    const auto last_good = opt_.out / "last-good.pth";
    save(last_good, epoch, batch.iteration);
    progress.clear();
    throw TrainingDiverged(
        std::string(e.what()) + " (epoch " + std::to_string(epoch) + ", iteration " +
        std::to_string(batch.iteration) + "); the state before it is in " + last_good.string() +
        (epoch > 0 ? ", the last epoch's in " + epoch_checkpoint(opt_.out, epoch).string() : ""));
  }
}

void Epochs::log_step(const TrainingBatch& batch, std::int64_t epoch, double lr,
                      const StepStats& stats, double seconds) {
  json record = {{"epoch", epoch},
                 {"iteration", batch.iteration},
                 {"step", trainer_.steps_done()},
                 {"loss", stats.loss},
                 {"loss_id", stats.loss_id},
                 {"loss_g", stats.loss_g},
                 {"mag_mean", stats.magnitude_mean},
                 {"mag_min", stats.magnitude_min},
                 {"mag_max", stats.magnitude_max},
                 {"margin", stats.margin_mean},
                 {"lr", lr},
                 {"top1", stats.top1},
                 {"img_per_s", static_cast<double>(stats.rows) / seconds},
                 {"skipped", result_.missing_rows}};
  log_ << record.dump() << std::endl;
}

bool Epochs::stop_agreed() {
  const bool asked = (stop_signals_ && StopOnSignal::requested()) || observer_.stop_requested();
  auto stop = torch::tensor({asked ? 1.0f : 0.0f});
  collective_.all_reduce_max(stop);
  return stop.item<float>() > 0;
}

void Epochs::save(const std::filesystem::path& path, std::int64_t epoch, std::int64_t iteration) {
  trainer_.save_checkpoint(path, epoch, iteration, writer_);
  if (writer_) save_manifest(manifest_path_for(path), trained_);
  result_.checkpoint = path;
}

RunResult suggested_bounds(const TrainableNetwork& network, const TrainingSet& set,
                           const ModelManifest& manifest, const MarginLossOptions& loss,
                           bool writer) {
  RunResult result;
  result.end = RunEnd::kBoundsSuggested;
  result.writer = writer;
  result.bounds = suggest_bounds(network, set, manifest, 2000);
  result.loss = loss;
  return result;
}

}  // namespace

TrainingSet prepare_training_set(const RunOptions& options, RunObserver& observer) {
  return prepared_set(options, model_manifest(options), observer);
}

RunResult run_training(const RunOptions& opt, RunObserver& observer) {
  const auto rendezvous = rendezvous_from_environment();
  const bool writer = rendezvous.rank == 0;
  // Every process would log the same lines: rank 0 speaks for the run (a worker of
  // launch_training is a process of its own, so the level it sets stays there).
  if (!writer) spdlog::set_level(spdlog::level::warn);
  configure_runtime(opt.threads);

  const ModelManifest manifest = model_manifest(opt);
  const auto loss = loss_options(opt);
  if (opt.precision != "fp32" && opt.precision != "bf16")
    throw InvalidInput("--precision " + opt.precision + ": training takes fp32 or bf16");
  const TrainableNetwork network = starting_network(opt, manifest);
  const TrainingSet set = prepared_set(opt, manifest, observer);
  check_aligned(set, manifest);
  if (opt.suggest_bounds) return suggested_bounds(network, set, manifest, loss, writer);

  prepare_output(opt, writer);
  auto rendezvous_options = rendezvous;
  rendezvous_options.timeout = opt.timeout;
  const auto collective = gloo_collective(rendezvous_options);
  Trainer trainer(trainer_options(opt, manifest, loss, set.num_classes), network, *collective);
  const auto start = starting_position(opt, trainer, network, set, manifest);
  const std::int64_t per_epoch = checked_iterations_per_epoch(set, opt.batch);
  Epochs epochs(opt, set, manifest, loss, per_epoch, trainer, *collective, observer, writer);
  return epochs.run(start);
}

LaunchResult launch_training(const RunOptions& options, const LaunchOptions& launch,
                             RunObserver& observer) {
  if (std::getenv("WORLD_SIZE")) throw InvalidInput("--nproc with WORLD_SIZE set: use one of them");
  if (options.suggest_bounds) throw InvalidInput("--suggest-bounds runs in one process");
  if (options.aligner) prepare_training_set(options, observer);
  return launch_local_workers(launch);
}

PhotoAligner one_face_per_photo(FaceAligner aligner) {
  auto shared = std::make_shared<const FaceAligner>(std::move(aligner));
  return [shared](const std::vector<cv::Mat>& photos, const std::vector<std::string>& names) {
    std::vector<AlignedPhoto> out;
    for (auto& candidates : shared->align(photos, names)) {
      out.push_back(
          {candidates.crops.empty() ? cv::Mat() : candidates.crops.front(), candidates.error});
    }
    return out;
  };
}

nlohmann::json bounds_record(const RunResult& result) {
  const auto& s = result.bounds;
  return {{"faces", s.faces},
          {"min", s.min},
          {"p1", s.p1},
          {"median", s.median},
          {"p99", s.p99},
          {"max", s.max},
          {"l_a", s.l_a},
          {"u_a", s.u_a},
          {"l_margin", result.loss.l_margin},
          {"u_margin", result.loss.u_margin},
          {"lambda_g", result.loss.lambda_g}};
}

std::string bounds_text(const RunResult& result) {
  const auto& s = result.bounds;
  std::ostringstream out;
  out << "magnitudes of " << s.faces << " training faces lie in [" << s.min << ", " << s.max
      << "] (median " << s.median << "); MagFace's README advises l_a below and u_a above "
      << "them:\n  --l-a " << s.l_a << " --u-a " << s.u_a << "\n";
  return out.str();
}

std::string summary_text(const RunResult& r, const std::filesystem::path& out) {
  std::ostringstream text;
  text << "trained " << r.steps << " steps, "
       << static_cast<double>(r.images) / std::max(r.seconds, 1e-9) << " img/s; "
       << (r.missing_rows ? std::to_string(r.missing_rows) + " unreadable images skipped; " : "")
       << "checkpoints in " << out.string() << "\n";
  return text.str();
}

std::vector<std::string> worker_command_line(const std::vector<std::string>& command_line,
                                             int threads_per_worker) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < command_line.size(); ++i) {
    const auto& a = command_line[i];
    if (a == "--nproc" || a == "--threads") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0 || a.rfind("--threads=", 0) == 0) continue;
    out.push_back(a);
  }
  out.push_back("--threads");
  out.push_back(std::to_string(threads_per_worker));
  return out;
}

}  // namespace facemag::train
