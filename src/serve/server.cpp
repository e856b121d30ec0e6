#include "facemag/serve/server.hpp"

#include <httplib.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>

#include "facemag/detect/json.hpp"
#include "facemag/embed/face_quality.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/gallery/assign.hpp"
#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/json.hpp"
#include "facemag/io/image.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/serve/batcher.hpp"
#include "serve_assets.hpp"

namespace facemag::serve {

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A request that cannot be answered: the status, a short machine-readable kind, the detail.
class HttpError : public Error {
 public:
  HttpError(int status, std::string kind, const std::string& detail)
      : Error(detail), status(status), kind(std::move(kind)) {}
  int status;
  std::string kind;
};

void send_json(httplib::Response& res, const Json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& kind,
                const std::string& detail) {
  send_json(res, {{"error", kind}, {"detail", detail}}, status);
}

// ---- metrics (Prometheus text format) ----

struct Histogram {
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;  // cumulative per bound is computed when printed
  double sum = 0;
  std::uint64_t count = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size(), 0) {}
  void observe(double v) {
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      if (v <= bounds[i]) {
        ++counts[i];
        break;
      }
    }
    sum += v;
    ++count;
  }
  void print(std::ostringstream& out, const std::string& name, const std::string& label) const {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      cumulative += counts[i];
      out << name << "_bucket{" << label << ",le=\"" << bounds[i] << "\"} " << cumulative << "\n";
    }
    out << name << "_bucket{" << label << ",le=\"+Inf\"} " << count << "\n";
    out << name << "_sum{" << label << "} " << sum << "\n";
    out << name << "_count{" << label << "} " << count << "\n";
  }
};

class Metrics {
 public:
  void request(const std::string& route, int status, double seconds) {
    std::lock_guard lock(mutex_);
    ++requests_[{route, status}];
    latency_.try_emplace(route, kLatencyBounds).first->second.observe(seconds);
  }
  void error(const std::string& kind) {
    std::lock_guard lock(mutex_);
    ++errors_[kind];
  }
  void batch(const std::string& stage, std::size_t items) {
    std::lock_guard lock(mutex_);
    batches_.try_emplace(stage, kBatchBounds).first->second.observe(static_cast<double>(items));
  }
  std::string text() const {
    std::lock_guard lock(mutex_);
    std::ostringstream out;
    out << "# HELP facemag_requests_total HTTP requests by route and status.\n"
           "# TYPE facemag_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out << "facemag_requests_total{route=\"" << key.first << "\",code=\"" << key.second << "\"} "
          << n << "\n";
    out << "# HELP facemag_request_seconds Time to answer a request, by route.\n"
           "# TYPE facemag_request_seconds histogram\n";
    for (const auto& [route, h] : latency_)
      h.print(out, "facemag_request_seconds", "route=\"" + route + "\"");
    out << "# HELP facemag_batch_size Images or faces per network pass, by stage.\n"
           "# TYPE facemag_batch_size histogram\n";
    for (const auto& [stage, h] : batches_)
      h.print(out, "facemag_batch_size", "stage=\"" + stage + "\"");
    out << "# HELP facemag_errors_total Error answers by kind.\n"
           "# TYPE facemag_errors_total counter\n";
    for (const auto& [kind, n] : errors_)
      out << "facemag_errors_total{kind=\"" << kind << "\"} " << n << "\n";
    return out.str();
  }

 private:
  inline static const std::vector<double> kLatencyBounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,    2.5,   5,    10};
  inline static const std::vector<double> kBatchBounds{1, 2, 4, 8, 16, 32, 64};
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Histogram> latency_, batches_;
  std::map<std::string, std::uint64_t> errors_;
};

// The route a path belongs to, as metrics label it (a person's name is not a label).
std::string route_label(const httplib::Request& req) {
  static const char* kRoutes[] = {
      "/",         "/health",    "/metrics",     "/openapi.json", "/v1/detect",  "/v1/quality",
      "/v1/embed", "/v1/verify", "/v1/identify", "/v1/enroll",    "/v1/persons", "/v1/assign"};
  for (const char* r : kRoutes) {
    if (req.path == r) return req.method + " " + r;
  }
  if (req.path.rfind("/v1/persons/", 0) == 0) return req.method + " /v1/persons/{name}";
  return "other";
}

std::string error_kind_of_status(int status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 408:
      return "timeout";
    case 413:
      return "too_large";
    case 414:
      return "uri_too_long";
    default:
      return status >= 500 ? "internal" : "client_error";
  }
}

// Constant-time equality of a presented credential and the expected one (hashes of equal length
// are compared, so neither the content nor the length leaks through timing).
bool same_secret(const std::string& presented, const std::string& expected) {
  const auto a = io::sha256_hex(presented), b = io::sha256_hex(expected);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// The library's JSON of detections (facemag/detect/json.hpp), as the CLI writes them.
Json box_json(const Box& b) { return facemag::to_json(b); }
Json detection_json(const Detection& d) { return facemag::to_json(d); }

thread_local Clock::time_point request_start;

// At most `limit` handlers at once (ServerOptions::request_threads): connection threads wait here
// with their request received, so a stalled client never holds a handler's place.
class HandlerGate {
 public:
  explicit HandlerGate(int limit) : free_(std::max(1, limit)) {}
  void enter() {
    std::unique_lock lock(mutex_);
    freed_.wait(lock, [this] { return free_ > 0; });
    --free_;
  }
  void leave() {
    {
      const std::lock_guard lock(mutex_);
      ++free_;
    }
    freed_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

class HandlerSlot {
 public:
  explicit HandlerSlot(HandlerGate& gate) : gate_(gate) { gate_.enter(); }
  ~HandlerSlot() { gate_.leave(); }
  HandlerSlot(const HandlerSlot&) = delete;
  HandlerSlot& operator=(const HandlerSlot&) = delete;

 private:
  HandlerGate& gate_;
};

}  // namespace

struct FaceServer::Impl {
  const Embedder& embedder;
  const MtcnnDetector& detector;
  gallery::Gallery* gallery;
  ServerOptions options;
  httplib::Server http;
  int port = 0;
  std::atomic<int> in_flight{0};
  HandlerGate handlers{options.request_threads};
  Metrics metrics;
  Batcher<cv::Mat, std::vector<Detection>> detect_batcher;
  Batcher<cv::Mat, Embedding> embed_batcher;

  Impl(const Embedder& e, const MtcnnDetector& d, gallery::Gallery* g, ServerOptions o)
      : embedder(e),
        detector(d),
        gallery(g),
        options(std::move(o)),
        detect_batcher(
            [this](const std::vector<cv::Mat>& images) {
              return detector.detect_batch(images, options.detector);
            },
            static_cast<std::size_t>(options.max_batch), options.batch_wait, &in_flight,
            [this](std::size_t n) { metrics.batch("detect", n); }),
        embed_batcher([this](const std::vector<cv::Mat>& crops) { return embedder.embed(crops); },
                      static_cast<std::size_t>(options.max_batch), options.batch_wait, &in_flight,
                      [this](std::size_t n) { metrics.batch("embed", n); }) {}

  // ---- request parts ----

  static std::string param(const httplib::Request& req, const std::string& name) {
    if (req.has_param(name)) return req.get_param_value(name);
    if (req.is_multipart_form_data() && req.has_file(name)) return req.get_file_value(name).content;
    return {};
  }

  static bool flag(const httplib::Request& req, const std::string& name) {
    const auto v = param(req, name);
    if (v.empty() || v == "false" || v == "0") return false;
    if (v == "true" || v == "1") return true;
    throw HttpError(400, "bad_parameter", name + " must be true or false, not '" + v + "'");
  }

  static int int_param(const httplib::Request& req, const std::string& name, int fallback, int lo,
                       int hi) {
    const auto v = param(req, name);
    if (v.empty()) return fallback;
    try {
      std::size_t used = 0;
      const int n = std::stoi(v, &used);
      if (used == v.size() && n >= lo && n <= hi) return n;
    } catch (const std::exception&) {
    }
    throw HttpError(400, "bad_parameter",
                    name + " must be an integer from " + std::to_string(lo) + " to " +
                        std::to_string(hi) + ", not '" + v + "'");
  }

  // The encoded image of a request: a multipart field, or (for "image") the raw body.
  static const std::string& image_bytes(const httplib::Request& req, const std::string& field) {
    if (req.is_multipart_form_data()) {
      if (!req.has_file(field))
        throw HttpError(400, "missing_field", "the multipart form has no field '" + field + "'");
      return req.files.find(field)->second.content;
    }
    if (field != "image")
      throw HttpError(400, "missing_field",
                      "send a multipart form with fields '" + field + "' (and the others)");
    if (req.body.empty())
      throw HttpError(400, "empty_body",
                      "no image: the body is empty (send JPEG, PNG or WebP "
                      "bytes, or a multipart field 'image')");
    return req.body;
  }

  struct Faces {
    int width = 0, height = 0;
    bool aligned = false;
    std::size_t found = 0;  // before the max_faces limit
    std::vector<Detection> detections;
    std::vector<cv::Mat> crops;
    std::vector<Embedding> embeddings;
  };

  Faces faces_of(const std::string& bytes, const std::string& name, bool aligned, bool embed) {
    cv::Mat image;
    try {
      image = io::decode_image_bgr(bytes, name, {options.limits.max_image_pixels});
    } catch (const io::ImageTooLarge& e) {
      throw HttpError(413, "image_too_large", e.what());
    } catch (const InvalidInput& e) {
      throw HttpError(400, "bad_image", e.what());
    }
    Faces f;
    f.width = image.cols;
    f.height = image.rows;
    f.aligned = aligned;
    const auto& m = embedder.manifest();
    if (aligned) {
      if (image.rows != m.input_height || image.cols != m.input_width)
        throw HttpError(400, "bad_aligned_size",
                        name + ": aligned=true needs a " + std::to_string(m.input_width) + "x" +
                            std::to_string(m.input_height) + " crop (" + m.alignment_template +
                            "), got " + std::to_string(image.cols) + "x" +
                            std::to_string(image.rows));
      Detection whole;
      whole.box = {0, 0, static_cast<float>(image.cols), static_cast<float>(image.rows)};
      whole.score = 1;
      f.detections = {whole};
      f.crops = {image};
      f.found = 1;
    } else {
      f.detections = detect_batcher.submit({image})[0];
      f.found = f.detections.size();
      const auto limit = static_cast<std::size_t>(options.limits.max_faces);
      if (f.detections.size() > limit) f.detections.resize(limit);  // largest first
      if (embed) {
        for (const auto& d : f.detections) f.crops.push_back(crop_for_model(image, d, m));
      }
    }
    if (embed) f.embeddings = embed_batcher.submit(f.crops);
    return f;
  }

  Json faces_answer(const Faces& f) const {
    Json out{{"width", f.width}, {"height", f.height}, {"faces_found", f.found}};
    if (f.found > f.detections.size())
      out["note"] =
          "only the " + std::to_string(f.detections.size()) + " largest faces are answered";
    return out;
  }

  Json face_json(const Faces& f, std::size_t i, bool with_vector) const {
    Json face =
        f.aligned ? Json{{"box", box_json(f.detections[i].box)}} : detection_json(f.detections[i]);
    face["index"] = i;
    if (i < f.embeddings.size()) {
      face["quality"] = f.embeddings[i].quality;
      if (with_vector) face["embedding"] = f.embeddings[i].raw;
    }
    return face;
  }

  gallery::Gallery& require_gallery() const {
    if (!gallery)
      throw HttpError(404, "no_gallery", "this server has no gallery (start it with --gallery DB)");
    return *gallery;
  }

  // The face a request means when it names one photo's face: ?face=i, else the one the photo is
  // about, as the pipeline chooses it (KeepFaces::kCenter).
  std::size_t chosen_face(const httplib::Request& req, const Faces& f,
                          const std::string& name) const {
    if (f.detections.empty()) throw HttpError(422, "no_face", name + ": no face found");
    const int last = static_cast<int>(f.detections.size()) - 1;
    if (!param(req, "face").empty())
      return static_cast<std::size_t>(int_param(req, "face", 0, 0, last));
    if (f.aligned) return 0;
    return chosen_faces(f.detections, f.width, f.height, KeepFaces::kCenter).front();
  }

  // ---- routes ----

  void photo_route(const httplib::Request& req, httplib::Response& res, bool embed,
                   bool with_vector) {
    const auto f = faces_of(image_bytes(req, "image"), "image", flag(req, "aligned"), embed);
    Json out = faces_answer(f);
    out["model"] = embedder.manifest().name;
    if (embed) {
      out["quality_is_calibrated"] = embedder.manifest().magnitude_is_quality;
      out["quality_source"] = quality_source(embedder.manifest());
    }
    out["faces"] = Json::array();
    for (std::size_t i = 0; i < f.detections.size(); ++i)
      out["faces"].push_back(face_json(f, i, with_vector));
    send_json(res, out);
  }

  void verify(const httplib::Request& req, httplib::Response& res) {
    const bool aligned = flag(req, "aligned");
    const auto a = faces_of(image_bytes(req, "image_a"), "image_a", aligned, true);
    const auto b = faces_of(image_bytes(req, "image_b"), "image_b", aligned, true);
    const auto ia = chosen_face(req, a, "image_a"), ib = chosen_face(req, b, "image_b");
    // The rule of `facemag verify`: same when above the threshold, undecided below the quality
    // gate.
    const auto d = eval::decide_pair(a.embeddings[ia], b.embeddings[ib], embedder.manifest());
    send_json(res, {{"similarity", d.similarity},
                    {"threshold", d.threshold},
                    {"same_person", d.same},
                    {"decision", d.decision()},
                    {"model", embedder.manifest().name},
                    {"a", face_json(a, ia, false)},
                    {"b", face_json(b, ib, false)}});
  }

  void identify(const httplib::Request& req, httplib::Response& res) {
    auto& g = require_gallery();
    const int top_k = int_param(req, "top_k", 5, 1, options.limits.max_top_k);
    const auto f = faces_of(image_bytes(req, "image"), "image", flag(req, "aligned"), true);
    const auto rules = gallery::decision_rules(g.model());
    Json out = faces_answer(f);
    out["threshold"] = rules.same_person_threshold;
    out["faces"] = Json::array();
    for (std::size_t i = 0; i < f.detections.size(); ++i) {
      Json face = face_json(f, i, false);
      const auto found =
          gallery::identify(g, f.embeddings[i].raw, f.embeddings[i].quality, top_k, rules);
      // Candidates, decision and person as `gallery search` writes them; the threshold is the
      // answer's, and face ids are the store's business.
      face.update(gallery::to_json(found, {.face_ids = false, .threshold = false}));
      out["faces"].push_back(face);
    }
    send_json(res, out);
  }

  void enroll(const httplib::Request& req, httplib::Response& res) {
    auto& g = require_gallery();
    const auto person = param(req, "person");
    if (person.empty())
      throw HttpError(400, "missing_field", "enroll needs person=NAME (query or form field)");
    const auto& bytes = image_bytes(req, "image");
    const auto f = faces_of(bytes, "image", flag(req, "aligned"), true);
    const auto i = chosen_face(req, f, "image");
    // The gate `gallery enroll` applies; force=true enrols a poor face as its --force does.
    const auto refusal =
        gallery::enrolment_refusal(f.embeddings[i].quality, gallery::decision_rules(g.model()));
    if (refusal && !flag(req, "force"))
      throw HttpError(422, "too_poor", "image: " + *refusal + " (force=true enrols it anyway)");
    gallery::NewFace face;
    face.person = person;
    face.source_path = upload_name(req);
    face.image_sha256 = io::sha256_hex(bytes);
    face.detection = f.detections[i];
    face.embedding = f.embeddings[i].raw;
    face.quality = f.embeddings[i].quality;
    const auto result = g.enroll({face});
    Json out{{"person", person},
             {"added", result.added == 1},
             {"quality", f.embeddings[i].quality},
             {"face", face_json(f, i, false)}};
    if (result.face_ids.at(0)) out["face_id"] = *result.face_ids[0];
    send_json(res, out, result.added == 1 ? 201 : 200);
  }

  // What a gallery records as the source of an uploaded photo: "upload:FILENAME" for a multipart
  // field with a file name, else "upload".
  static std::string upload_name(const httplib::Request& req) {
    return req.is_multipart_form_data() && !req.files.find("image")->second.filename.empty()
               ? "upload:" + req.files.find("image")->second.filename
               : "upload";
  }

  // Every face of the photo joins a person or waits unassigned, as `gallery assign` does it (one
  // library call, one transaction); the records are `gallery assign --out`'s.
  void assign(const httplib::Request& req, httplib::Response& res) {
    auto& g = require_gallery();
    gallery::AssignOptions how;
    how.min_faces = int_param(req, "min_faces", how.min_faces, 1, 1000);
    const auto& bytes = image_bytes(req, "image");
    const auto f = faces_of(bytes, "image", flag(req, "aligned"), true);
    const auto path = upload_name(req);
    const auto sha = io::sha256_hex(bytes);
    std::vector<gallery::FaceToAssign> faces;
    for (std::size_t i = 0; i < f.detections.size(); ++i)
      faces.push_back({path, i, {"", path, sha, f.detections[i], f.embeddings[i].raw, {}}});
    Json out = faces_answer(f);
    out["faces"] = Json::array();
    out["proposed"] = Json::array();
    if (!faces.empty()) {
      const auto done = gallery::assign_faces(g, faces, how);
      for (const auto& a : done.faces) out["faces"].push_back(gallery::to_json(a));
      for (const auto& p : done.proposed) out["proposed"].push_back(gallery::to_json(p));
    }
    send_json(res, out);
  }

  void persons(httplib::Response& res) {
    Json list = Json::array();
    for (const auto& p : require_gallery().persons()) {
      Json person{{"name", p.name}, {"faces", p.faces}, {"mean_quality", p.mean_quality}};
      if (p.proposed) person["proposed"] = true;
      list.push_back(person);
    }
    send_json(res, {{"persons", list}});
  }

  void remove_person(const httplib::Request& req, httplib::Response& res) {
    auto& g = require_gallery();
    const std::string name = req.matches[1];
    bool known = false;
    for (const auto& p : g.persons()) known = known || p.name == name;
    if (!known) throw HttpError(404, "unknown_person", "no person '" + name + "' in the gallery");
    g.remove_person(name);
    send_json(res, {{"removed", name}});
  }

  // Runs a route: counts it in flight (batching waits for company only then) and turns every
  // failure into a JSON error answer.
  template <class F>
  httplib::Server::Handler route(F body) {
    return [this, body](const httplib::Request& req, httplib::Response& res) {
      const HandlerSlot slot(handlers);
      ++in_flight;
      try {
        body(req, res);
      } catch (const HttpError& e) {
        send_error(res, e.status, e.kind, e.what());
      } catch (const gallery::GalleryError& e) {
        send_error(res, 409, "gallery", e.what());
      } catch (const InvalidInput& e) {
        send_error(res, 400, "bad_input", e.what());
      } catch (const std::exception& e) {
        spdlog::error("{} {}: {}", req.method, req.path, e.what());
        send_error(res, 500, "internal", e.what());
      }
      --in_flight;
    };
  }

  void install_routes() {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      request_start = Clock::now();
      if (options.token.empty() || req.path == "/health" || req.path == "/")
        return httplib::Server::HandlerResponse::Unhandled;
      const auto header = req.get_header_value("Authorization");
      if (!same_secret(header, "Bearer " + options.token)) {
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, 401, "unauthorized",
                   header.empty() ? "this server needs Authorization: Bearer <token>"
                                  : "the token is not valid");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Answers httplib gives by itself (unknown route, body over the limit, malformed request)
    // become JSON errors too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                   httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      // httplib limits url-encoded form bodies to 8 KB; curl --data-binary sends that type.
      const bool form =
          req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0;
      std::string detail = "the request could not be read";
      if (res.status == 413 && form) {
        detail =
            "a body sent as application/x-www-form-urlencoded (curl's default for "
            "--data-binary) may hold 8 KB at most: send the image with Content-Type: "
            "image/jpeg (or image/png, image/webp)";
      } else if (res.status == 413) {
        detail = "the request body exceeds the server's limit";
      } else if (res.status == 404) {
        detail = "no route " + req.method + " " + req.path + " (see /openapi.json)";
      }
      send_error(res, res.status, error_kind_of_status(res.status), detail);
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
          send_error(res, 500, "internal", "unexpected failure");
        });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double seconds = std::chrono::duration<double>(Clock::now() - request_start).count();
      metrics.request(route_label(req), res.status, seconds);
      if (res.status >= 400) {
        std::string kind = error_kind_of_status(res.status);
        try {
          kind = Json::parse(res.body).value("error", kind);
        } catch (const std::exception&) {
        }
        metrics.error(kind);
      }
    });

    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kWebPage, "text/html; charset=utf-8");
    });
    http.Get("/health", route([this](const httplib::Request&, httplib::Response& res) {
               Json health{{"status", "ok"},
                           {"model", embedder.manifest().name},
                           {"gallery", gallery ? Json(gallery->location()) : Json(nullptr)}};
               // The index after following every change made by any process.
               if (gallery) health["index"] = gallery::to_json(gallery->index_status());
               send_json(res, health);
             }));
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.text(), "text/plain; version=0.0.4");
    });
    http.Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kOpenApi, "application/json");
    });
    http.Post("/v1/detect",
              route([this](const auto& req, auto& res) { photo_route(req, res, false, false); }));
    http.Post("/v1/quality",
              route([this](const auto& req, auto& res) { photo_route(req, res, true, false); }));
    http.Post("/v1/embed",
              route([this](const auto& req, auto& res) { photo_route(req, res, true, true); }));
    http.Post("/v1/verify", route([this](const auto& req, auto& res) { verify(req, res); }));
    http.Post("/v1/identify", route([this](const auto& req, auto& res) { identify(req, res); }));
    http.Post("/v1/enroll", route([this](const auto& req, auto& res) { enroll(req, res); }));
    http.Post("/v1/assign", route([this](const auto& req, auto& res) { assign(req, res); }));
    http.Get("/v1/persons", route([this](const auto&, auto& res) { persons(res); }));
    http.Delete(R"(/v1/persons/([^/]+))",
                route([this](const auto& req, auto& res) { remove_person(req, res); }));
  }
};

FaceServer::FaceServer(const Embedder& embedder, const MtcnnDetector& detector,
                       gallery::Gallery* gallery, ServerOptions options)
    : impl_(std::make_unique<Impl>(embedder, detector, gallery, std::move(options))) {
  auto& s = *impl_;
  const int threads = std::max({1, s.options.request_threads, s.options.connection_threads});
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http.set_payload_max_length(s.options.limits.max_body_bytes);
  // Answers are small writes: without TCP_NODELAY, Nagle's algorithm and the client's delayed
  // ACK add up to 40 ms to a request (measured: 20 % CPU at one client at a time).
  s.http.set_tcp_nodelay(true);
  s.http.set_read_timeout(10);
  s.http.set_write_timeout(10);
  s.install_routes();
  // cpp-httplib 0.11 listens with a backlog of 5: a burst of connections beyond that has its SYNs
  // dropped and retried a second later. The socket is remembered here and its backlog raised
  // after binding (Linux lets listen() be called again).
  int listening = -1;
  s.http.set_socket_options([&listening](socket_t sock) {
    httplib::default_socket_options(sock);
    listening = sock;
  });
  s.port = s.options.port == 0
               ? s.http.bind_to_any_port(s.options.bind)
               : (s.http.bind_to_port(s.options.bind, s.options.port) ? s.options.port : -1);
  if (s.port <= 0)
    throw InvalidInput("cannot listen on " + s.options.bind + ":" + std::to_string(s.options.port) +
                       " (in use, or not an address here)");
  if (listening >= 0) ::listen(listening, SOMAXCONN);
}

FaceServer::~FaceServer() = default;

int FaceServer::port() const { return impl_->port; }

void FaceServer::run() { impl_->http.listen_after_bind(); }

void FaceServer::stop() { impl_->http.stop(); }

}  // namespace facemag::serve
