// Google Benchmark targets for the hot stages. Run: build/bench/facemag_bench
// Detection stages need ../shared (real MTCNN weights and photos) and are skipped without it;
// embedding uses deterministic formula weights, so it needs no data.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <filesystem>

#include "facemag/align/align.hpp"
#include "facemag/detect/mtcnn.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/io/image.hpp"
#include "facemag/runtime.hpp"

namespace {

const std::filesystem::path kShared = FACEMAG_SHARED_DIR;

void detect_photo(benchmark::State& state, const char* relative) {
  const auto weights = kShared / "weights" / "mtcnn";
  const auto photo = kShared / "data" / relative;
  if (!std::filesystem::exists(weights / "onet.pt") || !std::filesystem::exists(photo)) {
    state.SkipWithError("../shared weights or photo absent");
    return;
  }
  facemag::configure_runtime();
  const auto detector = facemag::MtcnnDetector::load(weights);
  const cv::Mat image = facemag::io::read_image_bgr(photo);
  for (auto _ : state) benchmark::DoNotOptimize(detector.detect(image));
}
BENCHMARK_CAPTURE(detect_photo, casia_250x250, "faces-casia/bruce/001.jpg")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(detect_photo, multiface_1200x630, "facenet-test-images/multiface.jpg")
    ->Unit(benchmark::kMillisecond);

void embed_formula(benchmark::State& state, const char* arch) {
  facemag::configure_runtime();
  const auto embedder = facemag::Embedder::with_formula_weights(facemag::builtin_manifest(arch));
  const auto batch = torch::rand({state.range(0), 3, 112, 112});
  for (auto _ : state) benchmark::DoNotOptimize(embedder.forward(batch));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK_CAPTURE(embed_formula, iresnet18, "iresnet18")
    ->Arg(1)
    ->Arg(16)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(embed_formula, iresnet100, "iresnet100")
    ->Arg(1)
    ->Arg(16)
    ->Unit(benchmark::kMillisecond);

void align_face(benchmark::State& state) {
  const cv::Mat image(250, 250, CV_8UC3, cv::Scalar(90, 120, 150));
  facemag::Landmarks5 marks;
  const float xy[5][2] = {{88, 110}, {150, 108}, {120, 140}, {95, 170}, {145, 168}};
  for (int i = 0; i < 5; ++i) marks[i] = {xy[i][0], xy[i][1]};
  for (auto _ : state)
    benchmark::DoNotOptimize(facemag::align_face(image, marks, facemag::arcface_template()));
}
BENCHMARK(align_face);

}  // namespace

BENCHMARK_MAIN();
