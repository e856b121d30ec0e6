// `facemag train`: MagFace-style training and fine-tuning, in one process or several.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/runtime.hpp"
#include "facemag/train/collective.hpp"
#include "facemag/train/trainer.hpp"
#include "facemag/train/training_data.hpp"

namespace facemag::cli {
namespace {

struct TrainOptions {
  std::string data;
  std::string root;
  std::int64_t classes = 0;
  std::string out;
  std::string arch = "iresnet18";
  std::string manifest;
  std::string loss = "magface";
  std::optional<double> l_a, u_a, l_margin, u_margin, lambda_g, scale;
  std::optional<bool> easy_margin;
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
  bool freeze_bn = false;
  std::string layout = "nchw";
  std::string init;
  std::string resume;
  bool suggest_bounds = false;
  bool imprint = false;
  std::uint64_t seed = 0;
  int workers = 2;
  int threads = 0;
  std::string precision = "fp32";
  int nproc = 1;
  int timeout = 120;
  bool align = false;
  bool overwrite = false;
  ModelOptions align_options;  // detector, --landmarks, --keep for --align
};

using json = nlohmann::json;

// ---- --nproc: one worker process per rank on this machine ----

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error("--nproc: no free TCP port on 127.0.0.1 for the workers to meet");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// This process's command line without the options the launcher sets for each worker.
std::vector<std::string> worker_arguments(int threads_per_worker) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
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

std::string exit_description(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

int launch_workers(const TrainOptions& opt) {
  const int cores = configure_runtime(opt.threads);
  const int per_worker = std::max(1, cores / opt.nproc);
  const auto args = worker_arguments(per_worker);
  const int port = free_port();
  const StopOnSignal stop_on_signal;
  std::vector<pid_t> workers;
  for (int rank = 0; rank < opt.nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("--nproc: could not start worker " + std::to_string(rank));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(opt.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("OMP_NUM_THREADS", std::to_string(per_worker).c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    workers.push_back(pid);
  }
  // Wait for all; the first that fails takes the others down (they could only wait for it).
  std::size_t running = workers.size();
  int code = kExitOk;
  bool forwarded = false;
  while (running) {
    if (StopOnSignal::flag() && !forwarded) {
      for (const pid_t pid : workers) ::kill(pid, SIGINT);
      forwarded = true;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    --running;
    const auto rank = std::find(workers.begin(), workers.end(), pid) - workers.begin();
    workers[static_cast<std::size_t>(rank)] = -1;
    // Exit code 1 (some images skipped) is a finished worker; anything else broke the run.
    if (WIFEXITED(status) && WEXITSTATUS(status) == kExitSomeInputsFailed) {
      code = std::max(code, kExitSomeInputsFailed);
    } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && code != kExitError) {
      code = kExitError;
      std::cerr << "facemag: error: training worker " << rank << " of " << opt.nproc << " "
                << exit_description(status) << "; stopped the other workers\n";
      for (const pid_t other : workers) {
        if (other > 0) ::kill(other, SIGKILL);
      }
    }
  }
  return code;
}

// ---- --align: crops for the model, cached ----

train::TrainingSet align_training_set(const train::TrainingSet& set, const ModelManifest& manifest,
                                      const ModelOptions& align_options,
                                      const std::filesystem::path& cache) {
  const FaceAligner aligner(align_options, manifest);
  train::TrainingSet out;
  out.source = set.source;
  out.num_classes = set.num_classes;
  std::size_t failed = 0;
  ProgressBar progress(set.samples.size(), "aligning");
  constexpr std::size_t kChunk = 32;
  for (std::size_t start = 0; start < set.samples.size(); start += kChunk) {
    const auto end = std::min(set.samples.size(), start + kChunk);
    std::vector<cv::Mat> photos;
    std::vector<std::string> names;
    std::vector<std::size_t> which;
    for (std::size_t i = start; i < end; ++i) {
      const auto& sample = set.samples[i];
      const auto key = io::sha256_hex(sample.path.string()).substr(0, 16);
      auto crop_path = cache / std::to_string(sample.label) / (key + ".png");
      if (std::filesystem::exists(crop_path)) {
        out.samples.push_back({crop_path, sample.label});
        continue;
      }
      cv::Mat photo = cv::imread(sample.path.string(), cv::IMREAD_COLOR);
      if (photo.empty()) {
        report_skipped(sample.path.string(), "not a readable image");
        ++failed;
        continue;
      }
      photos.push_back(photo);
      names.push_back(sample.path.string());
      which.push_back(i);
    }
    const auto aligned = aligner.align(photos, names);
    for (std::size_t k = 0; k < which.size(); ++k) {
      const auto& sample = set.samples[which[k]];
      if (aligned[k].crops.empty()) {
        report_skipped(sample.path.string(), aligned[k].error);
        ++failed;
        continue;
      }
      const auto key = io::sha256_hex(sample.path.string()).substr(0, 16);
      const auto crop_path = cache / std::to_string(sample.label) / (key + ".png");
      std::filesystem::create_directories(crop_path.parent_path());
      // The extension last: it tells OpenCV the format.
      auto temporary =
          crop_path.parent_path() / (key + ".part-" + std::to_string(::getpid()) + ".png");
      if (!cv::imwrite(temporary.string(), aligned[k].crops.front()))
        throw Error("cannot write the aligned crop " + temporary.string());
      std::filesystem::rename(temporary, crop_path);
      out.samples.push_back({crop_path, sample.label});
    }
    progress.advance(end - start);
  }
  if (failed) {
    spdlog::warn("--align: {} of {} photos gave no face and are left out", failed,
                 set.samples.size());
  }
  if (out.samples.empty()) throw InvalidInput(set.source + ": no face could be aligned");
  return out;
}

// ---- the run ----

train::MarginLossOptions loss_options(const TrainOptions& opt) {
  auto o = train::margin_loss_preset(opt.loss);
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
  train::validate(o);
  return o;
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

// The manifest of the model to train: --manifest, else the built-in one of --arch.
ModelManifest model_manifest(const TrainOptions& opt) {
  return opt.manifest.empty() ? builtin_manifest(opt.arch) : load_manifest(opt.manifest);
}

// DATA as a training list or a folder per person, checked (see read_training_list).
train::TrainingSet read_training_data(const TrainOptions& opt) {
  if (!std::filesystem::is_directory(opt.data))
    return train::read_training_list(opt.data, opt.root, opt.classes);
  auto set = train::read_training_folder(opt.data);
  if (opt.classes > 0 && opt.classes != set.num_classes) {
    throw InvalidInput(opt.data + " holds " + std::to_string(set.num_classes) +
                       " people; --classes says " + std::to_string(opt.classes));
  }
  return set;
}

int run_training(const TrainOptions& opt) {
  const auto rendezvous = train::rendezvous_from_environment();
  const bool writer = rendezvous.rank == 0;
  if (!writer) spdlog::set_level(spdlog::level::warn);
  configure_runtime(opt.threads);

  ModelManifest manifest = model_manifest(opt);
  const std::filesystem::path out = opt.out;
  const auto loss = loss_options(opt);
  if (opt.precision != "fp32" && opt.precision != "bf16")
    throw InvalidInput("--precision " + opt.precision + ": training takes fp32 or bf16");
  std::vector<std::string> notes;
  TrainableNetwork network =
      opt.init.empty() ? build_network(manifest) : load_network(manifest, opt.init, &notes);
  for (const auto& n : notes) spdlog::info("--init {}: {}", opt.init, n);
  if (opt.init.empty()) train::initialize_like_magface(*network.module, opt.seed);

  train::TrainingSet set = read_training_data(opt);
  if (opt.align) set = align_training_set(set, manifest, opt.align_options, out / "aligned");
  {
    const cv::Mat first = cv::imread(set.samples.front().path.string(), cv::IMREAD_COLOR);
    if (!first.empty() &&
        (first.cols != manifest.input_width || first.rows != manifest.input_height)) {
      throw InvalidInput(set.samples.front().path.string() + " is " + std::to_string(first.cols) +
                         "x" + std::to_string(first.rows) + ", not an aligned " +
                         std::to_string(manifest.input_width) + "x" +
                         std::to_string(manifest.input_height) + " face for " + manifest.name +
                         "; add --align to detect and align the photos first");
    }
  }

  if (opt.suggest_bounds) {
    const auto s = train::suggest_bounds(network, set, manifest, 2000);
    json record = {{"faces", s.faces},
                   {"min", s.min},
                   {"p1", s.p1},
                   {"median", s.median},
                   {"p99", s.p99},
                   {"max", s.max},
                   {"l_a", s.l_a},
                   {"u_a", s.u_a},
                   {"l_margin", loss.l_margin},
                   {"u_margin", loss.u_margin},
                   {"lambda_g", loss.lambda_g}};
    std::cout << record.dump() << "\n";
    std::cerr << "magnitudes of " << s.faces << " training faces lie in [" << s.min << ", " << s.max
              << "] (median " << s.median << "); MagFace's README advises l_a below and u_a above "
              << "them:\n  --l-a " << s.l_a << " --u-a " << s.u_a << "\n";
    return kExitOk;
  }

  if (writer) {
    std::filesystem::create_directories(out);
    if (opt.resume.empty() && !opt.overwrite && std::filesystem::exists(out / "train.jsonl")) {
      throw InvalidInput(out.string() +
                         " holds an earlier run (train.jsonl); continue it with "
                         "--resume CHECKPOINT or replace it with --overwrite");
    }
  }
  auto collective = train::gloo_collective([&] {
    auto r = rendezvous;
    r.timeout = std::chrono::seconds(opt.timeout);
    return r;
  }());

  train::TrainerOptions options;
  options.manifest = manifest;
  options.loss = loss;
  options.num_classes = set.num_classes;
  options.momentum = opt.momentum;
  options.weight_decay = opt.weight_decay;
  options.dropout = opt.dropout;
  options.freeze_batch_norm = opt.freeze_bn;
  options.layout = train::activation_layout_from_name(opt.layout);
  options.seed = opt.seed;
  options.bfloat16 = opt.precision == "bf16";
  train::Trainer trainer(options, network, *collective);
  train::Trainer::Position start;
  if (!opt.resume.empty()) {
    start = trainer.resume(opt.resume);
  } else if (opt.imprint) {
    trainer.set_classifier(train::class_centres(network, set, manifest));
  }

  train::LoaderOptions loader_options;
  loader_options.batch_size = opt.batch;
  loader_options.seed = opt.seed;
  loader_options.workers = opt.workers;
  loader_options.rank = collective->rank();
  loader_options.world_size = collective->world_size();
  const std::int64_t per_epoch =
      train::iterations_per_epoch(static_cast<std::int64_t>(set.samples.size()), opt.batch);
  if (per_epoch == 0) {
    throw InvalidInput(set.source + ": " + std::to_string(set.samples.size()) +
                       " images make no full batch of " + std::to_string(opt.batch));
  }
  train::ScheduleOptions schedule;
  schedule.lr = opt.lr;
  schedule.lr_drop_epochs = opt.lr_drop_epochs;
  schedule.lr_drop_ratio = opt.lr_drop_ratio;
  schedule.warmup_iterations = opt.warmup;
  schedule.cosine = opt.cosine;
  schedule.total_iterations = per_epoch * opt.epochs;

  ModelManifest trained = manifest;
  trained.name = manifest.architecture + "-" + options.loss.name + "-trained";
  trained.magnitude_is_quality = options.loss.lambda_g > 0;
  trained.source = "facemag train on " + set.source;
  trained.sha256.clear();
  trained.fmr_thresholds.clear();
  trained.quality_threshold = 0;
  trained.threshold_calibration = "not calibrated (a generic value)";
  auto save = [&](const std::filesystem::path& path, std::int64_t epoch, std::int64_t iteration) {
    trainer.save_checkpoint(path, epoch, iteration, writer);
    if (writer) save_manifest(manifest_path_for(path), trained);
  };

  std::ofstream log;
  if (writer) {
    log.open(out / "train.jsonl", opt.resume.empty() ? std::ios::trunc : std::ios::app);
    if (!log) throw Error("cannot write " + (out / "train.jsonl").string());
  }
  const StopOnSignal stop_on_signal;
  std::set<std::string> reported;
  std::int64_t skipped = 0;
  const auto run_start = std::chrono::steady_clock::now();
  std::int64_t images_done = 0;
  for (std::int64_t epoch = start.epoch; epoch < opt.epochs; ++epoch) {
    const std::int64_t first = epoch == start.epoch ? start.iteration : 0;
    train::BatchLoader loader(set, manifest, loader_options, epoch, first);
    std::unique_ptr<ProgressBar> progress;
    if (writer)
      progress = std::make_unique<ProgressBar>(static_cast<std::size_t>(per_epoch - first),
                                               "epoch " + std::to_string(epoch));
    std::vector<cv::Point2d> vis;
    auto step_start = std::chrono::steady_clock::now();
    while (auto batch = loader.next()) {
      for (const auto& s : batch->skipped) {
        if (reported.insert(s).second)
          report_skipped(s.substr(0, s.find(": ")), s.substr(s.find(": ") + 2));
      }
      const double lr = train::learning_rate(schedule, epoch, epoch * per_epoch + batch->iteration);
      train::StepStats stats;
      try {
        stats = trainer.step(batch->images, batch->labels, lr);
      } catch (const train::TrainingDiverged& e) {
        const auto last_good = out / "last-good.pth";
        save(last_good, epoch, batch->iteration);
        if (progress) progress->clear();
        throw train::TrainingDiverged(
            std::string(e.what()) + " (epoch " + std::to_string(epoch) + ", iteration " +
            std::to_string(batch->iteration) + "); the state before it is in " +
            last_good.string() +
            (epoch > 0 ? ", the last epoch's in " + epoch_checkpoint(out, epoch).string() : ""));
      }
      skipped += opt.batch - stats.rows;
      images_done += stats.rows;
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - step_start).count();
      step_start = now;
      if (writer) {
        json record = {{"epoch", epoch},
                       {"iteration", batch->iteration},
                       {"step", trainer.steps_done()},
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
                       {"skipped", skipped}};
        log << record.dump() << std::endl;
        progress->advance();
        const auto cos = stats.target_cos.contiguous();
        const auto mag = stats.x_norm.to(torch::kFloat64).contiguous();
        for (std::int64_t i = 0; i < cos.numel() && vis.size() < 50000; ++i)
          vis.emplace_back(cos[i].item<double>(), mag[i].item<double>());
      }
      // Stop together: every process learns whether any was asked to.
      auto stop = torch::tensor({StopOnSignal::flag() ? 1.0f : 0.0f});
      collective->all_reduce_max(stop);
      if (stop.item<float>() > 0) {
        const auto path = out / "interrupted.pth";
        save(path, epoch, batch->iteration + 1);
        if (progress) progress->clear();
        if (writer)
          std::cerr << "facemag: interrupted; continue with --resume " << path.string() << "\n";
        return kExitOk;
      }
    }
    if (progress) progress->clear();
    const auto path = epoch_checkpoint(out, epoch + 1);
    save(path, epoch + 1, 0);
    if (writer) {
      auto png = out / ("vis_mag_" + path.stem().string() + ".png");
      write_vis_mag(png, vis, epoch, options.loss.name);
      spdlog::info("epoch {} done: {}", epoch, path.string());
    }
  }
  if (writer) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    std::cerr << "trained " << trainer.steps_done() << " steps, "
              << static_cast<double>(images_done) / std::max(seconds, 1e-9) << " img/s; "
              << (skipped ? std::to_string(skipped) + " unreadable images skipped; " : "")
              << "checkpoints in " << out.string() << "\n";
  }
  return reported.empty() ? kExitOk : kExitSomeInputsFailed;
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  auto opt = std::make_shared<TrainOptions>();
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
  cmd->add_option("data", opt->data, "Training list or folder")->required();
  cmd->add_option("--out", opt->out, "Folder for checkpoints and logs")->required();
  cmd->add_option("--root", opt->root, "Folder the list's relative paths start from");
  cmd->add_option("--classes", opt->classes, "Number of classes (default: largest label + 1)");
  cmd->add_option("--arch", opt->arch,
                  "iresnet18, iresnet34, iresnet50, iresnet100 or mobilefacenet")
      ->capture_default_str();
  cmd->add_option("--manifest", opt->manifest, "A model manifest instead of --arch");
  cmd->add_option("--loss", opt->loss, "magface, mag-cosface, arcface or cosface")
      ->capture_default_str();
  cmd->add_option("--l-a", opt->l_a, "Lower magnitude bound (magface: 10)");
  cmd->add_option("--u-a", opt->u_a, "Upper magnitude bound (magface: 110)");
  cmd->add_option("--l-margin", opt->l_margin, "Margin at l_a (magface 0.45; arcface: the margin)");
  cmd->add_option("--u-margin", opt->u_margin, "Margin at u_a (magface 0.8)");
  cmd->add_option("--lambda-g", opt->lambda_g, "Weight of the magnitude regulariser (magface 35)");
  cmd->add_option("--scale", opt->scale, "Logit scale (64)");
  cmd->add_option(
      "--easy-margin", opt->easy_margin,
      "true: the angular margin only where cos(theta) > 0 (MagLinear's default); false: ArcFace's");
  cmd->add_option("--epochs", opt->epochs, "Epochs")->capture_default_str();
  cmd->add_option("--batch", opt->batch, "Global batch size (all processes together)")
      ->capture_default_str();
  cmd->add_option("--lr", opt->lr, "Learning rate")->capture_default_str();
  cmd->add_option("--lr-drop-epochs", opt->lr_drop_epochs,
                  "Epochs from which the lr is multiplied by --lr-drop-ratio")
      ->capture_default_str();
  cmd->add_option("--lr-drop-ratio", opt->lr_drop_ratio, "")->capture_default_str();
  cmd->add_option("--warmup", opt->warmup, "Iterations of linear lr warm-up (not upstream)")
      ->capture_default_str();
  cmd->add_flag("--cosine", opt->cosine,
                "Cosine lr decay over the run instead of the drops (not upstream)");
  cmd->add_option("--momentum", opt->momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--weight-decay", opt->weight_decay, "SGD weight decay (every parameter)")
      ->capture_default_str();
  cmd->add_option("--dropout", opt->dropout, "iResNet Dropout2d before fc")->capture_default_str();
  cmd->add_flag("--freeze-bn", opt->freeze_bn,
                "BatchNorm uses and keeps its running statistics (small-batch fine-tuning)");
  cmd->add_option("--layout", opt->layout,
                  "Activations: nchw (upstream's rounding), channels-last, or blocked (iResNet, "
                  "fp32, oneDNN's channel blocks end to end, 1.2-1.8x PyTorch's fastest step; "
                  "AVX-512: oneDNN's Winograd F(4x4), gradients ~3x LibTorch's float rounding; "
                  "AVX2: direct kernels and facemag's Winograd F(2x2) from 128 channels, "
                  "rounding within 3x LibTorch's)")
      ->check(CLI::IsMember({"nchw", "channels-last", "blocked"}))
      ->capture_default_str();
  cmd->add_option("--init", opt->init,
                  "Start the backbone from this checkpoint (classifier fresh)");
  add_store_model_option(*cmd, opt->arch, opt->init, &opt->manifest, "--init");
  cmd->add_option("--resume", opt->resume, "Continue a run from its checkpoint");
  cmd->add_flag("--imprint", opt->imprint,
                "Start the classifier at each class's mean embedding under the initial backbone "
                "(gentler fine-tuning than random columns; not upstream)");
  cmd->add_flag(
      "--suggest-bounds", opt->suggest_bounds,
      "Measure the magnitudes of training faces under the initial backbone, propose l_a/u_a, exit");
  cmd->add_option("--seed", opt->seed, "Seed of the order, flips, classifier and dropout")
      ->capture_default_str();
  cmd->add_option("--workers", opt->workers, "Image decoding threads per process")
      ->capture_default_str();
  cmd->add_option("--threads", opt->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--precision", opt->precision,
                  "fp32, or bf16 (bfloat16 compute, float32 weights)")
      ->capture_default_str();
  cmd->add_option("--nproc", opt->nproc, "Worker processes on this machine")->capture_default_str();
  cmd->add_option("--timeout", opt->timeout,
                  "Seconds a process waits for the others before failing")
      ->capture_default_str();
  cmd->add_flag("--align", opt->align, "Detect and align the photos first (MTCNN, or --landmarks)");
  add_detector_options(*cmd, opt->align_options.detector);
  add_landmarks_option(*cmd, opt->align_options.landmarks);
  cmd->add_flag("--overwrite", opt->overwrite, "Replace an earlier run in --out");
  return [cmd, opt]() -> int {
    if (!cmd->parsed()) return -1;
    if (opt->nproc < 1) throw InvalidInput("--nproc must be at least 1");
    if (opt->nproc > 1) {
      if (std::getenv("WORLD_SIZE"))
        throw InvalidInput("--nproc with WORLD_SIZE set: use one of them");
      if (opt->suggest_bounds) throw InvalidInput("--suggest-bounds runs in one process");
      if (opt->align) {
        // Align once here, so that the workers find the cache complete.
        align_training_set(read_training_data(*opt), model_manifest(*opt), opt->align_options,
                           std::filesystem::path(opt->out) / "aligned");
      }
      return launch_workers(*opt);
    }
    return run_training(*opt);
  };
}

}  // namespace facemag::cli
