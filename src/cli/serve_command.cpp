// `facemag serve`: the HTTP/JSON face service (facemag::serve::FaceServer) with its models and
// gallery loaded once; SIGINT/SIGTERM stop accepting, finish what is in flight and exit 0.
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/serve/server.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

struct ServeOptions {
  std::string gallery;
  std::string bind = "127.0.0.1";
  int port = 8080;
  std::string token_file;
  int workers = 16;
  double batch_wait_ms = 4;
  int max_batch = 32;
  double max_body_mb = 32;
  std::int64_t max_pixels = 40'000'000;
  int max_faces = 32;
  ModelOptions model;
  CLI::Option* arch_option = nullptr;
};

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

std::string read_token(const std::string& path) {
  std::ifstream in(path);
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

int run_serve(ServeOptions opt) {
  if (opt.workers < 1) throw InvalidInput("--workers must be at least 1");
  if (opt.max_batch < 1) throw InvalidInput("--max-batch must be at least 1");
  if (opt.port < 0 || opt.port > 65535) throw InvalidInput("--port must be 0-65535");
  serve::ServerOptions server;
  server.bind = opt.bind;
  server.port = opt.port;
  if (!opt.token_file.empty()) server.token = read_token(opt.token_file);
  server.request_threads = opt.workers;
  server.batch_wait = std::chrono::microseconds(static_cast<std::int64_t>(opt.batch_wait_ms * 1e3));
  server.max_batch = opt.max_batch;
  server.limits.max_body_bytes = static_cast<std::size_t>(opt.max_body_mb * (1 << 20));
  server.limits.max_image_pixels = opt.max_pixels;
  server.limits.max_faces = opt.max_faces;
  server.detector = to_mtcnn_options(opt.model.detector);

  auto loaded = load_model_with_gallery(opt.gallery, opt.model,
                                        opt.arch_option && opt.arch_option->count() > 0);
  const Embedder& embedder = loaded.embedder();
  const MtcnnDetector detector = load_detector(loaded.model.detector);

  serve::FaceServer service(embedder, detector, loaded.gallery(), server);
  std::cout << "facemag: listening on http://" << opt.bind << ":" << service.port() << "/"
            << std::endl;
  spdlog::info(
      "{}, {}{}", embedder.manifest().name,
      loaded.gallery() ? "gallery " + loaded.gallery()->location() : "no gallery",
      server.token.empty() ? ", no token (--token-file to require one)" : ", token required");
  // SIGINT/SIGTERM: the handler (whichever thread it lands on) only writes a byte to a pipe;
  // a thread of ours reads it and stops the server, which finishes the requests in flight.
  const StopPipe stop_pipe;
  std::thread waiter([&] {
    if (stop_pipe.wait()) service.stop();
  });
  service.run();
  stop_pipe.release();
  waiter.join();
  spdlog::info("stopped; requests in flight were answered");
  return kExitOk;
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto opt = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "An HTTP/JSON face service (and a web page at /)");
  cmd->add_option("--gallery", opt->gallery,
                  "Gallery for /v1/identify, /v1/enroll, /v1/persons (its model is served)");
  cmd->add_option("--port", opt->port, "TCP port (0: any free one, printed)")
      ->capture_default_str();
  cmd->add_option("--bind", opt->bind, "Address to listen on")->capture_default_str();
  cmd->add_option("--token-file", opt->token_file,
                  "File holding a bearer token every route but /health and / then requires");
  cmd->add_option("--workers", opt->workers, "Request threads")->capture_default_str();
  cmd->add_option("--batch-wait-ms", opt->batch_wait_ms,
                  "Longest wait for other requests' faces to join a network pass")
      ->capture_default_str();
  cmd->add_option("--max-batch", opt->max_batch, "Images or faces per network pass")
      ->capture_default_str();
  cmd->add_option("--max-body-mb", opt->max_body_mb, "Largest request body (413 above)")
      ->capture_default_str();
  cmd->add_option("--max-pixels", opt->max_pixels,
                  "Largest image in pixels (413 above; checked before decoding)")
      ->capture_default_str();
  cmd->add_option("--max-faces", opt->max_faces, "Faces answered per image (the largest)")
      ->capture_default_str();
  add_model_options(*cmd, opt->model, "iresnet100");
  opt->arch_option = cmd->get_option("--arch");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_serve(*opt) : -1; };
}

}  // namespace facemag::cli
