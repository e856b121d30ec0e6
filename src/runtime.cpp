#include "facemag/runtime.hpp"

#include <ATen/Parallel.h>
#include <malloc.h>

#include <thread>

namespace facemag {

int configure_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // Large activations are allocated with mmap and unmapped on free by default; raise both
  // thresholds so glibc reuses them (bounded by the peak working set of one batch).
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return at::get_num_threads();
}

}  // namespace facemag
