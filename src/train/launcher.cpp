#include "facemag/train/launcher.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "facemag/error.hpp"
#include "facemag/runtime.hpp"
#include "facemag/stop_signal.hpp"

namespace facemag::train {
namespace {

// The messages name --nproc: `facemag train --nproc` is what starts a launcher.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error("--nproc: no free TCP port on 127.0.0.1 for the workers to meet");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string exit_description(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

std::vector<pid_t> start_workers(int processes, int threads_per_process, int port,
                                 const std::vector<std::string>& args) {
  std::vector<pid_t> workers;
  for (int rank = 0; rank < processes; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("--nproc: could not start worker " + std::to_string(rank));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(processes).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("OMP_NUM_THREADS", std::to_string(threads_per_process).c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    workers.push_back(pid);
  }
  return workers;
}

// Waits for every worker; the first that fails takes the others down (they could only wait for
// it). A stop request is passed on to all of them once.
LaunchResult wait_for_workers(std::vector<pid_t> workers, const std::vector<int>& finished_codes) {
  LaunchResult result;
  std::size_t running = workers.size();
  bool forwarded = false;
  while (running) {
    if (StopOnSignal::requested() && !forwarded) {
      for (const pid_t pid : workers) ::kill(pid, SIGINT);
      forwarded = true;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    --running;
    const auto rank = std::find(workers.begin(), workers.end(), pid) - workers.begin();
    workers[static_cast<std::size_t>(rank)] = -1;
    const bool finished =
        WIFEXITED(status) && std::find(finished_codes.begin(), finished_codes.end(),
                                       WEXITSTATUS(status)) != finished_codes.end();
    if (finished) {
      result.exit_code = std::max(result.exit_code, WEXITSTATUS(status));
    } else if (result.failed_rank < 0) {
      result.failed_rank = static_cast<int>(rank);
      result.failure = exit_description(status);
      for (const pid_t other : workers) {
        if (other > 0) ::kill(other, SIGKILL);
      }
    }
  }
  return result;
}

}  // namespace

LaunchResult launch_local_workers(const LaunchOptions& options) {
  const int cores = configure_runtime(options.threads);
  const int per_worker = std::max(1, cores / options.processes);
  const auto args = options.arguments(per_worker);
  const int port = free_port();
  const StopOnSignal stop_signals;
  return wait_for_workers(start_workers(options.processes, per_worker, port, args),
                          options.finished_codes);
}

std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  return args;
}

}  // namespace facemag::train
