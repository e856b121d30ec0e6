// `facemag bench`: throughput of detection, the photo pipeline and embedding on this machine,
// with warm-up and the median of repetitions; one JSON object per measurement on stdout.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "common.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/nn/onednn/blocked_training.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"
#include "facemag/train/collective.hpp"
#include "facemag/train/trainer.hpp"

namespace facemag::cli {
namespace {

struct BenchOptions {
  std::string workload;  // detect | pipeline | embed
  std::vector<std::string> inputs;
  DetectorOptions detector;
  std::string arch = "iresnet18";
  std::string weights;  // empty: formula weights
  std::vector<int> batches{1, 16};
  std::vector<std::string> precisions{"fp32"};
  int repeat = 3;
  std::size_t soak_images = 0;  // > 0: memory-growth run over this many images
  int threads = 0;
  std::int64_t classes = 1000;  // train: classifier width
  std::string profile;          // train: LibTorch profiler trace of one more step
  std::string layout = "nchw";  // train: activations (train::ActivationLayout's names)
};

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Resident memory now (not the peak), from /proc/self/statm.
double current_rss_mb() {
  std::ifstream in("/proc/self/statm");
  std::size_t pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

// Runs `step` (which processes some images and returns how many) until `total` images are done;
// resident memory is sampled after each tenth. Memory that keeps growing after the first tenth
// (warm-up: allocator pools, oneDNN primitive caches) would be a leak.
template <class F>
nlohmann::json soak(std::size_t total, F step) {
  nlohmann::json samples = nlohmann::json::array();
  std::size_t done = 0, next = total / 10;
  const auto t0 = std::chrono::steady_clock::now();
  ProgressBar progress(total, "soak");
  while (done < total) {
    const std::size_t n = step();
    done += n;
    progress.advance(n);
    if (done >= next) {
      samples.push_back({{"images", done}, {"rss_mb", current_rss_mb()}});
      next += total / 10;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double first = samples.front()["rss_mb"].get<double>();
  const double last = samples.back()["rss_mb"].get<double>();
  return {{"images", done},
          {"seconds", seconds},
          {"images_per_s", static_cast<double>(done) / seconds},
          {"rss_after_first_tenth_mb", first},
          {"rss_at_end_mb", last},
          {"rss_growth_mb", last - first},
          {"samples", samples},
          {"peak_rss_mb", peak_rss_mb()}};
}

// Median wall time in seconds of `repeat` runs of `work`, after one warm-up run.
template <class F>
double median_seconds(int repeat, F work) {
  work();
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    work();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<cv::Mat> load_images(const std::vector<std::string>& inputs) {
  std::vector<cv::Mat> images;
  for (const auto& file : io::expand_inputs(inputs))
    images.push_back(io::read_image_bgr(file.path));
  if (images.empty()) throw InvalidInput("bench: no images in the given inputs");
  return images;
}

Embedder load_embedder(const BenchOptions& opt, const std::string& precision) {
  const ModelManifest manifest = builtin_manifest(opt.arch);
  const auto load = [&](const EmbedderOptions& options) {
    return opt.weights.empty() ? Embedder::with_formula_weights(manifest, options)
                               : Embedder::load(manifest, opt.weights, options);
  };
  EmbedderOptions options{parse_precision(precision)};
  if (options.precision == Precision::kInt8 &&
      (opt.weights.empty() || !std::filesystem::exists(int8_calibration_path(opt.weights)))) {
    // Speed only: calibrated on synthetic faces (accuracy needs `facemag calibrate-int8` on real
    // ones); the file is written for the loader and removed.
    const Embedder fp32 = load({Precision::kReference});  // calibration runs on LibTorch
    std::vector<cv::Mat> faces(16);
    for (auto& face : faces) {
      face = cv::Mat(manifest.input_height, manifest.input_width, CV_8UC3);
      cv::randu(face, 0, 256);
    }
    const auto file = std::filesystem::temp_directory_path() /
                      ("facemag-bench-" + std::to_string(getpid()) + ".int8.json");
    write_int8_calibration(file, fp32.manifest(), fp32.calibrate_int8(faces));
    options.int8_calibration = file;
    auto embedder = load(options);
    std::filesystem::remove(file);
    return embedder;
  }
  return load(options);
}

// Training steps (MagFace loss, SGD) on synthetic faces: what bench/train_vs_pytorch.sh compares
// with PyTorch running the same graph.
int bench_train(const BenchOptions& opt) {
  for (const auto& precision : opt.precisions) {
    if (precision != "fp32" && precision != "bf16")
      throw InvalidInput("bench train: --precision fp32 or bf16, not " + precision);
    for (const int batch : opt.batches) {
      train::TrainerOptions options;
      options.manifest = builtin_manifest(opt.arch);
      options.num_classes = opt.classes;
      options.bfloat16 = precision == "bf16";
      options.layout = train::activation_layout_from_name(opt.layout);
      auto network = build_network(options.manifest);
      train::initialize_like_magface(*network.module, 0);
      auto single = train::single_process_collective();
      train::Trainer trainer(options, network, *single);
      const auto& m = options.manifest;
      torch::manual_seed(0);
      const auto images = torch::rand({batch, 3, m.input_height, m.input_width});
      const auto labels = torch::randint(opt.classes, {batch}, torch::kInt64);
      const double seconds =
          median_seconds(opt.repeat, [&] { trainer.step(images, labels, 0.01); });
      if (!opt.profile.empty()) {
        torch::autograd::profiler::RecordProfile trace(opt.profile);
        trainer.step(images, labels, 0.01);
      }
      std::cout << nlohmann::json{{"workload", "train"},
                                  {"model", m.architecture},
                                  {"precision", precision},
                                  {"batch", batch},
                                  {"classes", opt.classes},
                                  {"layout", train::activation_layout_name(options.layout)},
                                  {"seconds_per_step", seconds},
                                  {"images_per_s", batch / seconds},
                                  {"peak_rss_mb", peak_rss_mb()}}
                << "\n";
    }
  }
  return kExitOk;
}

// The kernel family oneDNN runs here, and where facemag's own Winograd F(2x2) takes the 3x3
// stride-1 convolutions of 128 channels or more (float32 on AVX2: oneDNN has no Winograd there).
std::string kernels() {
  std::string text = "oneDNN " + cpu_kernel_family();
  if (nn::blocked::stride_one_algorithm(128, 128) == nn::blocked::StrideOneAlgorithm::kWinograd2x2)
    text += " + facemag Winograd F(2x2) for fp32 3x3";
  return text;
}

// detect / pipeline: photos through MTCNN (and the embedder), timed as one batch.
int bench_photos(const BenchOptions& opt) {
  const auto images = load_images(opt.inputs);
  const MtcnnDetector detector = load_detector(opt.detector);
  const MtcnnOptions options = to_mtcnn_options(opt.detector);
  std::optional<Embedder> embedder;
  if (opt.workload == "pipeline") embedder = load_embedder(opt, opt.precisions.front());
  if (opt.soak_images > 0) {
    std::size_t next_image = 0;
    auto result = soak(opt.soak_images, [&]() -> std::size_t {
      const cv::Mat& image = images[next_image++ % images.size()];
      if (embedder) {
        FacePipeline(detector, *embedder, options).process(image);
      } else {
        detector.detect(image, options);
      }
      return 1;
    });
    result["workload"] = opt.workload + " soak";
    std::cout << result << "\n";
    return kExitOk;
  }
  std::size_t faces = 0;
  const double seconds = median_seconds(opt.repeat, [&] {
    faces = 0;
    if (embedder) {
      for (const auto& found : FacePipeline(detector, *embedder, options).process_batch(images))
        faces += found.size();
    } else {
      for (const auto& found : detector.detect_batch(images, options)) faces += found.size();
    }
  });
  nlohmann::json result{{"workload", opt.workload},
                        {"images", images.size()},
                        {"faces", faces},
                        {"seconds", seconds},
                        {"images_per_s", images.size() / seconds},
                        {"faces_per_s", faces / seconds},
                        {"peak_rss_mb", peak_rss_mb()}};
  if (embedder) {
    result["model"] = embedder->manifest().name;
    result["precision"] = precision_name(embedder->precision());
  }
  std::cout << result << "\n";
  return kExitOk;
}

// embed: synthetic aligned faces, so that no data is needed.
int bench_embed(const BenchOptions& opt) {
  for (const auto& precision : opt.precisions) {
    const Embedder embedder = load_embedder(opt, precision);
    const auto& m = embedder.manifest();
    if (opt.soak_images > 0) {
      const int batch = opt.batches.front();
      const auto input = torch::rand({batch, 3, m.input_height, m.input_width});
      auto result = soak(opt.soak_images, [&]() -> std::size_t {
        embedder.forward(input);
        return static_cast<std::size_t>(batch);
      });
      result["workload"] = "embed soak";
      result["model"] = m.name;
      result["precision"] = precision_name(embedder.precision());
      result["batch"] = batch;
      std::cout << result << "\n";
      continue;
    }
    for (const int batch : opt.batches) {
      const auto input = torch::rand({batch, 3, m.input_height, m.input_width});
      const double seconds = median_seconds(opt.repeat, [&] { embedder.forward(input); });
      std::cout << nlohmann::json{{"workload", "embed"},
                                  {"model", m.name},
                                  {"precision", precision_name(embedder.precision())},
                                  {"batch", batch},
                                  {"seconds", seconds},
                                  {"images_per_s", batch / seconds},
                                  {"peak_rss_mb", peak_rss_mb()}}
                << "\n";
    }
  }
  return kExitOk;
}

int run_bench(const BenchOptions& opt) {
  const int threads = configure_runtime(opt.threads);
  std::cout << nlohmann::json{{"cpu", cpu_model_name()},
                              {"kernels", kernels()},
                              {"threads", threads},
                              {"libtorch", TORCH_VERSION},
                              {"repeat", opt.repeat}}
            << "\n";
  if (opt.workload == "detect" || opt.workload == "pipeline") return bench_photos(opt);
  if (opt.workload == "train") return bench_train(opt);
  return bench_embed(opt);
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  auto* bench = app.add_subcommand(
      "bench", "Measure images/s and peak memory (detect, pipeline, embed, train)");
  bench->add_option("workload", opt->workload, "detect, pipeline, embed or train")
      ->required()
      ->check(CLI::IsMember({"detect", "pipeline", "embed", "train"}));
  bench->add_option("inputs", opt->inputs,
                    "Photos for detect/pipeline (files, folders, @list.txt)");
  add_detector_options(*bench, opt->detector);
  bench->add_option("--arch", opt->arch, "Embedding architecture")
      ->check(CLI::IsMember(builtin_architectures()))
      ->capture_default_str();
  bench->add_option("--weights", opt->weights,
                    "Checkpoint (default: deterministic formula weights)");
  add_store_model_option(*bench, opt->arch, opt->weights, nullptr);
  bench->add_option("--batch", opt->batches, "Batch sizes for embed")
      ->delimiter(',')
      ->capture_default_str();
  bench
      ->add_option("--precision", opt->precisions,
                   "reference, fp32, bf16 and/or int8 (comma-separated: compared in one run; "
                   "int8 without WEIGHTS.int8.json is calibrated on synthetic faces)")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("--repeat", opt->repeat, "Timed repetitions (median reported)")
      ->capture_default_str();
  bench->add_option("--soak", opt->soak_images,
                    "Memory run: process this many images (cycling through the inputs) and "
                    "report resident memory after each tenth");
  bench->add_option("--threads", opt->threads, "CPU threads (0 = all cores)")
      ->capture_default_str();
  bench->add_option("--classes", opt->classes, "train: classes of the classifier")
      ->capture_default_str();
  bench
      ->add_option("--layout", opt->layout,
                   "train: activations nchw, channels-last or blocked (as facemag train)")
      ->check(CLI::IsMember({"nchw", "channels-last", "blocked"}))
      ->capture_default_str();
  bench->add_option(
      "--profile", opt->profile,
      "train: write LibTorch's profiler trace of one more step here (chrome://tracing)");
  bench->footer(
      "train: one process per configuration gives its own peak_rss_mb (the peak is per process).");
  return [bench, opt]() -> int { return bench->parsed() ? run_bench(*opt) : -1; };
}

}  // namespace facemag::cli
