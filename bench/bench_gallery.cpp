// Gallery search latency: one query at a time (as a user asks "who is this?"), over N synthetic
// 512-d people, for the exact index, IVF, HNSW, and a plain loop over the templates as the peers
// do it (deepface / CompreFace: one dot product per enrolled vector), measured in the same run.
//
//   build/bench/facemag_gallery_bench [SIZES...] [--hnsw-up-to N] [--queries Q] [--isotropic]
//                                     [--store DIR [--store-only] [--reuse]]
//   (default sizes 1000 10000 100000 1000000; HNSW built up to 100000: its build is the cost)
//
// Prints one JSON line per size and index: median and p99 latency per query in ms, build time,
// and recall@10 against exact on queries near enrolled people.
//
// With --store DIR, then a whole SQLite gallery per size in DIR (2 faces per person, index auto):
// import time; start-up (a fresh process opening it and answering its first search, with that
// process's memory against the templates' own size); enrolling one face to a new person, from
// the call to the enrolling handle's index holding it, p50/p99; the time a second handle (its own
// connection, as another process has) takes to follow that change; Gallery::search p50/p99; the
// index's recall@10 (Gallery::index_recall). --reuse keeps a gallery an earlier run imported.
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/person_index.hpp"
#include "facemag/runtime.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace gallery = facemag::gallery;
constexpr std::size_t kDim = 512;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * double(v.size() - 1))];
}

// The peer's way: every template's cosine, then the top 10.
std::vector<std::size_t> loop_search(const std::vector<float>& unit, const std::vector<float>& q,
                                     std::size_t k) {
  const std::size_t rows = unit.size() / kDim;
  std::vector<std::pair<float, std::size_t>> scores(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    float dot = 0;
    for (std::size_t d = 0; d < kDim; ++d) dot += unit[r * kDim + d] * q[d];
    scores[r] = {dot, r};
  }
  std::partial_sort(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(k), scores.end(),
                    std::greater<>());
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < k; ++i) out.push_back(scores[i].second);
  return out;
}

// People as random points of a random `intrinsic`-d subspace of the 512-d space (face embeddings
// vary along a few dozen directions), or with --isotropic of all 512 (no structure: the worst
// case of a graph); their faces and probes moved within it.
class SyntheticPeople {
 public:
  SyntheticPeople(std::size_t intrinsic, unsigned seed) : intrinsic_(intrinsic), rng_(seed) {
    basis_.resize(kDim * intrinsic);
    for (auto& x : basis_) x = normal_(rng_);
  }
  std::vector<float> latent() {
    std::vector<float> z(intrinsic_);
    for (auto& x : z) x = normal_(rng_);
    return z;
  }
  // A point near `z` (spread 0: `z` itself).
  std::vector<float> embed(const std::vector<float>& z, float spread = 0) {
    std::vector<float> moved = z, out(kDim);
    for (auto& x : moved) x += spread * normal_(rng_);
    for (std::size_t d = 0; d < kDim; ++d) {
      float s = 0;
      for (std::size_t j = 0; j < intrinsic_; ++j) s += basis_[d * intrinsic_ + j] * moved[j];
      out[d] = s;
    }
    return out;
  }

 private:
  std::size_t intrinsic_;
  std::mt19937 rng_;
  std::normal_distribution<float> normal_;
  std::vector<float> basis_;
};

void bench_indexes(std::size_t n, std::size_t queries, std::size_t hnsw_up_to, bool isotropic) {
  SyntheticPeople people(isotropic ? kDim : 32, 5);
  std::vector<float> data(n * kDim);
  std::vector<std::vector<float>> probes;
  for (std::size_t r = 0; r < n; ++r) {
    const auto z = people.latent();
    const auto v = people.embed(z);
    std::copy(v.begin(), v.end(), data.begin() + static_cast<std::ptrdiff_t>(r * kDim));
    // The people are in random order: the first ones are as good as any.
    if (r < queries) probes.push_back(people.embed(z, 0.5f));
  }
  queries = probes.size();
  std::vector<float> unit = data;
  for (std::size_t r = 0; r < n; ++r) {
    double s = 0;
    for (std::size_t d = 0; d < kDim; ++d) s += double(unit[r * kDim + d]) * unit[r * kDim + d];
    for (std::size_t d = 0; d < kDim; ++d)
      unit[r * kDim + d] = float(unit[r * kDim + d] / std::sqrt(s));
  }
  std::vector<std::set<std::int64_t>> truth(queries);
  std::vector<double> times;
  for (std::size_t q = 0; q < queries; ++q) {
    const auto t0 = Clock::now();
    const auto top = loop_search(unit, probes[q], 10);
    times.push_back(ms_since(t0));
    truth[q] = {top.begin(), top.end()};
  }
  std::cout << json{{"people", n},
                    {"index", "loop (peer)"},
                    {"median_ms", percentile(times, 0.5)},
                    {"p99_ms", percentile(times, 0.99)}}
            << std::endl;
  std::vector<std::int64_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  for (const auto kind :
       {gallery::IndexKind::kExact, gallery::IndexKind::kIvf, gallery::IndexKind::kHnsw}) {
    if (kind == gallery::IndexKind::kHnsw && n > hnsw_up_to) continue;
    gallery::PersonIndex index;
    auto t0 = Clock::now();
    index.build(ids, data, kDim, kind);
    const double build_s = ms_since(t0) / 1000;
    times.clear();
    std::size_t found = 0;
    for (std::size_t q = 0; q < queries; ++q) {
      t0 = Clock::now();
      const auto hits = index.search(probes[q], 10);
      times.push_back(ms_since(t0));
      for (const auto& h : hits) found += truth[q].count(h.id);
    }
    std::cout << json{{"people", n},
                      {"index", gallery::index_kind_name(kind)},
                      {"build_s", build_s},
                      {"median_ms", percentile(times, 0.5)},
                      {"p99_ms", percentile(times, 0.99)},
                      {"recall_at_10", double(found) / double(10 * queries)}}
              << std::endl;
  }
}

gallery::NewFace synthetic_face(const std::string& person, std::size_t photo,
                                std::vector<float> embedding) {
  gallery::NewFace f;
  f.person = person;
  f.source_path = "/archive/" + std::to_string(photo) + ".jpg";
  f.image_sha256 = "sha-" + std::to_string(photo);
  f.detection.box = {10, 20, 110, 140};
  f.detection.score = 0.99f;
  f.embedding = std::move(embedding);
  return f;
}

gallery::ModelBinding synthetic_model() {
  gallery::ModelBinding m;
  m.model_name = "synthetic-512";
  m.architecture = "iresnet100";
  m.embedding_size = static_cast<int>(kDim);
  m.weights_sha256 = std::string(64, '0');
  return m;
}

// A fresh process opens the gallery and answers one search: its start-up and memory.
json startup_in_child(const std::string& self, const std::string& db) {
  const std::string command = "'" + self + "' --open '" + db + "'";
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  char buf[512];
  while (std::size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  pclose(pipe);
  return json::parse(out);
}

int open_and_report(const std::string& db) {
  const double rss_before = facemag::current_rss_mb();
  const auto t0 = Clock::now();
  const auto g = gallery::Gallery::open(db);
  g.search(std::vector<float>(kDim, 1.f), 10);
  const double startup_s = ms_since(t0) / 1000;
  const auto status = g.index_status();
  std::cout << json{{"startup_s", startup_s},
                    {"index", gallery::index_kind_name(status.kind)},
                    {"rss_before_mb", rss_before},
                    {"rss_mb", facemag::current_rss_mb()},
                    {"peak_rss_mb", facemag::peak_rss_mb()}}
            << std::endl;
  return 0;
}

void bench_store(const std::string& self, const std::filesystem::path& dir, std::size_t n,
                 std::size_t queries, bool reuse) {
  std::filesystem::create_directories(dir);
  const auto db = (dir / ("gallery-" + std::to_string(n) + ".db")).string();
  // --reuse: a gallery a previous run imported (the same people: the same seed), and its saved
  // index.
  reuse = reuse && std::filesystem::exists(db);
  if (!reuse) std::filesystem::remove(db + ".index");
  if (!reuse) {
    std::filesystem::remove(db);
    std::filesystem::remove(db + "-wal");
    std::filesystem::remove(db + "-shm");
  }
  SyntheticPeople people(32, 7);
  std::vector<std::vector<float>> latents;
  json record{{"people", n}, {"faces", 2 * n}};
  if (reuse) {
    for (std::size_t p = 0; p < 4 * queries && p < n; ++p) {
      latents.push_back(people.latent());
      people.embed(latents.back(), 0.3f);
      people.embed(latents.back(), 0.3f);
    }
  } else {
    auto g = gallery::Gallery::create(db, synthetic_model());
    const auto t0 = Clock::now();
    constexpr std::size_t kBatch = 500;  // people per transaction
    std::vector<gallery::NewFace> batch;
    for (std::size_t p = 0; p < n; ++p) {
      const auto z = people.latent();
      if (latents.size() < 4 * queries) latents.push_back(z);
      for (int f = 0; f < 2; ++f)
        batch.push_back(
            synthetic_face("person-" + std::to_string(p), 2 * p + f, people.embed(z, 0.3f)));
      if (batch.size() == 2 * kBatch || p + 1 == n) {
        g.enroll(batch);
        batch.clear();
      }
    }
    record["import_s"] = ms_since(t0) / 1000;
    record["store_gb"] = double(std::filesystem::file_size(db)) / 1e9;
  }
  // The first open builds the index (and saves an hnsw one next to the store); the second reads
  // the saved one.
  const auto built = startup_in_child(self, db);
  const auto saved = startup_in_child(self, db);
  record["startup_building_s"] = built["startup_s"];
  record["startup_saved_index_s"] = saved["startup_s"];
  record["index"] = saved["index"];
  record["search_process_mb"] =
      saved["rss_mb"].get<double>() - saved["rss_before_mb"].get<double>();
  record["templates_mb"] = double(n * kDim * sizeof(float)) / (1024.0 * 1024.0);
  auto writer = gallery::Gallery::open(db), follower = gallery::Gallery::open(db);
  writer.index_status();
  follower.index_status();
  std::vector<double> enrol, follow, search;
  const auto run = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  for (std::size_t i = 0; i < queries; ++i) {
    auto face = synthetic_face("new-" + run + "-" + std::to_string(i), 2 * n + i,
                               people.embed(people.latent()));
    face.image_sha256 += "-" + run;  // new in every run, also of a --reuse'd gallery
    auto t0 = Clock::now();
    writer.enroll({face});
    writer.index_status();  // the enrolling process's index holds the new person
    enrol.push_back(ms_since(t0));
    t0 = Clock::now();
    follower.index_status();  // another connection follows the change
    follow.push_back(ms_since(t0));
  }
  for (std::size_t q = 0; q < queries; ++q) {
    const auto probe = people.embed(latents[(q * 4) % latents.size()], 0.5f);
    const auto t0 = Clock::now();
    follower.search(probe, 10);
    search.push_back(ms_since(t0));
  }
  const auto recall = follower.index_recall(static_cast<int>(queries));
  const auto status = follower.index_status();
  record["enrol_to_index_p50_ms"] = percentile(enrol, 0.5);
  record["enrol_to_index_p99_ms"] = percentile(enrol, 0.99);
  record["follow_p50_ms"] = percentile(follow, 0.5);
  record["follow_p99_ms"] = percentile(follow, 0.99);
  record["search_p50_ms"] = percentile(search, 0.5);
  record["search_p99_ms"] = percentile(search, 0.99);
  record["recall_at_10"] = recall.recall;
  record["full_loads"] = status.full_loads;
  std::cout << record << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes;
  std::size_t hnsw_up_to = 100000, queries = 200;
  bool isotropic = false, index_benchmark = true, reuse = false;
  std::string store;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--open" && i + 1 < argc) return open_and_report(argv[i + 1]);
    if (a == "--isotropic") {
      isotropic = true;
    } else if (a == "--reuse") {
      reuse = true;
    } else if (a == "--store-only") {
      index_benchmark = false;
    } else if (a == "--store" && i + 1 < argc) {
      store = argv[++i];
    } else if (a == "--hnsw-up-to" && i + 1 < argc) {
      hnsw_up_to = std::stoul(argv[++i]);
    } else if (a == "--queries" && i + 1 < argc) {
      queries = std::stoul(argv[++i]);
    } else {
      sizes.push_back(std::stoul(a));
    }
  }
  if (sizes.empty()) sizes = {1000, 10000, 100000, 1000000};
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  for (const std::size_t n : sizes) {
    if (index_benchmark) bench_indexes(n, queries, hnsw_up_to, isotropic);
    if (!store.empty()) bench_store(self, store, n, queries, reuse);
  }
  return 0;
}
