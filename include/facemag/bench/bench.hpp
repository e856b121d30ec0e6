// Throughput on this machine, as `facemag bench` measures it (and a Python benchmark would): the
// photo pipeline (detection alone, or detection + embedding), embedding and training steps on
// synthetic faces, each timed as the median of repetitions after a warm-up, and soak runs that
// sample resident memory to tell a leak from warm-up. Each measurement is one JSON record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "facemag/detect/mtcnn.hpp"

namespace facemag::bench {

// Median wall time in seconds of `repeat` (at least 1) runs of `work`, after one warm-up run.
double median_seconds(int repeat, const std::function<void()>& work);

// Progress of a soak run, for a front end to show; every member is optional.
struct SoakProgress {
  std::function<void(std::size_t total_images)> begin;
  std::function<void(std::size_t images)> advance;  // images just done
  std::function<void()> end;
};

// Runs `step` (which processes some images and returns how many) until `total` images are done;
// resident memory is sampled after each tenth. Memory that keeps growing after the first tenth
// (warm-up: allocator pools, oneDNN primitive caches) would be a leak. The record: images,
// seconds, images_per_s, rss_after_first_tenth_mb, rss_at_end_mb, rss_growth_mb, samples
// [{images, rss_mb}], peak_rss_mb.
nlohmann::json soak(std::size_t total, const std::function<std::size_t()>& step,
                    const SoakProgress& progress = {});

// The kernel family oneDNN runs here, and where facemag's own Winograd takes the 3x3 stride-1
// convolutions (AVX2, 64 channels or more): "oneDNN avx2 + facemag Winograd F(4x4)/F(2x2) for fp32
// 3x3".
std::string kernel_description();

struct BenchmarkOptions {
  std::string workload = "embed";  // detect | pipeline | embed | train
  // detect / pipeline: photos (files, folders, @list.txt: io::expand_inputs), and the detector,
  // loaded once the photos are read.
  std::vector<std::string> inputs;
  std::function<MtcnnDetector()> load_detector;
  MtcnnOptions detection;
  std::string arch = "iresnet18";
  std::string weights;  // empty: formula weights
  std::vector<int> batches{1, 16};
  // Precision names (parse_precision); int8 without WEIGHTS.int8.json is calibrated on synthetic
  // faces (speed only). pipeline uses the first; train takes fp32 and bf16.
  std::vector<std::string> precisions{"fp32"};
  int repeat = 3;
  std::size_t soak_images = 0;  // > 0: a soak run over this many images instead
  int threads = 0;              // configure_runtime()
  std::int64_t classes = 1000;  // train: classifier width
  std::string profile;          // train: LibTorch profiler trace of one more step
  std::string layout = "nchw";  // train: activations (train::ActivationLayout's names)
};

// A whole benchmark: configures the runtime, hands on_record a header record {cpu, kernels,
// threads, libtorch, repeat} and then each measurement's record as it is made: detect/pipeline
// {workload, images, faces, seconds, images_per_s, faces_per_s, peak_rss_mb (, model,
// precision)}; embed {workload, model, precision, batch, seconds, images_per_s, peak_rss_mb};
// train {workload, model, precision, batch, classes, layout, seconds_per_step, images_per_s,
// peak_rss_mb}; a soak run soak()'s record with "workload" "<workload> soak" (embed: also model,
// precision, batch). InvalidInput for photos that give no image or a precision train cannot use.
void run_benchmark(const BenchmarkOptions& options,
                   const std::function<void(const nlohmann::json&)>& on_record,
                   const SoakProgress& progress = {});

}  // namespace facemag::bench
