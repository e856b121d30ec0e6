#include "facemag/stop_signal.hpp"

#include <csignal>

namespace facemag {

std::atomic<bool>& StopOnSignal::flag() {
  static std::atomic<bool> requested{false};
  return requested;
}

extern "C" void facemag_request_stop(int) { StopOnSignal::flag() = true; }

StopOnSignal::StopOnSignal() {
  flag() = false;
  previous_int_ = std::signal(SIGINT, facemag_request_stop);
  previous_term_ = std::signal(SIGTERM, facemag_request_stop);
}

StopOnSignal::~StopOnSignal() {
  std::signal(SIGINT, previous_int_);
  std::signal(SIGTERM, previous_term_);
}

}  // namespace facemag
