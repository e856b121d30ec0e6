#include "facemag/train/training_data.hpp"

#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "facemag/error.hpp"
#include "facemag/model/network.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/train/collective.hpp"

namespace facemag::train {
namespace {

bool parse_label(const std::string& text, std::int64_t& label) {
  if (text.empty() || text.size() > 18) return false;
  label = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    label = label * 10 + (c - '0');
  }
  return true;
}

// Missing images, classes: the checks every set goes through before training starts.
void check_set(TrainingSet& set, std::int64_t num_classes) {
  if (set.samples.empty()) throw InvalidInput(set.source + ": no training images");
  std::int64_t largest = 0;
  std::vector<std::string> missing;
  std::size_t missing_count = 0;
  for (const auto& s : set.samples) {
    largest = std::max(largest, s.label);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(s.path, ec)) {
      if (missing.size() < 3) missing.push_back(s.path.string());
      ++missing_count;
    }
  }
  if (missing_count) {
    std::string names;
    for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
    throw InvalidInput(set.source + ": " + std::to_string(missing_count) +
                       " listed image(s) do not exist: " + names +
                       (missing_count > missing.size() ? ", ..." : ""));
  }
  set.num_classes = num_classes > 0 ? num_classes : largest + 1;
  if (largest >= set.num_classes) {
    throw InvalidInput(set.source + ": label " + std::to_string(largest) + " is out of range for " +
                       std::to_string(set.num_classes) + " classes");
  }
  std::vector<bool> seen(static_cast<std::size_t>(set.num_classes), false);
  std::int64_t distinct = 0;
  for (const auto& s : set.samples) {
    if (!seen[static_cast<std::size_t>(s.label)]) ++distinct;
    seen[static_cast<std::size_t>(s.label)] = true;
  }
  if (distinct < 2) {
    throw InvalidInput(set.source + ": all " + std::to_string(set.samples.size()) +
                       " images have one label; a classifier needs at least two classes");
  }
}

}  // namespace

TrainingSet read_training_list(const std::filesystem::path& list, const std::filesystem::path& root,
                               std::int64_t num_classes) {
  std::ifstream in(list);
  if (!in) throw InvalidInput("cannot read the training list " + list.string());
  const auto base = root.empty() ? list.parent_path() : root;
  TrainingSet set;
  set.source = list.string();
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.empty()) continue;
    const auto where = list.string() + ":" + std::to_string(number);
    if (f.size() != 2 && f.size() != 4) {
      throw InvalidInput(where + ": expected 'path 0 label 0' or 'path label', got " +
                         std::to_string(f.size()) + " field(s)");
    }
    const std::string& label_text = f.size() == 4 ? f[2] : f[1];
    TrainingSample s;
    if (!parse_label(label_text, s.label)) {
      throw InvalidInput(where + ": label '" + label_text + "' is not a non-negative integer");
    }
    if (num_classes > 0 && s.label >= num_classes) {
      throw InvalidInput(where + ": label " + label_text + " is out of range for " +
                         std::to_string(num_classes) + " classes");
    }
    const std::filesystem::path p = f[0];
    s.path = p.is_absolute() ? p : base / p;
    set.samples.push_back(std::move(s));
  }
  check_set(set, num_classes);
  return set;
}

TrainingSet read_training_folder(const std::filesystem::path& folder,
                                 std::vector<std::string>* class_names) {
  if (!std::filesystem::is_directory(folder))
    throw InvalidInput(folder.string() + " is not a folder");
  std::vector<std::filesystem::path> people;
  for (const auto& e : std::filesystem::directory_iterator(folder)) {
    if (e.is_directory()) people.push_back(e.path());
  }
  std::sort(people.begin(), people.end());
  TrainingSet set;
  set.source = folder.string();
  for (std::size_t label = 0; label < people.size(); ++label) {
    std::vector<std::filesystem::path> images;
    for (const auto& e : std::filesystem::directory_iterator(people[label])) {
      auto ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (e.is_regular_file() &&
          (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".webp"))
        images.push_back(e.path());
    }
    std::sort(images.begin(), images.end());
    for (auto& p : images) set.samples.push_back({p, static_cast<std::int64_t>(label)});
    if (class_names) class_names->push_back(people[label].filename().string());
  }
  check_set(set, static_cast<std::int64_t>(people.size()));
  return set;
}

std::vector<std::int64_t> epoch_permutation(std::int64_t count, std::uint64_t seed,
                                            std::int64_t epoch) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) order[static_cast<std::size_t>(i)] = i;
  // mt19937_64 is defined exactly by the standard: the same order on every platform.
  std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(epoch));
  for (std::int64_t i = count - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

bool flipped(std::uint64_t seed, std::int64_t epoch, std::int64_t position) {
  return nn::formula_uniform("flip:" + std::to_string(seed) + ":" + std::to_string(epoch),
                             static_cast<std::uint64_t>(position)) < 0;
}

std::int64_t iterations_per_epoch(std::int64_t samples, std::int64_t batch_size) {
  return batch_size > 0 ? samples / batch_size : 0;
}

struct BatchLoader::State {
  const TrainingSet& set;
  ModelManifest manifest;
  LoaderOptions options;
  std::int64_t epoch;
  std::vector<std::int64_t> order;
  std::int64_t end, share_begin, share_size;

  std::mutex mutex;
  std::condition_variable changed;
  std::int64_t next_to_read, next_to_return;
  std::map<std::int64_t, TrainingBatch> ready;
  bool stopping = false;
  std::exception_ptr failure;
  std::vector<std::thread> threads;

  State(const TrainingSet& s, ModelManifest m, const LoaderOptions& o, std::int64_t e,
        std::int64_t first)
      : set(s), manifest(std::move(m)), options(o), epoch(e) {
    order = epoch_permutation(static_cast<std::int64_t>(s.samples.size()), o.seed, e);
    end = iterations_per_epoch(static_cast<std::int64_t>(s.samples.size()), o.batch_size);
    const auto counts = split_counts(o.batch_size, o.world_size);
    share_begin = 0;
    for (int r = 0; r < o.rank; ++r) share_begin += counts[static_cast<std::size_t>(r)];
    share_size = counts[static_cast<std::size_t>(o.rank)];
    next_to_read = next_to_return = std::min(first, end);
  }

  TrainingBatch read(std::int64_t iteration) const {
    TrainingBatch batch;
    batch.epoch = epoch;
    batch.iteration = iteration;
    std::vector<cv::Mat> faces;
    std::vector<std::int64_t> labels;
    for (std::int64_t k = 0; k < share_size; ++k) {
      const std::int64_t position = iteration * options.batch_size + share_begin + k;
      const auto& sample =
          set.samples[static_cast<std::size_t>(order[static_cast<std::size_t>(position)])];
      cv::Mat image = cv::imread(sample.path.string(), cv::IMREAD_COLOR);
      if (image.empty()) {
        batch.skipped.push_back(sample.path.string() + ": not a readable image");
        continue;
      }
      if (image.cols != manifest.input_width || image.rows != manifest.input_height) {
        batch.skipped.push_back(sample.path.string() + ": " + std::to_string(image.cols) + "x" +
                                std::to_string(image.rows) + ", not an aligned " +
                                std::to_string(manifest.input_width) + "x" +
                                std::to_string(manifest.input_height) + " face");
        continue;
      }
      if (options.random_flip && flipped(options.seed, epoch, position)) cv::flip(image, image, 1);
      faces.push_back(std::move(image));
      labels.push_back(sample.label);
    }
    batch.images = faces.empty() ? torch::empty({0, 3, manifest.input_height, manifest.input_width})
                                 : preprocess_faces(manifest, faces);
    batch.labels = torch::tensor(labels, torch::kInt64);
    return batch;
  }

  void work() {
    while (true) {
      std::int64_t iteration;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] {
          return stopping || next_to_read >= end ||
                 next_to_read < next_to_return + options.batches_ahead;
        });
        if (stopping || next_to_read >= end) return;
        iteration = next_to_read++;
      }
      try {
        auto batch = read(iteration);
        std::lock_guard lock(mutex);
        ready.emplace(iteration, std::move(batch));
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!failure) failure = std::current_exception();
      }
      changed.notify_all();
    }
  }
};

BatchLoader::BatchLoader(const TrainingSet& set, const ModelManifest& manifest,
                         const LoaderOptions& options, std::int64_t epoch,
                         std::int64_t first_iteration)
    : state_(std::make_unique<State>(set, manifest, options, epoch, first_iteration)) {
  if (options.batch_size < options.world_size) {
    throw InvalidInput("batch size " + std::to_string(options.batch_size) +
                       " is smaller than the number of processes " +
                       std::to_string(options.world_size));
  }
  for (int w = 0; w < std::max(1, options.workers); ++w)
    state_->threads.emplace_back([s = state_.get()] { s->work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
  }
  state_->changed.notify_all();
  for (auto& t : state_->threads) t.join();
}

std::int64_t BatchLoader::iterations() const { return state_->end; }

std::optional<TrainingBatch> BatchLoader::next() {
  auto& s = *state_;
  std::unique_lock lock(s.mutex);
  if (s.next_to_return >= s.end) return std::nullopt;
  s.changed.wait(lock, [&] { return s.failure || s.ready.count(s.next_to_return); });
  if (s.failure) std::rethrow_exception(s.failure);
  auto node = s.ready.extract(s.next_to_return++);
  lock.unlock();
  s.changed.notify_all();
  return std::move(node.mapped());
}

}  // namespace facemag::train
