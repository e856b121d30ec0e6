// `facemag bench`: throughput of detection, the photo pipeline and embedding on this machine,
// with warm-up and the median of repetitions; one JSON object per measurement on stdout.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "facemag/bench/bench.hpp"
#include "facemag/model/network.hpp"

namespace facemag::cli {
namespace {

// The library's options, and the detector as every photo command takes it.
struct BenchOptions {
  bench::BenchmarkOptions run;
  DetectorOptions detector;
};

int run_bench(const BenchOptions& opt) {
  bench::BenchmarkOptions options = opt.run;
  options.load_detector = [&opt] { return load_detector(opt.detector); };
  options.detection = to_mtcnn_options(opt.detector);
  std::unique_ptr<ProgressBar> bar;
  bench::SoakProgress progress;
  progress.begin = [&](std::size_t total) { bar = std::make_unique<ProgressBar>(total, "soak"); };
  progress.advance = [&](std::size_t images) { bar->advance(images); };
  progress.end = [&] { bar.reset(); };
  bench::run_benchmark(
      options, [](const nlohmann::json& record) { std::cout << record << "\n"; }, progress);
  return kExitOk;
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  auto& run = opt->run;
  auto* bench = app.add_subcommand(
      "bench", "Measure images/s and peak memory (detect, pipeline, embed, train)");
  bench->add_option("workload", run.workload, "detect, pipeline, embed or train")
      ->required()
      ->check(CLI::IsMember({"detect", "pipeline", "embed", "train"}));
  bench->add_option("inputs", run.inputs, "Photos for detect/pipeline (files, folders, @list.txt)");
  add_detector_options(*bench, opt->detector);
  bench->add_option("--arch", run.arch, "Embedding architecture")
      ->check(CLI::IsMember(builtin_architectures()))
      ->capture_default_str();
  bench->add_option("--weights", run.weights,
                    "Checkpoint (default: deterministic formula weights)");
  add_store_model_option(*bench, run.arch, run.weights, nullptr);
  bench->add_option("--batch", run.batches, "Batch sizes for embed")
      ->delimiter(',')
      ->capture_default_str();
  bench
      ->add_option("--precision", run.precisions,
                   "reference, fp32, bf16 and/or int8 (comma-separated: compared in one run; "
                   "int8 without WEIGHTS.int8.json is calibrated on synthetic faces)")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("--repeat", run.repeat, "Timed repetitions (median reported)")
      ->capture_default_str();
  bench->add_option("--soak", run.soak_images,
                    "Memory run: process this many images (cycling through the inputs) and "
                    "report resident memory after each tenth");
  bench->add_option("--threads", run.threads, "CPU threads (0 = all cores)")->capture_default_str();
  bench->add_option("--classes", run.classes, "train: classes of the classifier")
      ->capture_default_str();
  bench
      ->add_option("--layout", run.layout,
                   "train: activations nchw, channels-last or blocked (as facemag train)")
      ->check(CLI::IsMember({"nchw", "channels-last", "blocked"}))
      ->capture_default_str();
  bench->add_option(
      "--profile", run.profile,
      "train: write LibTorch's profiler trace of one more step here (chrome://tracing)");
  bench->footer(
      "train: one process per configuration gives its own peak_rss_mb (the peak is per process).");
  return [bench, opt]() -> int { return bench->parsed() ? run_bench(*opt) : -1; };
}

}  // namespace facemag::cli
