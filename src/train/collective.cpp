#include "facemag/train/collective.hpp"

#define USE_C10D_GLOO 1
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <exception>

#include "facemag/error.hpp"

namespace facemag::train {
namespace {

class SingleProcess final : public Collective {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(torch::Tensor&) override {}
  void all_reduce_max(torch::Tensor&) override {}
  void broadcast(torch::Tensor&, int) override {}
  torch::Tensor all_gather_rows(const torch::Tensor& rows,
                                const std::vector<std::int64_t>&) override {
    return rows;
  }
};

class Gloo final : public Collective {
 public:
  explicit Gloo(const RendezvousOptions& o) : rank_(o.rank), world_size_(o.world_size) {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(o.master_port);
    store_options.isServer = o.rank == 0;
    store_options.numWorkers = static_cast<std::size_t>(o.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = o.timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create(o.timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.master_addr));
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world_size, options);
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  void all_reduce_sum(torch::Tensor& tensor) override { all_reduce(tensor, c10d::ReduceOp::SUM); }
  void all_reduce_max(torch::Tensor& tensor) override { all_reduce(tensor, c10d::ReduceOp::MAX); }
  void broadcast(torch::Tensor& tensor, int root) override {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait(group_->broadcast(tensors, options), "broadcast");
  }
  torch::Tensor all_gather_rows(const torch::Tensor& rows,
                                const std::vector<std::int64_t>& counts) override {
    // Gloo gathers equal shapes only: pad every part to the largest count, then trim.
    const std::int64_t most = *std::max_element(counts.begin(), counts.end());
    auto shape = rows.sizes().vec();
    shape[0] = most;
    auto padded = torch::zeros(shape, rows.options());
    padded.narrow(0, 0, rows.size(0)).copy_(rows);
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int p = 0; p < world_size_; ++p) outputs[0].push_back(torch::empty(shape, rows.options()));
    std::vector<torch::Tensor> inputs{padded};
    wait(group_->allgather(outputs, inputs), "all-gather");
    std::vector<torch::Tensor> parts;
    for (int p = 0; p < world_size_; ++p) parts.push_back(outputs[0][p].narrow(0, 0, counts[p]));
    return torch::cat(parts);
  }

 private:
  void all_reduce(torch::Tensor& tensor, c10d::ReduceOp op) {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = op;
    wait(group_->allreduce(tensors, options), "all-reduce");
  }
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      throw Error("distributed training: " + std::string(what) + " on rank " +
                  std::to_string(rank_) + " of " + std::to_string(world_size_) +
                  " failed (another process stopped or timed out): " + e.what());
    }
  }

  int rank_, world_size_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

int env_int(const char* name, int fallback, int low, int high) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end || value < low || value > high) {
    throw InvalidInput(std::string("environment variable ") + name + "='" + text +
                       "' is not an integer in [" + std::to_string(low) + ", " +
                       std::to_string(high) + "]");
  }
  return static_cast<int>(value);
}

}  // namespace

std::unique_ptr<Collective> single_process_collective() {
  return std::make_unique<SingleProcess>();
}

RendezvousOptions rendezvous_from_environment() {
  RendezvousOptions o;
  o.world_size = env_int("WORLD_SIZE", 1, 1, 4096);
  o.rank = env_int("RANK", 0, 0, o.world_size - 1);
  o.master_port = env_int("MASTER_PORT", o.master_port, 1, 65535);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) o.master_addr = addr;
  return o;
}

std::unique_ptr<Collective> gloo_collective(const RendezvousOptions& options) {
  if (options.world_size == 1) return single_process_collective();
  try {
    return std::make_unique<Gloo>(options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("distributed training: rank " + std::to_string(options.rank) + " of " +
                std::to_string(options.world_size) + " could not join the run at " +
                options.master_addr + ":" + std::to_string(options.master_port) + ": " + e.what());
  }
}

std::vector<std::int64_t> split_counts(std::int64_t total, int world_size) {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(world_size), total / world_size);
  for (std::int64_t p = 0; p < total % world_size; ++p) ++counts[static_cast<std::size_t>(p)];
  return counts;
}

}  // namespace facemag::train
