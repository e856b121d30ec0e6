// `facemag serve`: the HTTP/JSON face service (facemag::serve::FaceServer) with its models and
// gallery loaded once; SIGINT/SIGTERM stop accepting, finish what is in flight and exit 0.
#include <spdlog/spdlog.h>

#include <iostream>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/serve/server.hpp"
#include "facemag/serve/service_process.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

// The server's options where CLI11 binds them as they are, and what only the command line has.
struct ServeOptions {
  serve::ServerOptions server;
  std::string gallery;
  GalleryIndexOptions index;
  std::string token_file;
  double batch_wait_ms = 4;
  double max_body_mb = 32;
  ModelOptions model;
};

int run_serve(ServeOptions opt) {
  serve::ServerOptions& server = opt.server;
  if (server.request_threads < 1) throw InvalidInput("--workers must be at least 1");
  if (server.max_batch < 1) throw InvalidInput("--max-batch must be at least 1");
  if (server.port < 0 || server.port > 65535) throw InvalidInput("--port must be 0-65535");
  if (!opt.token_file.empty()) server.token = serve::read_token_file(opt.token_file);
  server.batch_wait = std::chrono::microseconds(static_cast<std::int64_t>(opt.batch_wait_ms * 1e3));
  server.limits.max_body_bytes = static_cast<std::size_t>(opt.max_body_mb * (1 << 20));
  server.detector = to_mtcnn_options(opt.model.detector);

  auto loaded = load_model_with_gallery(opt.gallery, opt.model, opt.model.arch_given(), opt.index);
  const Embedder& embedder = loaded.embedder();
  const MtcnnDetector detector = load_detector(loaded.model.detector);

  serve::FaceServer service(embedder, detector, loaded.gallery(), server);
  std::cout << "facemag: listening on http://" << server.bind << ":" << service.port() << "/"
            << std::endl;
  spdlog::info(
      "{}, {}{}", embedder.manifest().name,
      loaded.gallery() ? "gallery " + loaded.gallery()->location() : "no gallery",
      server.token.empty() ? ", no token (--token-file to require one)" : ", token required");
  serve::run_until_stop_signal(service);  // SIGINT/SIGTERM: in-flight requests are answered
  spdlog::info("stopped; requests in flight were answered");
  return kExitOk;
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto opt = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "An HTTP/JSON face service (and a web page at /)");
  cmd->add_option("--gallery", opt->gallery,
                  "Gallery for /v1/identify, /v1/enroll, /v1/persons (its model is served)");
  add_gallery_index_options(*cmd, opt->index);
  cmd->add_option("--port", opt->server.port, "TCP port (0: any free one, printed)")
      ->capture_default_str();
  cmd->add_option("--bind", opt->server.bind, "Address to listen on")->capture_default_str();
  cmd->add_option("--token-file", opt->token_file,
                  "File holding a bearer token every route but /health and / then requires");
  cmd->add_option("--connections", opt->server.connection_threads,
                  "Connections served at once (each receives its request before a worker takes "
                  "it: a stalled client holds one of these, not a worker)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--workers", opt->server.request_threads, "Request threads")
      ->capture_default_str();
  cmd->add_option("--batch-wait-ms", opt->batch_wait_ms,
                  "Longest wait for other requests' faces to join a network pass")
      ->capture_default_str();
  cmd->add_option("--max-batch", opt->server.max_batch, "Images or faces per network pass")
      ->capture_default_str();
  cmd->add_option("--max-body-mb", opt->max_body_mb, "Largest request body (413 above)")
      ->capture_default_str();
  cmd->add_option("--max-pixels", opt->server.limits.max_image_pixels,
                  "Largest image in pixels (413 above; checked before decoding)")
      ->capture_default_str();
  cmd->add_option("--max-faces", opt->server.limits.max_faces,
                  "Faces answered per image (the largest)")
      ->capture_default_str();
  add_model_options(*cmd, opt->model, "iresnet100");
  return [cmd, opt]() -> int { return cmd->parsed() ? run_serve(*opt) : -1; };
}

}  // namespace facemag::cli
