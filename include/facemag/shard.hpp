// Splitting a photo archive across machines: each of N jobs (a Slurm job array, a Kubernetes
// Indexed Job, or N commands by hand) takes the inputs of its shard, and the shards' embedding
// matrices merge into one (`facemag embed --shard K/N`, `facemag embed --merge`).
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "facemag/io/image.hpp"

namespace facemag {

struct Shard {
  std::size_t index = 0;  // 0-based
  std::size_t count = 1;
};

// Reads a environment variable (std::getenv's contract: nullptr when unset).
using Environment = std::function<const char*(const char* name)>;

// "K/N" with 1 <= K <= N; "auto": a Slurm job array's task (SLURM_ARRAY_TASK_ID minus
// SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT); "auto/N": the same, or a Kubernetes Indexed
// Job's JOB_COMPLETION_INDEX (0-based) of N. InvalidInput naming the text or the variables when
// they do not give a shard.
Shard parse_shard(const std::string& text, const Environment& environment = {});

// The files of `shard`: those whose name (InputFile::name, as the inputs reached it) hashes to it
// (64-bit FNV-1a). Every file falls in exactly one shard whatever the machine, and a file keeps
// its shard as the archive grows (by index, adding one photo would move half of the others).
// Time O(files), memory O(files of the shard).
std::vector<io::InputFile> shard_files(const std::vector<io::InputFile>& files, const Shard& shard);

// Merges embedding matrices that `facemag embed --npy` wrote (each with its row index, the
// .jsonl beside it) into `out` (+ its row index): rows ordered by file name, then face, which is
// the order one run over a single folder gives; rows renumbered. InvalidInput naming the file for
// a part whose row index does not match its matrix, parts of other widths, or a file found in two
// parts. Time O(R log R) for R rows; memory two copies of every row (the parts
// read, the merged matrix).
void merge_embeddings(const std::vector<std::filesystem::path>& parts,
                      const std::filesystem::path& out);

}  // namespace facemag
