#include "facemag/runtime.hpp"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>

#include <thread>

namespace facemag {

int configure_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // OpenBLAS (Debian's libblas.so.3 alternative) starts its own pthread pool, which competes
  // with LibTorch's OpenMP threads: 2-3x slower on small convolutions. LibTorch parallelises
  // around BLAS calls itself, so BLAS runs single-threaded.
  using SetThreads = void (*)(int);
  if (auto set_blas_threads =
          reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas_threads(1);
  }
  // Large activations are allocated with mmap and unmapped on free by default; raise both
  // thresholds so glibc reuses them (bounded by the peak working set of one batch).
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return at::get_num_threads();
}

}  // namespace facemag
