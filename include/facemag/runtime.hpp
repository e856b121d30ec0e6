// Process-wide runtime settings that LibTorch needs before any inference.
#pragma once

namespace facemag {

// Sets LibTorch's intra-op thread count (0 = all cores; Debian's LibTorch otherwise starts with
// one) and keeps freed activation buffers in the process instead of returning them to the OS
// after every call (glibc's default trims and page-faults them back, 2-4x slower at batch 16+).
// Returns the thread count in effect.
int configure_runtime(int threads = 0);

}  // namespace facemag
