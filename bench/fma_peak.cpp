// The CPU's float32 multiply-add peak with AVX2 (8-wide FMA, two per cycle on the cores this
// project runs on), on N threads: the ceiling against which a network's measured GFLOP/s is read
// (docs/performance.md, issue 42). Twelve independent accumulators per thread hide the FMA
// latency; the best of five rounds is printed as JSON.
//
//   build/bench/facemag_fma_peak [threads]     (default: all cores)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int kAccumulators = 12;
constexpr long kIterations = 100'000'000;

__attribute__((target("avx2,fma"))) float multiply_adds() {
  __m256 sums[kAccumulators];
  const __m256 scale = _mm256_set1_ps(0.999f), shift = _mm256_set1_ps(0.001f);
  for (int i = 0; i < kAccumulators; ++i) sums[i] = _mm256_set1_ps(static_cast<float>(i));
  for (long it = 0; it < kIterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kAccumulators; ++i) sums[i] = _mm256_fmadd_ps(sums[i], scale, shift);
  }
  __m256 total = sums[0];
  for (int i = 1; i < kAccumulators; ++i) total = _mm256_add_ps(total, sums[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, total);
  return lanes[0];  // used, so that the loop is not removed
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "facemag_fma_peak: this CPU has no AVX2 with FMA\n");
    return 2;
  }
  const int threads = argc > 1
                          ? std::atoi(argv[1])
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  double best = 0;
  float sink = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<float> results(threads);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] { results[t] = multiply_adds(); });
    for (auto& w : workers) w.join();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (float r : results) sink += r;
    best = std::max(best, 2.0 * 8 * kAccumulators * kIterations * threads / seconds / 1e9);
  }
  std::printf("{\"threads\":%d,\"avx2_fma_gflops\":%.1f,\"check\":%g}\n", threads, best, sink);
}
