// SIGINT and SIGTERM as a request to stop: a long job (a batch command, training, a video) then
// finishes what it has and writes it, and a killed job can resume from there.
#pragma once

#include <atomic>

namespace facemag {

// While one is alive, SIGINT and SIGTERM set flag() instead of ending the process; the previous
// handlers come back at destruction. The flag is process-wide (signals are), so nested ones share
// it.
class StopOnSignal {
 public:
  StopOnSignal();  // clears flag()
  ~StopOnSignal();
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

  static std::atomic<bool>& flag();
  static bool requested() { return flag().load(); }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

}  // namespace facemag
