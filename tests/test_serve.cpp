// serve::Batcher: requests of concurrent callers share one run, each gets its own results, a lone
// caller does not wait, failures reach every caller of the batch.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

#include "facemag/serve/batcher.hpp"

namespace facemag {
namespace {

using Clock = std::chrono::steady_clock;

TEST(ServeBatcher, ConcurrentCallersShareRunsAndGetTheirOwnResults) {
  std::atomic<int> in_flight{0};
  std::vector<std::size_t> batch_sizes;
  std::mutex sizes_mutex;
  serve::Batcher<int, int> batcher(
      [](const std::vector<int>& items) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a network pass
        std::vector<int> out;
        for (const int v : items) out.push_back(v * 10);
        return out;
      },
      /*max_items=*/16, std::chrono::milliseconds(20), &in_flight,
      [&](std::size_t n) {
        std::lock_guard lock(sizes_mutex);
        batch_sizes.push_back(n);
      });
  constexpr int kCallers = 12;
  in_flight = kCallers;  // all of them announced, as the server counts requests in progress
  std::vector<std::future<std::vector<int>>> results;
  for (int c = 0; c < kCallers; ++c)
    results.push_back(std::async(std::launch::async, [&, c] {
      return batcher.submit({c * 100, c * 100 + 1, c * 100 + 2});
    }));
  for (int c = 0; c < kCallers; ++c)
    EXPECT_EQ(results[static_cast<std::size_t>(c)].get(),
              (std::vector<int>{c * 1000, c * 1000 + 10, c * 1000 + 20}));
  std::size_t total = 0;
  for (const auto n : batch_sizes) {
    EXPECT_LE(n, 16u);  // never more than max_items (each submission holds 3)
    total += n;
  }
  EXPECT_EQ(total, 3u * kCallers);
  EXPECT_LT(batch_sizes.size(), static_cast<std::size_t>(kCallers)) << "no run was shared";
}

TEST(ServeBatcher, ALoneCallerDoesNotWaitForCompany) {
  std::atomic<int> in_flight{1};
  serve::Batcher<int, int> batcher([](const std::vector<int>& items) { return items; }, 32,
                                   std::chrono::seconds(5), &in_flight);
  const auto start = Clock::now();
  EXPECT_EQ(batcher.submit({7}), std::vector<int>{7});
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));  // far below the 5 s wait
  EXPECT_TRUE(batcher.submit({}).empty());
}

TEST(ServeBatcher, AFailureReachesEveryCallerOfItsBatchAndTheNextBatchRuns) {
  serve::Batcher<int, int> batcher(
      [](const std::vector<int>& items) -> std::vector<int> {
        for (const int v : items) {
          if (v < 0) throw std::invalid_argument("negative item");
        }
        return items;
      },
      8, std::chrono::milliseconds(1));
  EXPECT_THROW(batcher.submit({1, -1}), std::invalid_argument);
  EXPECT_EQ(batcher.submit({2, 3}), (std::vector<int>{2, 3}));
}

}  // namespace
}  // namespace facemag
