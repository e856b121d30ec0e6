// Collective operations between the processes of one training run. One process (the default)
// makes every operation the identity; several processes talk through LibTorch's c10d
// (TCPStore + ProcessGroupGloo on CPU), never through sockets of our own.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace facemag::train {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place, on CPU tensors. Every process must call the same operations in the same order.
  virtual void all_reduce_sum(torch::Tensor& tensor) = 0;
  virtual void all_reduce_max(torch::Tensor& tensor) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // Rows of every process's `rows` (R_p x ...) concatenated in rank order; `counts[p]` = R_p.
  virtual torch::Tensor all_gather_rows(const torch::Tensor& rows,
                                        const std::vector<std::int64_t>& counts) = 0;
};

// The identity: one process holds everything.
std::unique_ptr<Collective> single_process_collective();

// Where the processes of a run meet: torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT; LOCAL_RANK is informational).
struct RendezvousOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // How long an operation may wait for the others: a process that died makes the rest fail
  // with a clear message after this long instead of hanging.
  std::chrono::seconds timeout{120};
};

// RendezvousOptions from the environment (world size 1 when WORLD_SIZE is unset).
// Malformed values are an InvalidInput naming the variable.
RendezvousOptions rendezvous_from_environment();

// Joins the run (rank 0 hosts the TCPStore) and returns its Gloo process group.
std::unique_ptr<Collective> gloo_collective(const RendezvousOptions& options);

// Rows of a batch of `total` split over `world_size` processes as evenly as possible (the
// first `total % world_size` processes take one more).
std::vector<std::int64_t> split_counts(std::int64_t total, int world_size);

}  // namespace facemag::train
