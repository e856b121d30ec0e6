// `facemag serve`: an HTTP/JSON face service over one loaded detector, one embedding model and an
// optional gallery, on cpp-httplib.
//
// Routes (JSON answers; errors are {"error": kind, "detail": message} with a 4xx/5xx status):
//   POST /v1/detect | /v1/quality | /v1/embed   an image (raw body or multipart field "image";
//        ?aligned=true for a crop of the model's input size: no detection)
//   POST /v1/verify                             multipart fields "image_a" and "image_b"
//   POST /v1/identify                           an image; ?top_k=K (default 5) over the gallery
//   POST /v1/enroll                             an image and ?person=NAME (or a "person" field)
//   GET /v1/persons, DELETE /v1/persons/{name}  the gallery's people
//   GET /health, /metrics (Prometheus), /openapi.json, / (the web page)
// Images: JPEG, PNG, WebP, BMP; decoded to BGR as everywhere in facemag.
//
// Faces of concurrent requests go through MTCNN and the embedder together (serve::Batcher); the
// model, detector and gallery are shared read-only, gallery writes are serialised by the gallery.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "facemag/detect/mtcnn.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/gallery/gallery.hpp"

namespace facemag::serve {

struct ServerLimits {
  std::size_t max_body_bytes = 32u << 20;      // 413 above
  std::int64_t max_image_pixels = 40'000'000;  // 413 above, checked before decoding
  int max_faces = 32;                          // per image: the largest faces are kept
  int max_top_k = 100;
};

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = 8080;    // 0: any free port (see FaceServer::port)
  std::string token;  // non-empty: every route but /health and / needs "Authorization: Bearer"
  int request_threads = 16;  // requests handled at once (decoding, networks, the gallery)
  // Connections served at once: a thread each receives its request before a request thread
  // handles it, so clients that send half a request and wait (slow or hostile) hold one of these,
  // not a request thread; beyond them connections wait in a queue. At most this many request
  // bodies (limits.max_body_bytes each) are held at once.
  int connection_threads = 256;
  std::chrono::microseconds batch_wait{4000};  // longest wait for company in a batch
  int max_batch = 32;                          // faces per network pass
  ServerLimits limits;
  MtcnnOptions detector;
};

class FaceServer {
 public:
  // Borrows the models and the gallery (may be null: no identify/enroll/persons); they must
  // outlive the server. Binds the port at once: InvalidInput when it cannot.
  FaceServer(const Embedder& embedder, const MtcnnDetector& detector, gallery::Gallery* gallery,
             ServerOptions options);
  ~FaceServer();
  FaceServer(const FaceServer&) = delete;
  FaceServer& operator=(const FaceServer&) = delete;

  int port() const;
  // Serves until stop(); requests in flight when stop() is called are finished first.
  void run();
  // Stops accepting connections (safe from any thread).
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace facemag::serve
