// Several processes of one training run on this machine, started the way torchrun starts them:
// each runs this program again with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
// set (rendezvous_from_environment reads them), so a worker is an ordinary process of the run.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace facemag::train {

struct LaunchOptions {
  int processes = 2;
  // Cores for all of them (0 = all cores), shared evenly: each gets at least one, and
  // OMP_NUM_THREADS says how many, so that the workers do not fight over the same cores.
  int threads = 0;
  // The command line of every worker (argv[0] first), given the threads each gets; it runs this
  // process's own executable. Typically own_arguments() with the thread count replaced.
  std::function<std::vector<std::string>(int threads_per_process)> arguments;
  // Exit codes of a worker that did its part (say, "finished, some inputs skipped"). Any other
  // exit, or a signal, means the run broke.
  std::vector<int> finished_codes{0};
};

struct LaunchResult {
  // When every worker finished: the largest of their exit codes.
  int exit_code = 0;
  // Otherwise the rank of the first worker that failed (the others were then killed, since
  // they could only wait for it), and how it ended: "exited with code 2", "was killed by
  // signal 9". -1 and empty when none failed.
  int failed_rank = -1;
  std::string failure;
};

// Starts `processes` workers on a free port of 127.0.0.1 and waits for all of them. SIGINT and
// SIGTERM meanwhile are forwarded to every worker as SIGINT (each then stops as its run does).
// Throws Error when no port is free or a process cannot be started.
LaunchResult launch_local_workers(const LaunchOptions& options);

// This process's command line as it was started (argv[0] first; Linux's /proc/self/cmdline).
std::vector<std::string> own_arguments();

}  // namespace facemag::train
