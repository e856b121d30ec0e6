#include "facemag/serve/service_process.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <iterator>
#include <thread>

#include "facemag/error.hpp"

namespace facemag::serve {
namespace {

int stop_fds[2] = {-1, -1};
extern "C" void on_stop_signal(int) {
  const char byte = 's';
  (void)!::write(stop_fds[1], &byte, 1);
}

// The self-pipe a signal handler may write to (async-signal-safe), installed for SIGINT and
// SIGTERM while it lives.
class StopPipe {
 public:
  StopPipe() {
    if (::pipe(stop_fds) != 0) throw Error("cannot create a pipe for signal handling");
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &previous_int_);
    sigaction(SIGTERM, &action, &previous_term_);
  }
  ~StopPipe() {
    sigaction(SIGINT, &previous_int_, nullptr);
    sigaction(SIGTERM, &previous_term_, nullptr);
    ::close(stop_fds[0]);
    ::close(stop_fds[1]);
  }
  // Blocks until a signal (true) or release() (false).
  bool wait() const {
    char byte = 0;
    while (::read(stop_fds[0], &byte, 1) < 0 && errno == EINTR) {
    }
    return byte == 's';
  }
  void release() const {
    const char byte = 'r';
    (void)!::write(stop_fds[1], &byte, 1);
  }

 private:
  struct sigaction previous_int_ {
  }, previous_term_{};
};

}  // namespace

std::string read_token_file(const std::filesystem::path& file) {
  const std::string path = file.string();
  std::ifstream in(file);
  if (!in) throw InvalidInput(path + ": cannot read the token file");
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front())))
    token.erase(token.begin());
  if (token.size() < 16)
    throw InvalidInput(path + ": the token has " + std::to_string(token.size()) +
                       " characters; use at least 16 (e.g. openssl rand -hex 32)");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
    spdlog::warn("{}: readable by other users (chmod 600 it)", path);
  return token;
}

void run_until_stop_signal(FaceServer& server) {
  // The handler (whichever thread it lands on) only writes a byte to a pipe; a thread of ours
  // reads it and stops the server, which finishes the requests in flight.
  const StopPipe stop_pipe;
  std::thread waiter([&] {
    if (stop_pipe.wait()) server.stop();
  });
  server.run();
  stop_pipe.release();
  waiter.join();
}

}  // namespace facemag::serve
