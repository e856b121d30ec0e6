// Load against a running `facemag serve` on loopback: a fixed number of requests at given
// concurrencies (requests/s, p50/p99 latency, errors), and a mixed enrol + identify run that
// checks afterwards that every acknowledged enrolment is in the gallery.
//
//   facemag_serve_bench --port P --route /v1/embed?aligned=true --body a.png [--body b.png ...]
//                       [--concurrency 1,8,32] [--requests 10000] [--token T]
//   facemag_serve_bench --port P --mixed 60 --enroll-crop crop.png --body photo.jpg [--token T]
//
// One JSON line per concurrency (or for the mixed run).
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string content_type(const std::string& path) {
  return path.size() > 4 && path.substr(path.size() - 4) == ".png" ? "image/png" : "image/jpeg";
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

struct Options {
  int port = 0;
  std::string route = "/v1/embed?aligned=true";
  std::vector<std::string> bodies;
  std::vector<int> concurrency{1, 8, 32};
  int requests = 10000;
  std::string token;
  double mixed_seconds = 0;
  std::string enroll_crop;
};

httplib::Client client_for(const Options& o) {
  httplib::Client c("127.0.0.1", o.port);
  c.set_read_timeout(120);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  if (!o.token.empty()) c.set_bearer_token_auth(o.token);
  return c;
}

void fixed_load(const Options& o) {
  std::vector<std::pair<std::string, std::string>> bodies;
  for (const auto& b : o.bodies) bodies.emplace_back(read_file(b), content_type(b));
  for (const int c : o.concurrency) {
    std::atomic<int> next{0}, errors{0};
    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(c));
    std::map<int, int> statuses;
    std::mutex statuses_mutex;
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < c; ++t) {
      threads.emplace_back([&, t] {
        auto client = client_for(o);
        for (int i; (i = next++) < o.requests;) {
          const auto& [body, type] = bodies[static_cast<std::size_t>(i) % bodies.size()];
          const auto start = Clock::now();
          const auto r = client.Post(o.route.c_str(), body, type.c_str());
          latencies[static_cast<std::size_t>(t)].push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - start).count());
          const int status = r ? r->status : -1;
          if (status != 200) {
            ++errors;
            std::lock_guard lock(statuses_mutex);
            ++statuses[status];
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::vector<double> all;
    for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    nlohmann::json failed = nlohmann::json::object();
    for (const auto& [status, n] : statuses) failed[std::to_string(status)] = n;
    std::cout << nlohmann::json{{"route", o.route},
                                {"concurrency", c},
                                {"requests", o.requests},
                                {"seconds", seconds},
                                {"requests_per_s", o.requests / seconds},
                                {"p50_ms", percentile(all, 0.5)},
                                {"p99_ms", percentile(all, 0.99)},
                                {"errors", errors.load()},
                                {"failed_statuses", failed}}
              << std::endl;
  }
}

// Enrolments of distinct crops (a pixel changed per request, so every one is a new face) under
// 40 names, and identifications of the photos, for `mixed_seconds`; then every acknowledged
// enrolment must be in the gallery.
void mixed_load(const Options& o) {
  const cv::Mat crop = cv::imread(o.enroll_crop);
  if (crop.empty()) throw std::runtime_error(o.enroll_crop + ": cannot read");
  std::vector<std::pair<std::string, std::string>> photos;
  for (const auto& b : o.bodies) photos.emplace_back(read_file(b), content_type(b));
  const auto run_id = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  std::mutex acks_mutex;
  std::map<std::string, int> acknowledged;  // person -> faces the server said it stored
  std::atomic<int> enrolls{0}, identifies{0}, errors{0};
  const auto end = Clock::now() + std::chrono::duration<double>(o.mixed_seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto client = client_for(o);
      for (int i = 0; Clock::now() < end; ++i) {
        cv::Mat unique = crop.clone();
        unique.at<cv::Vec3b>(i / 256 % unique.rows, i % 256 % unique.cols) =
            cv::Vec3b(static_cast<unsigned char>(t * 60), static_cast<unsigned char>(i % 251), 7);
        std::vector<unsigned char> png;
        cv::imencode(".png", unique, png);
        const std::string person = "load-" + run_id + "-" + std::to_string((t * 10 + i) % 40);
        const auto r = client.Post(("/v1/enroll?aligned=true&person=" + person).c_str(),
                                   std::string(png.begin(), png.end()), "image/png");
        if (r && r->status == 201) {
          std::lock_guard lock(acks_mutex);
          ++acknowledged[person];
          ++enrolls;
        } else {
          ++errors;
        }
      }
    });
  }
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto client = client_for(o);
      for (std::size_t i = static_cast<std::size_t>(t); Clock::now() < end; ++i) {
        const auto& [body, type] = photos[i % photos.size()];
        const auto r = client.Post("/v1/identify", body, type.c_str());
        if (r && r->status == 200) {
          ++identifies;
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  auto client = client_for(o);
  const auto r = client.Get("/v1/persons");
  if (!r || r->status != 200) throw std::runtime_error("GET /v1/persons failed");
  std::map<std::string, int> stored;
  const auto listing = nlohmann::json::parse(r->body);
  for (const auto& p : listing["persons"])
    stored[p["name"].get<std::string>()] = p["faces"].get<int>();
  int lost = 0;
  for (const auto& [person, n] : acknowledged) lost += std::max(0, n - stored[person]);
  std::cout << nlohmann::json{{"mixed_seconds", o.mixed_seconds},
                              {"enrolls_acknowledged", enrolls.load()},
                              {"identifies", identifies.load()},
                              {"errors", errors.load()},
                              {"acknowledged_enrolments_missing", lost}}
            << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--port") {
      o.port = std::stoi(v);
    } else if (a == "--route") {
      o.route = v;
    } else if (a == "--body") {
      o.bodies.push_back(v);
    } else if (a == "--concurrency") {
      o.concurrency.clear();
      std::stringstream in(v);
      for (std::string part; std::getline(in, part, ',');) o.concurrency.push_back(std::stoi(part));
    } else if (a == "--requests") {
      o.requests = std::stoi(v);
    } else if (a == "--token") {
      o.token = v;
    } else if (a == "--mixed") {
      o.mixed_seconds = std::stod(v);
    } else if (a == "--enroll-crop") {
      o.enroll_crop = v;
    } else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  if (o.port <= 0 || o.bodies.empty()) {
    std::cerr << "give --port and at least one --body\n";
    return 2;
  }
  try {
    if (o.mixed_seconds > 0) {
      mixed_load(o);
    } else {
      fixed_load(o);
    }
  } catch (const std::exception& e) {
    std::cerr << "facemag_serve_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
