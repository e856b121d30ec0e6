#include "facemag/bench/bench.hpp"

#include <ATen/Version.h>
#include <torch/torch.h>
#include <unistd.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>

#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/model/network.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/nn/onednn/blocked_training.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"
#include "facemag/train/collective.hpp"
#include "facemag/train/trainer.hpp"

namespace facemag::bench {
namespace {

using Record = std::function<void(const nlohmann::json&)>;

std::vector<cv::Mat> load_images(const std::vector<std::string>& inputs) {
  std::vector<cv::Mat> images;
  for (const auto& file : io::expand_inputs(inputs))
    images.push_back(io::read_image_bgr(file.path));
  if (images.empty()) throw InvalidInput("bench: no images in the given inputs");
  return images;
}

Embedder load_embedder(const BenchmarkOptions& opt, const std::string& precision) {
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
void bench_train(const BenchmarkOptions& opt, const Record& on_record) {
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
      on_record({{"workload", "train"},
                 {"model", m.architecture},
                 {"precision", precision},
                 {"batch", batch},
                 {"classes", opt.classes},
                 {"layout", train::activation_layout_name(options.layout)},
                 {"seconds_per_step", seconds},
                 {"images_per_s", batch / seconds},
                 {"peak_rss_mb", peak_rss_mb()}});
    }
  }
}

// detect / pipeline: photos through MTCNN (and the embedder), timed as one batch.
void bench_photos(const BenchmarkOptions& opt, const Record& on_record,
                  const SoakProgress& progress) {
  const auto images = load_images(opt.inputs);
  const MtcnnDetector detector = opt.load_detector();
  const MtcnnOptions& options = opt.detection;
  std::optional<Embedder> embedder;
  if (opt.workload == "pipeline") embedder = load_embedder(opt, opt.precisions.front());
  if (opt.soak_images > 0) {
    std::size_t next_image = 0;
    const auto step = [&]() -> std::size_t {
      const cv::Mat& image = images[next_image++ % images.size()];
      if (embedder) {
        FacePipeline(detector, *embedder, options).process(image);
      } else {
        detector.detect(image, options);
      }
      return 1;
    };
    auto result = soak(opt.soak_images, step, progress);
    result["workload"] = opt.workload + " soak";
    on_record(result);
    return;
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
  on_record(result);
}

// embed: synthetic aligned faces, so that no data is needed.
void bench_embed(const BenchmarkOptions& opt, const Record& on_record,
                 const SoakProgress& progress) {
  for (const auto& precision : opt.precisions) {
    const Embedder embedder = load_embedder(opt, precision);
    const auto& m = embedder.manifest();
    if (opt.soak_images > 0) {
      const int batch = opt.batches.front();
      const auto input = torch::rand({batch, 3, m.input_height, m.input_width});
      const auto step = [&]() -> std::size_t {
        embedder.forward(input);
        return static_cast<std::size_t>(batch);
      };
      auto result = soak(opt.soak_images, step, progress);
      result["workload"] = "embed soak";
      result["model"] = m.name;
      result["precision"] = precision_name(embedder.precision());
      result["batch"] = batch;
      on_record(result);
      continue;
    }
    for (const int batch : opt.batches) {
      const auto input = torch::rand({batch, 3, m.input_height, m.input_width});
      const double seconds = median_seconds(opt.repeat, [&] { embedder.forward(input); });
      on_record({{"workload", "embed"},
                 {"model", m.name},
                 {"precision", precision_name(embedder.precision())},
                 {"batch", batch},
                 {"seconds", seconds},
                 {"images_per_s", batch / seconds},
                 {"peak_rss_mb", peak_rss_mb()}});
    }
  }
}

}  // namespace

double median_seconds(int repeat, const std::function<void()>& work) {
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

nlohmann::json soak(std::size_t total, const std::function<std::size_t()>& step,
                    const SoakProgress& progress) {
  nlohmann::json samples = nlohmann::json::array();
  std::size_t done = 0, next = total / 10;
  const auto t0 = std::chrono::steady_clock::now();
  if (progress.begin) progress.begin(total);
  while (done < total) {
    const std::size_t n = step();
    done += n;
    if (progress.advance) progress.advance(n);
    if (done >= next) {
      samples.push_back({{"images", done}, {"rss_mb", current_rss_mb()}});
      next += total / 10;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (progress.end) progress.end();
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

std::string kernel_description() {
  std::string text = "oneDNN " + cpu_kernel_family();
  if (nn::blocked::stride_one_algorithm(128, 128) == nn::blocked::StrideOneAlgorithm::kWinograd2x2)
    text += " + facemag Winograd F(4x4)/F(2x2) for fp32 3x3";
  return text;
}

void run_benchmark(const BenchmarkOptions& options,
                   const std::function<void(const nlohmann::json&)>& on_record,
                   const SoakProgress& progress) {
  const int threads = configure_runtime(options.threads);
  on_record({{"cpu", cpu_model_name()},
             {"kernels", kernel_description()},
             {"threads", threads},
             {"libtorch", TORCH_VERSION},
             {"repeat", options.repeat}});
  if (options.workload == "detect" || options.workload == "pipeline") {
    bench_photos(options, on_record, progress);
  } else if (options.workload == "train") {
    bench_train(options, on_record);
  } else {
    bench_embed(options, on_record, progress);
  }
}

}  // namespace facemag::bench
