// Process-wide runtime settings that LibTorch needs before any inference, and what this machine
// runs on.
#pragma once

#include <string>

namespace facemag {

// Sets LibTorch's intra-op thread count (0 = all cores; Debian's LibTorch otherwise starts with
// one) and keeps freed activation buffers in the process instead of returning them to the OS
// after every call (glibc's default trims and page-faults them back, 2-4x slower at batch 16+).
// Returns the thread count in effect.
int configure_runtime(int threads = 0);

// Returns the heap's free pages to the OS now, which configure_runtime() otherwise keeps: once
// after a model's load, whose temporaries (a checkpoint's tensors, a network folded into another
// form and dropped) would stay resident for the life of the process.
void release_free_heap();

// The CPU's model name as the kernel reports it (/proc/cpuinfo), or "unknown".
std::string cpu_model_name();

// The instruction-set family oneDNN dispatches its kernels to on this CPU, in oneDNN's own names
// ("avx512_core_amx", "avx512_core_bf16", "avx512_core", "avx2", ...; its verbose log names the
// kernels after them), or "unknown" for a build without oneDNN's headers.
std::string cpu_kernel_family();

// This process's peak resident memory so far (getrusage), in MiB.
double peak_rss_mb();

// This process's resident memory now (/proc/self/statm), in MiB: what a soak run samples to tell
// a leak (steady growth) from warm-up (allocator pools, primitive caches).
double current_rss_mb();

}  // namespace facemag
