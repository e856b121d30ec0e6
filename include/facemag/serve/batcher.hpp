// Dynamic batching: items submitted by concurrent callers go through one function call together.
// One worker thread takes the oldest submission, then waits up to `max_wait` for more while other
// requests are known to be on their way (a lone caller never waits), up to `max_items`, runs the
// function on all of them and hands each caller its own results.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace facemag::serve {

template <class In, class Out>
class Batcher {
 public:
  // run(items) returns one result per item, in order. on_batch (optional) hears each batch's
  // item count (metrics).
  using Run = std::function<std::vector<Out>(const std::vector<In>&)>;
  Batcher(Run run, std::size_t max_items, std::chrono::microseconds max_wait,
          const std::atomic<int>* requests_in_flight = nullptr,
          std::function<void(std::size_t)> on_batch = {})
      : run_(std::move(run)),
        max_items_(std::max<std::size_t>(1, max_items)),
        max_wait_(max_wait),
        in_flight_(requests_in_flight),
        on_batch_(std::move(on_batch)),
        worker_([this] { loop(); }) {}

  ~Batcher() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    arrived_.notify_all();
    worker_.join();
  }
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // The results for `items` (empty items: an empty result at once). An exception of run() reaches
  // every caller of that batch.
  std::vector<Out> submit(std::vector<In> items) {
    if (items.empty()) return {};
    Job job{std::move(items), {}};
    auto result = job.promise.get_future();
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(job));
    }
    arrived_.notify_all();
    return result.get();
  }

 private:
  struct Job {
    std::vector<In> items;
    std::promise<std::vector<Out>> promise;
  };

  void loop() {
    for (;;) {
      std::vector<Job> jobs;
      std::size_t count = 0;
      {
        std::unique_lock lock(mutex_);
        arrived_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        const auto deadline = std::chrono::steady_clock::now() + max_wait_;
        for (;;) {
          while (!queue_.empty() &&
                 (jobs.empty() || count + queue_.front().items.size() <= max_items_)) {
            count += queue_.front().items.size();
            jobs.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
          // Company is worth waiting for only while other requests are in progress that have
          // not submitted yet.
          const bool others_coming =
              in_flight_ && in_flight_->load() > static_cast<int>(jobs.size());
          if (count >= max_items_ || !queue_.empty() || !others_coming || stopping_) break;
          if (arrived_.wait_until(lock, deadline) == std::cv_status::timeout) {
            if (queue_.empty()) break;
          }
        }
      }
      std::vector<In> items;
      items.reserve(count);
      for (auto& j : jobs) items.insert(items.end(), j.items.begin(), j.items.end());
      if (on_batch_) on_batch_(items.size());
      try {
        auto results = run_(items);
        std::size_t at = 0;
        for (auto& j : jobs) {
          const auto n = j.items.size();
          j.promise.set_value(std::vector<Out>(std::make_move_iterator(results.begin() + at),
                                               std::make_move_iterator(results.begin() + at + n)));
          at += n;
        }
      } catch (...) {
        for (auto& j : jobs) j.promise.set_exception(std::current_exception());
      }
    }
  }

  Run run_;
  std::size_t max_items_;
  std::chrono::microseconds max_wait_;
  const std::atomic<int>* in_flight_;
  std::function<void(std::size_t)> on_batch_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread worker_;  // last: starts once everything above is ready
};

}  // namespace facemag::serve
