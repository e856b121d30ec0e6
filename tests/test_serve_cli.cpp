// `facemag serve` against a running server on a random loopback port, with the real MTCNN and
// MobileFaceNet: golden values, the gallery routes, auth, bad requests, batching, shutdown, and
// the web page in headless Chromium.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <future>
#include <memory>
#include <thread>
#include <tuple>

#include "facemag/embed/face_quality.hpp"
#include "facemag/io/npy.hpp"
#include "postgres_server.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

fs::path casia() { return test::shared_dir() / "data" / "faces-casia"; }
fs::path golden() { return test::golden_dir() / "mobilefacenet"; }
std::string model() {
  return " --arch mobilefacenet --weights " +
         (test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt").string() + " --mtcnn " +
         (test::shared_dir() / "weights" / "mtcnn").string() + " ";
}

#define REQUIRE_REAL_MODEL()                                                           \
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt"); \
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");          \
  FACEMAG_REQUIRE_FILE(golden() / "embeddings.npy");                                   \
  FACEMAG_REQUIRE_FILE(casia() / "pam" / "006.jpg")

// `facemag serve --port 0 ARGS` as a child process; the port is read from its first line.
class Server {
 public:
  Server(const std::string& args, const test::TempDir& tmp) : log_(tmp / "server.log") {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      const int err = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(err, STDERR_FILENO);
      close(out[0]);
      const std::string cmd = "exec " + std::string(FACEMAG_CLI_PATH) + " serve --port 0 " + args;
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    from_ = fdopen(out[0], "r");
    char line[512] = {0};
    if (fgets(line, sizeof line, from_)) {
      const std::string text = line;
      const auto colon = text.rfind(':');
      if (text.find("listening on http://127.0.0.1:") != std::string::npos &&
          colon != std::string::npos)
        port_ = std::stoi(text.substr(colon + 1));
    }
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (from_) fclose(from_);
  }
  int port() const { return port_; }
  std::string log() const { return test::read_file(log_); }
  httplib::Client client(const std::string& token = "") const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    if (!token.empty()) c.set_bearer_token_auth(token);
    return c;
  }
  // SIGTERM, then the exit code.
  int terminate() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  FILE* from_ = nullptr;
  int port_ = 0;
};

#define REQUIRE_SERVER(s) ASSERT_GT((s).port(), 0) << (s).log()

// serve's arguments for a gallery `db` (which brings its model) with the real MTCNN.
std::string with_gallery(const std::string& db) {
  return "--gallery " + db + " --mtcnn " + (test::shared_dir() / "weights/mtcnn").string();
}

json body_of(const httplib::Result& r) {
  if (!r) return {{"transport_error", httplib::to_string(r.error())}};
  try {
    return json::parse(r->body);
  } catch (const std::exception&) {
    return {{"not_json", r->body}};
  }
}

std::string file_bytes(const fs::path& p) { return test::read_file(p); }

// The value of the Prometheus sample whose line starts with `series` (-1 when absent).
double metric_value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

double cosine(const std::vector<float>& a, const torch::Tensor& b) {
  const auto t = torch::tensor(a);
  return (t.dot(b) / (t.norm() * b.norm())).item<double>();
}

TEST(ServeCli, EmbedAndQualityGiveTheGoldenValuesAlsoUnderConcurrentLoad) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  Server server(model(), tmp);
  REQUIRE_SERVER(server);
  const auto expected = io::read_npy(golden() / "embeddings.npy");
  std::vector<fs::path> crops;
  for (const auto& e : fs::directory_iterator(golden() / "inputs")) crops.push_back(e.path());
  std::sort(crops.begin(), crops.end());
  ASSERT_EQ(static_cast<std::int64_t>(crops.size()), expected.size(0));

  // Every golden crop at once from 8 client threads: batched together, each answer its own.
  std::vector<std::future<std::pair<json, json>>> answers;
  for (std::size_t t = 0; t < 8; ++t) {
    answers.push_back(std::async(std::launch::async, [&, t] {
      json embeds = json::array(), qualities = json::array();
      auto client = server.client();
      for (std::size_t i = t; i < crops.size(); i += 8) {
        const auto bytes = file_bytes(crops[i]);
        embeds.push_back(body_of(client.Post("/v1/embed?aligned=true", bytes, "image/png")));
        qualities.push_back(body_of(client.Post("/v1/quality?aligned=true", bytes, "image/png")));
      }
      return std::make_pair(embeds, qualities);
    }));
  }
  for (std::size_t t = 0; t < 8; ++t) {
    const auto [embeds, qualities] = answers[t].get();
    std::size_t k = 0;
    for (std::size_t i = t; i < crops.size(); i += 8, ++k) {
      const auto& e = embeds[k];
      ASSERT_EQ(e["faces"].size(), 1u) << e;
      const auto vec = e["faces"][0]["embedding"].get<std::vector<float>>();
      const auto row = expected[static_cast<std::int64_t>(i)];
      const double norm = row.norm().item<double>();
      // ../shared/golden/README.md: cosine >= 0.99999, relative norm error <= 1e-4. The quality
      // of this model (not MagFace-trained) is the norm times the crop's sharpness factor.
      const double quality = norm * sharpness_factor(cv::imread(crops[i].string()));
      EXPECT_GE(cosine(vec, row), 0.99999) << crops[i];
      EXPECT_NEAR(e["faces"][0]["quality"].get<double>(), quality, 1e-4 * quality) << crops[i];
      EXPECT_NEAR(qualities[k]["faces"][0]["quality"].get<double>(), quality, 1e-4 * quality);
      EXPECT_EQ(e["model"], "mobilefacenet-casia");
      EXPECT_EQ(e["quality_is_calibrated"], false);
      EXPECT_EQ(e["quality_source"], "magnitude*sharpness");
    }
  }
  // Some of those network passes held several requests' faces.
  const auto metrics = server.client().Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("facemag_batch_size_count{stage=\"embed\"}"), std::string::npos);
  EXPECT_NE(metrics->body.find("facemag_requests_total{route=\"POST /v1/embed\",code=\"200\"} 46"),
            std::string::npos)
      << metrics->body;
  const auto single =
      metric_value(metrics->body, "facemag_batch_size_bucket{stage=\"embed\",le=\"1\"}");
  const auto passes = metric_value(metrics->body, "facemag_batch_size_count{stage=\"embed\"}");
  const auto faces = metric_value(metrics->body, "facemag_batch_size_sum{stage=\"embed\"}");
  EXPECT_EQ(faces, 92);  // 46 embed + 46 quality requests, one face each
  EXPECT_LT(passes, 92) << "no request shared a pass";
  EXPECT_LE(single, passes);

  // A photo: the same numbers as `facemag quality` on it.
  const auto photo = casia() / "bruce" / "001.jpg";
  const auto cli = test::json_lines(test::run_cli("quality " + photo.string() + model(), tmp).out);
  ASSERT_EQ(cli.size(), 1u);
  const auto q = body_of(server.client().Post("/v1/quality", file_bytes(photo), "image/jpeg"));
  ASSERT_EQ(q["faces"].size(), 1u) << q;
  const double expected_quality = cli[0]["quality"];
  EXPECT_NEAR(q["faces"][0]["quality"].get<double>(), expected_quality, 1e-4 * expected_quality);
  EXPECT_NEAR(q["faces"][0]["score"].get<double>(), cli[0]["score"].get<double>(), 1e-4);
  for (int c = 0; c < 4; ++c)
    EXPECT_NEAR(q["faces"][0]["box"][c].get<double>(), cli[0]["box"][c].get<double>(), 1e-3);
  const auto d = body_of(server.client().Post("/v1/detect", file_bytes(photo), "image/jpeg"));
  ASSERT_EQ(d["faces"].size(), 1u);
  EXPECT_EQ(d["faces"][0]["landmarks"].size(), 5u);
  EXPECT_EQ(d["width"], 250);
}

// A connection to the server that sends half a request (2 bytes of a 100,000-byte body) and waits.
class StalledClient {
 public:
  explicit StalledClient(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    const std::string half =
        "POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        "Content-Length: 100000\r\n\r\nab";
    connected_ = connected_ && send(fd_, half.data(), half.size(), 0) == ssize_t(half.size());
  }
  ~StalledClient() { close(fd_); }
  // Still waiting: the server has neither answered nor closed the connection.
  bool waiting() const {
    char byte;
    return connected_ && recv(fd_, &byte, 1, MSG_DONTWAIT | MSG_PEEK) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
  }

 private:
  int fd_;
  bool connected_ = false;
};

// Forty clients that send half a request and wait hold connection threads, not workers: a
// normal request (2 workers) is answered while every one of them is still waiting, so it did not
// wait for their read timeout (10 s) to free a worker.
TEST(ServeCli, StalledClientsDoNotHoldTheWorkers) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  Server server(model() + " --workers 2", tmp);
  REQUIRE_SERVER(server);
  std::vector<std::unique_ptr<StalledClient>> stalled;
  for (int i = 0; i < 40; ++i) stalled.push_back(std::make_unique<StalledClient>(server.port()));
  auto client = server.client();
  const auto r = client.Post("/v1/detect", file_bytes(casia() / "pam" / "001.jpg"), "image/jpeg");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["faces"].size(), 1u) << r->body;
  for (const auto& s : stalled) EXPECT_TRUE(s->waiting());
}

TEST(ServeCli, GalleryRoutesEnrolIdentifyVerifyListAndRemove) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  const auto db = (tmp / "g.db").string();
  ASSERT_EQ(test::run_cli("gallery create " + db + model(), tmp).exit_code, 0);
  Server server(with_gallery(db), tmp);
  REQUIRE_SERVER(server);
  auto client = server.client();
  for (const char* person : {"bruce", "neil", "pam"}) {
    for (const char* n : {"004.jpg", "005.jpg", "006.jpg"}) {
      const auto r = client.Post(("/v1/enroll?person=" + std::string(person)).c_str(),
                                 file_bytes(casia() / person / n), "image/jpeg");
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 201) << r->body;
      EXPECT_EQ(body_of(r)["added"], true);
    }
  }
  // The same face of the same photo again: acknowledged, not stored twice.
  auto again =
      client.Post("/v1/enroll?person=bruce", file_bytes(casia() / "bruce/004.jpg"), "image/jpeg");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(body_of(again)["added"], false);

  const auto persons = body_of(client.Get("/v1/persons"));
  ASSERT_EQ(persons["persons"].size(), 3u) << persons;
  EXPECT_EQ(persons["persons"][0]["faces"], 3);

  // Identify photos the gallery was not enrolled from; one as a multipart upload.
  for (const char* person : {"bruce", "neil", "pam"}) {
    const auto r = body_of(client.Post("/v1/identify?top_k=2",
                                       file_bytes(casia() / person / "001.jpg"), "image/jpeg"));
    ASSERT_EQ(r["faces"].size(), 1u) << r;
    EXPECT_EQ(r["faces"][0]["decision"], "match") << r;
    EXPECT_EQ(r["faces"][0]["person"], person) << r;
    EXPECT_EQ(r["faces"][0]["candidates"].size(), 2u);
  }
  httplib::MultipartFormDataItems form{
      {"image", file_bytes(casia() / "neil/002.jpg"), "002.jpg", "image/jpeg"}};
  const auto multipart = body_of(client.Post("/v1/identify", form));
  EXPECT_EQ(multipart["faces"][0]["person"], "neil") << multipart;

  httplib::MultipartFormDataItems pair{
      {"image_a", file_bytes(casia() / "bruce/001.jpg"), "a.jpg", "image/jpeg"},
      {"image_b", file_bytes(casia() / "bruce/002.jpg"), "b.jpg", "image/jpeg"}};
  const auto same = body_of(client.Post("/v1/verify", pair));
  pair[1] = {"image_b", file_bytes(casia() / "neil/001.jpg"), "b.jpg", "image/jpeg"};
  const auto other = body_of(client.Post("/v1/verify", pair));
  EXPECT_GT(same["similarity"].get<double>(), other["similarity"].get<double>());
  EXPECT_EQ(other["same_person"], false) << other;
  EXPECT_DOUBLE_EQ(same["threshold"].get<double>(), 0.2);

  auto removed = client.Delete("/v1/persons/neil");
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->status, 200);
  removed = client.Delete("/v1/persons/neil");
  EXPECT_EQ(removed->status, 404);
  EXPECT_EQ(body_of(removed)["error"], "unknown_person");
  const auto after =
      body_of(client.Post("/v1/identify", file_bytes(casia() / "neil/001.jpg"), "image/jpeg"));
  EXPECT_NE(after["faces"][0].value("person", ""), "neil");
  EXPECT_EQ(body_of(client.Get("/v1/persons"))["persons"].size(), 2u);
  EXPECT_EQ(body_of(client.Get("/health"))["gallery"], db);
  const auto openapi = body_of(client.Get("/openapi.json"));
  for (const char* route :
       {"/v1/detect", "/v1/quality", "/v1/embed", "/v1/verify", "/v1/identify", "/v1/enroll",
        "/v1/assign", "/v1/persons", "/v1/persons/{name}", "/health", "/metrics"})
    EXPECT_TRUE(openapi["paths"].contains(route)) << route;
}

// Two servers on one PostgreSQL gallery: a face enrolled through one is identified by the other
// at its next request, each server's index following the other's changes from the store's log
// (read everything once, at the first request; follow after that).
TEST(ServeCli, TwoServersShareAPostgresGallery) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  const test::PostgresServer postgres(tmp / "pg");
  FACEMAG_REQUIRE_POSTGRES(postgres);
  ASSERT_EQ(test::run_cli("gallery create " + postgres.url() + model(), tmp).exit_code, 0);
  Server first(with_gallery(postgres.url()), tmp), second(with_gallery(postgres.url()), tmp);
  REQUIRE_SERVER(first);
  REQUIRE_SERVER(second);
  auto a = first.client(), b = second.client();
  ASSERT_EQ(body_of(b.Get("/health"))["index"]["people"], 0);
  for (const char* person : {"bruce", "neil", "pam"}) {
    const auto enrolled = a.Post(("/v1/enroll?person=" + std::string(person)).c_str(),
                                 file_bytes(casia() / person / "004.jpg"), "image/jpeg");
    ASSERT_TRUE(enrolled);
    ASSERT_EQ(enrolled->status, 201) << enrolled->body;
    // The very next request to the other server finds the person.
    const auto found =
        body_of(b.Post("/v1/identify", file_bytes(casia() / person / "001.jpg"), "image/jpeg"));
    ASSERT_EQ(found["faces"].size(), 1u) << found;
    EXPECT_EQ(found["faces"][0]["person"], person) << found;
  }
  // A removal through the second reaches the first.
  ASSERT_EQ(b.Delete("/v1/persons/neil")->status, 200);
  const auto after =
      body_of(a.Post("/v1/identify", file_bytes(casia() / "neil/001.jpg"), "image/jpeg"));
  EXPECT_NE(after["faces"][0].value("person", ""), "neil") << after;
  for (auto* client : {&a, &b}) {
    const auto index = body_of(client->Get("/health"))["index"];
    EXPECT_EQ(index["people"], 2) << index;
    EXPECT_EQ(index["full_loads"], 1) << index;  // no rebuild after the first request
    EXPECT_EQ(index["kind"], "exact") << index;  // auto, at 2 people
  }
}

// One rule on every front end: the quality gate of a gallery refuses a poor face at /v1/enroll as
// `gallery enroll` does, and /v1/identify calls a poor probe "too poor to decide" as `gallery
// search` does. The gallery's manifest makes MobileFaceNet's magnitude its quality, with the
// threshold between the lowest of three photos' qualities and the others.
TEST(ServeCli, EnrolAndIdentifyApplyTheGalleryQualityGateAsTheCliDoes) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  std::vector<std::pair<double, fs::path>> photos;
  for (const char* n : {"004.jpg", "005.jpg", "006.jpg"}) {
    const auto q = test::json_lines(
        test::run_cli("quality " + (casia() / "bruce" / n).string() + " --keep center" + model(),
                      tmp)
            .out);
    ASSERT_EQ(q.size(), 1u);
    photos.emplace_back(q[0]["quality"].get<double>(), casia() / "bruce" / n);
  }
  std::sort(photos.begin(), photos.end());
  ASSERT_LT(photos[0].first, photos[1].first);
  const double gate = (photos[0].first + photos[1].first) / 2;
  const auto poor = photos[0].second, good = photos[1].second, better = photos[2].second;
  test::write_file(tmp / "gated.json", json{{"architecture", "mobilefacenet"},
                                            {"magnitude_is_quality", true},
                                            {"quality_threshold", gate}}
                                           .dump());
  const auto db = (tmp / "g.db").string();
  ASSERT_EQ(
      test::run_cli(
          "gallery create " + db + model() + " --manifest " + (tmp / "gated.json").string(), tmp)
          .exit_code,
      0);
  // The CLI refuses the poor face and enrols the good one.
  const auto cli_enrol = test::run_cli("gallery enroll " + db + " " + poor.string() + " " +
                                           good.string() + " --person bruce" + model(),
                                       tmp);
  EXPECT_EQ(cli_enrol.exit_code, 1) << cli_enrol.err;
  EXPECT_NE(cli_enrol.err.find("is below"), std::string::npos) << cli_enrol.err;
  ASSERT_EQ(test::json_lines(cli_enrol.out).size(), 1u) << cli_enrol.out;

  Server server(with_gallery(db), tmp);
  REQUIRE_SERVER(server);
  auto client = server.client();
  const auto refused = client.Post("/v1/enroll?person=bruce", file_bytes(poor), "image/jpeg");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 422) << refused->body;
  EXPECT_EQ(body_of(refused)["error"], "too_poor");
  EXPECT_NE(body_of(refused)["detail"].get<std::string>().find("is below"), std::string::npos);
  const auto added = client.Post("/v1/enroll?person=bruce", file_bytes(better), "image/jpeg");
  ASSERT_TRUE(added);
  EXPECT_EQ(added->status, 201) << added->body;

  // The same decisions from both front ends: a match for a good probe, none for the poor one.
  for (const auto& [probe, decision] :
       {std::pair{poor, "too poor to decide"}, std::pair{good, "match"}}) {
    const auto served =
        body_of(client.Post("/v1/identify", file_bytes(probe), "image/jpeg"))["faces"].at(0);
    EXPECT_EQ(served["decision"], decision) << served;
    const auto searched = test::json_lines(
        test::run_cli("gallery search " + db + " " + probe.string() + model(), tmp).out);
    ASSERT_EQ(searched.size(), 1u);
    EXPECT_EQ(searched[0]["decision"], decision) << searched[0];
    EXPECT_EQ(served.contains("person"), searched[0].contains("person"));
  }
  // force=true enrols it anyway, as --force does.
  const auto forced =
      client.Post("/v1/enroll?person=bruce&force=true", file_bytes(poor), "image/jpeg");
  ASSERT_TRUE(forced);
  EXPECT_EQ(forced->status, 201) << forced->body;
}

// The 1:1 rule of `facemag verify` (eval::decide_pair) is /v1/verify's: the same decision and
// similarity for the same two photos, "undecided" included when a face is below the model's
// quality threshold (a manifest with one above every face).
TEST(ServeCli, VerifyDecidesAsTheCliDoes) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  test::write_file(tmp / "gated.json",
                   R"({"architecture": "mobilefacenet", "quality_threshold": 1e6})");
  for (const std::string manifest :
       {std::string(), " --manifest " + (tmp / "gated.json").string()}) {
    Server server(model() + manifest, tmp);
    REQUIRE_SERVER(server);
    auto client = server.client();
    for (const char* other : {"bruce/002.jpg", "neil/001.jpg"}) {
      const auto a = casia() / "bruce/001.jpg", b = casia() / other;
      httplib::MultipartFormDataItems pair{{"image_a", file_bytes(a), "a.jpg", "image/jpeg"},
                                           {"image_b", file_bytes(b), "b.jpg", "image/jpeg"}};
      const auto served = body_of(client.Post("/v1/verify", pair));
      const auto cli = test::json_lines(
          test::run_cli("verify " + a.string() + " " + b.string() + " --json" + model() + manifest,
                        tmp)
              .out);
      ASSERT_EQ(cli.size(), 1u) << other;
      EXPECT_EQ(served["decision"], cli[0]["decision"]) << served;
      EXPECT_NEAR(served["similarity"].get<double>(), cli[0]["similarity"].get<double>(), 1e-4);
      EXPECT_EQ(served["decision"] == "undecided", !manifest.empty()) << served;
    }
  }
}

TEST(ServeCli, ATokenGuardsEveryRouteButHealthAndThePage) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  const std::string token = "0123456789abcdef0123456789abcdef";
  test::write_file(tmp / "token", token + "\n");
  fs::permissions(tmp / "token", fs::perms::owner_read | fs::perms::owner_write);
  Server server("--token-file " + (tmp / "token").string() + model(), tmp);
  REQUIRE_SERVER(server);
  const auto crop = file_bytes(golden() / "inputs" / "faces-casia__bruce__001__face0.png");
  auto anonymous = server.client();
  auto r = anonymous.Post("/v1/embed?aligned=true", crop, "image/png");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(body_of(r)["error"], "unauthorized");
  for (const char* path : {"/metrics", "/openapi.json", "/v1/persons"})
    EXPECT_EQ(anonymous.Get(path)->status, 401) << path;
  EXPECT_EQ(
      server.client("not-the-token").Post("/v1/embed?aligned=true", crop, "image/png")->status,
      401);
  EXPECT_EQ(server.client(token + "x").Get("/metrics")->status, 401);
  EXPECT_EQ(server.client(token).Post("/v1/embed?aligned=true", crop, "image/png")->status, 200);
  EXPECT_EQ(anonymous.Get("/health")->status, 200);
  EXPECT_EQ(anonymous.Get("/")->status, 200);

  // Without a token file, no header is needed.
  test::TempDir other;
  Server open_server(model(), other);
  REQUIRE_SERVER(open_server);
  EXPECT_EQ(open_server.client().Post("/v1/embed?aligned=true", crop, "image/png")->status, 200);
}

TEST(ServeCli, BadRequestsGetTheirCodeAndTheServerLivesOn) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  Server server(model(), tmp);
  REQUIRE_SERVER(server);
  auto client = server.client();
  const auto expect_error = [&](const httplib::Result& r, int status, const std::string& kind,
                                const std::string& what) {
    ASSERT_TRUE(r) << what << ": " << httplib::to_string(r.error());
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
    const auto body = body_of(r);
    EXPECT_EQ(body.value("error", ""), kind) << what << ": " << r->body;
    EXPECT_FALSE(body.value("detail", "").empty()) << what;
  };
  const auto photo = file_bytes(casia() / "bruce" / "001.jpg");
  expect_error(client.Post("/v1/quality", "this is not an image", "image/jpeg"), 400, "bad_image",
               "text body");
  expect_error(client.Post("/v1/quality", photo.substr(0, photo.size() / 2), "image/jpeg"), 400,
               "bad_image", "truncated JPEG");
  expect_error(client.Post("/v1/quality", "", "image/jpeg"), 400, "empty_body", "0 bytes");
  // 20000 x 20000 according to its header: refused before a pixel is allocated.
  std::string png = file_bytes(golden() / "inputs" / "faces-casia__bruce__001__face0.png");
  const unsigned char big[8] = {0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20};  // IHDR width, height
  png.replace(16, 8, reinterpret_cast<const char*>(big), 8);
  expect_error(client.Post("/v1/quality", png, "image/png"), 413, "image_too_large", "20000^2 PNG");
  httplib::MultipartFormDataItems no_image{{"picture", photo, "a.jpg", "image/jpeg"}};
  expect_error(client.Post("/v1/quality", no_image), 400, "missing_field", "no image field");
  httplib::MultipartFormDataItems half_pair{{"image_a", photo, "a.jpg", "image/jpeg"}};
  expect_error(client.Post("/v1/verify", half_pair), 400, "missing_field", "verify, one image");
  expect_error(client.Post("/v1/embed?aligned=true", photo, "image/jpeg"), 400, "bad_aligned_size",
               "aligned photo");
  expect_error(client.Post("/v1/embed?aligned=maybe", photo, "image/jpeg"), 400, "bad_parameter",
               "aligned=maybe");
  expect_error(client.Post("/v1/identify", photo, "image/jpeg"), 404, "no_gallery",
               "identify without gallery");
  expect_error(client.Delete("/v1/persons/nobody"), 404, "no_gallery", "delete without gallery");
  expect_error(client.Post("/v1/assign", photo, "image/jpeg"), 404, "no_gallery",
               "assign without gallery");
  expect_error(client.Get("/v2/anything"), 404, "not_found", "unknown route");
  expect_error(client.Get("/../../etc/passwd"), 404, "not_found", "path outside");
  // A 50 MB body: over the 32 MB limit (cpp-httplib reads past it, then answers).
  expect_error(client.Post("/v1/quality", std::string(50u << 20, 'x'), "image/jpeg"), 413,
               "too_large", "50 MB body");
  // 1,000 connections opened and dropped, half of them after half a request, as a burst from 20
  // threads (with cpp-httplib's own listen backlog of 5 this took 53 s of SYN retransmissions;
  // the server raises it).
  std::vector<std::thread> droppers;
  for (int t = 0; t < 20; ++t) {
    droppers.emplace_back([port = server.port(), t] {
      for (int i = t; i < 1000; i += 20) {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && i % 2)
          (void)!write(fd, "POST /v1/quality HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 53);
        close(fd);
      }
    });
  }
  for (auto& t : droppers) t.join();
  // Still alive, still right.
  const auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto good = body_of(client.Post("/v1/quality", photo, "image/jpeg"));
  ASSERT_EQ(good["faces"].size(), 1u) << good;
  EXPECT_GT(good["faces"][0]["quality"].get<double>(), 1.0);
  const auto metrics = client.Get("/metrics")->body;
  EXPECT_NE(metrics.find("facemag_errors_total{kind=\"bad_image\"} 2"), std::string::npos)
      << metrics;
}

TEST(ServeCli, SigtermAnswersTheRequestsInFlightThenExitsZero) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  Server server(model(), tmp);
  REQUIRE_SERVER(server);
  const auto photo = file_bytes(test::shared_dir() / "data/facenet-test-images/multiface.jpg");
  auto in_flight = std::async(std::launch::async, [&] {
    auto c = server.client();
    return c.Post("/v1/quality", photo, "image/jpeg");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(server.terminate(), 0) << server.log();
  const auto r = in_flight.get();
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(body_of(r)["faces"].size(), 2u);
}

// /v1/assign is `gallery assign` for one uploaded photo: a face of an enrolled person joins them,
// a face of nobody waits, a second face like it makes a proposed person that the next one joins;
// the records are the CLI's JSON lines; bad input is one JSON error and the server lives on.
TEST(ServeCli, AssignJoinsKnownPeopleProposesNewOnesAndRefusesBadInput) {
  REQUIRE_REAL_MODEL();
  test::TempDir tmp;
  const auto db = (tmp / "g.db").string();
  ASSERT_EQ(test::run_cli("gallery create " + db + model(), tmp).exit_code, 0);
  Server server(with_gallery(db), tmp);
  REQUIRE_SERVER(server);
  auto client = server.client();
  ASSERT_EQ(
      client.Post("/v1/enroll?person=bruce", file_bytes(casia() / "bruce/004.jpg"), "image/jpeg")
          ->status,
      201);
  const auto assign = [&](const std::string& photo) {
    const auto r = body_of(client.Post("/v1/assign", file_bytes(casia() / photo), "image/jpeg"));
    EXPECT_EQ(r["faces"].size(), 1u) << photo << ": " << r;
    return r;
  };
  auto r = assign("bruce/001.jpg");
  EXPECT_EQ(r["faces"][0]["status"], "known") << r;
  EXPECT_EQ(r["faces"][0]["person"], "bruce");
  EXPECT_GE(r["faces"][0]["similarity"].get<double>(), 0.2);  // the gallery's threshold
  EXPECT_EQ(r["faces"][0]["path"], "upload");
  r = assign("pam/001.jpg");
  EXPECT_EQ(r["faces"][0]["status"], "unassigned") << r;
  EXPECT_TRUE(r["faces"][0]["person"].is_null());
  EXPECT_TRUE(r["proposed"].empty());
  r = assign("pam/002.jpg");
  EXPECT_EQ(r["faces"][0]["status"], "proposed") << r;
  EXPECT_EQ(r["faces"][0]["person"], "unnamed-1");
  EXPECT_EQ(r["faces"][0]["grouped"], true);
  ASSERT_EQ(r["proposed"].size(), 1u);
  EXPECT_EQ(r["proposed"][0]["face_ids"].size(), 2u);
  r = assign("pam/003.jpg");
  EXPECT_EQ(r["faces"][0]["person"], "unnamed-1") << r;
  EXPECT_FALSE(r["faces"][0].contains("grouped"));
  // The same photo again, as a multipart upload: stored once, where it is now.
  httplib::MultipartFormDataItems form{
      {"image", file_bytes(casia() / "pam/001.jpg"), "pam1.jpg", "image/jpeg"}};
  const auto again = body_of(client.Post("/v1/assign", form));
  EXPECT_EQ(again["faces"][0]["already_stored"], true) << again;
  EXPECT_EQ(again["faces"][0]["person"], "unnamed-1");
  EXPECT_EQ(again["faces"][0]["path"], "upload:pam1.jpg");
  const auto persons = body_of(client.Get("/v1/persons"))["persons"];
  ASSERT_EQ(persons.size(), 2u) << persons;
  EXPECT_EQ(persons[1]["name"], "unnamed-1");
  EXPECT_EQ(persons[1]["proposed"], true);
  EXPECT_EQ(persons[1]["faces"], 3);
  EXPECT_FALSE(persons[0].contains("proposed"));
  // A photo without a face: no record, nothing stored.
  std::vector<unsigned char> grey;
  cv::imencode(".png", cv::Mat(120, 160, CV_8UC3, cv::Scalar(128, 128, 128)), grey);
  r = body_of(client.Post("/v1/assign", std::string(grey.begin(), grey.end()), "image/png"));
  EXPECT_EQ(r["faces_found"], 0) << r;
  EXPECT_TRUE(r["faces"].empty());

  for (const auto& [body, query, status, kind] :
       {std::tuple{std::string("not an image"), "", 400, "bad_image"},
        std::tuple{std::string(), "", 400, "empty_body"},
        std::tuple{file_bytes(casia() / "pam/004.jpg"), "?min_faces=0", 400, "bad_parameter"},
        std::tuple{file_bytes(casia() / "pam/004.jpg"), "?aligned=true", 400,
                   "bad_aligned_size"}}) {
    const auto bad = client.Post(("/v1/assign" + std::string(query)).c_str(), body, "image/jpeg");
    ASSERT_TRUE(bad) << kind;
    EXPECT_EQ(bad->status, status) << bad->body;
    EXPECT_EQ(body_of(bad)["error"], kind) << bad->body;
  }
  EXPECT_EQ(client.Get("/health")->status, 200);
  EXPECT_TRUE(body_of(client.Get("/openapi.json"))["paths"].contains("/v1/assign"));
  EXPECT_EQ(test::run_cli("gallery check " + db, tmp).exit_code, 0);
}

TEST(ServeCli, TheWebPageShowsAndEnrolsFacesInChromium) {
  REQUIRE_REAL_MODEL();
  const fs::path npm = fs::path(FACEMAG_BINARY_DIR) / "npm";
  if (!fs::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "Chromium is absent (/usr/bin/chromium): scripts/setup.sh installs it";
  if (!fs::exists(npm / "node_modules" / "playwright-core"))
    GTEST_SKIP() << "playwright-core is absent (" << npm.string()
                 << "): scripts/test.sh installs it with npm";
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is absent";
  test::TempDir tmp;
  const auto db = (tmp / "g.db").string();
  ASSERT_EQ(test::run_cli("gallery create " + db + model(), tmp).exit_code, 0);
  ASSERT_EQ(
      test::run_cli("gallery enroll " + db + " " + casia().string() + " --by-folder" + model(), tmp)
          .exit_code,
      0);
  Server server(with_gallery(db), tmp);
  REQUIRE_SERVER(server);
  const std::string cmd =
      "node " + (fs::path(FACEMAG_SOURCE_DIR) / "tests/browser/serve_page.cjs").string() + " " +
      npm.string() + " http://127.0.0.1:" + std::to_string(server.port()) + "/ " +
      (test::shared_dir() / "data/facenet-test-images/paul_rudd/1.jpg").string() +
      " unknown paul 2>&1";
  // Paul Rudd is not in the gallery (bruce, neil, pam): the page says unknown, then enrols him.
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = pclose(pipe);
  ASSERT_EQ(WEXITSTATUS(status), 0) << out << server.log();
  const auto shown = json::parse(out.substr(out.find('{')));
  EXPECT_EQ(shown["person"], "unknown");
  EXPECT_EQ(shown["box"].get<std::string>().rfind("box ", 0), 0u) << shown;
  EXPECT_GT(shown["quality"].get<double>(), 0);
  EXPECT_EQ(shown["candidates"].size(), 3u);
  EXPECT_EQ(shown["canvas"][0], 1638);
  EXPECT_NE(shown["status"].get<std::string>().find("face"), std::string::npos);
  // The enrolment reached the gallery.
  const auto persons = body_of(server.client().Get("/v1/persons"));
  bool paul = false;
  for (const auto& p : persons["persons"]) paul = paul || p["name"] == "paul";
  EXPECT_TRUE(paul) << persons;
}

}  // namespace
}  // namespace facemag
