// Training faces: lists and folders of aligned crops, read ahead of the network by worker
// threads in a bounded queue.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facemag/embed/embedder.hpp"

namespace facemag::train {

struct TrainingSample {
  std::filesystem::path path;
  std::int64_t label = 0;
};

struct TrainingSet {
  std::vector<TrainingSample> samples;
  std::int64_t num_classes = 0;
  std::string source;  // the list or folder, for messages
};

// A MagFace training list: `path 0 label 0` per line (field 0 the path, field 2 the label, as
// MagFace's dataloader reads it) or the two-column `path label` variant; relative paths are
// taken from `root` (empty: the list's folder). Classes = largest label + 1 unless `num_classes`
// > 0. Throws InvalidInput naming the file and line for: a line of another shape, a label that is
// not a non-negative integer or is >= num_classes, a missing image (the first few are named),
// an empty list, fewer than two classes.
TrainingSet read_training_list(const std::filesystem::path& list, const std::filesystem::path& root,
                               std::int64_t num_classes = 0);

// A folder with one sub-folder of images per person (labels in sorted name order); the same
// checks. `class_names` receives the sub-folder names when given.
TrainingSet read_training_folder(const std::filesystem::path& folder,
                                 std::vector<std::string>* class_names = nullptr);

// The order of an epoch: a permutation of [0, count) that depends only on (seed, epoch).
std::vector<std::int64_t> epoch_permutation(std::int64_t count, std::uint64_t seed,
                                            std::int64_t epoch);
// Whether the face at `position` of `epoch`'s order is mirrored (p = 0.5, from (seed, epoch,
// position) alone, so every thread count and process count gives the same batches).
bool flipped(std::uint64_t seed, std::int64_t epoch, std::int64_t position);

struct LoaderOptions {
  std::int64_t batch_size = 64;  // global batch: every process together
  bool random_flip = true;
  std::uint64_t seed = 0;
  int workers = 2;               // decoding threads
  int batches_ahead = 4;         // bound of the queue
  int rank = 0, world_size = 1;  // this process takes its share of every global batch
};

struct TrainingBatch {
  std::int64_t epoch = 0, iteration = 0;
  torch::Tensor images;  // R x 3 x H x W, preprocessed for the model (R <= this process's share)
  torch::Tensor labels;  // R int64
  // Images that could not be read ("path: why"); they are left out of the batch.
  std::vector<std::string> skipped;
};

// Reads the batches of one epoch in order (iterations = samples / batch_size, the last partial
// batch dropped as upstream's loader does), starting at `first_iteration`. Images are read as
// 8-bit BGR, must be exactly the model's input size, are mirrored where `flipped` says and
// preprocessed with the manifest's colour order and normalisation.
class BatchLoader {
 public:
  BatchLoader(const TrainingSet& set, const ModelManifest& manifest, const LoaderOptions& options,
              std::int64_t epoch, std::int64_t first_iteration = 0);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  std::int64_t iterations() const;
  // The next batch, or nullopt after the epoch's last one.
  std::optional<TrainingBatch> next();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Iterations of an epoch of `samples` at `batch_size` (the partial last batch dropped).
std::int64_t iterations_per_epoch(std::int64_t samples, std::int64_t batch_size);

}  // namespace facemag::train
