// Nearest people by cosine similarity over unit-length template vectors, keyed by person id and
// changed in place (a gallery follows the store's change log into it): what a gallery searches.
//
// Kinds, and what each costs for N people of D values (scores by BLAS, one query at a time):
// - exact: every template scored. Search O(N D) (memory-bound: 0.74 ms at 10k 512-d people);
//   upsert and remove O(D); memory N D floats.
// - ivf: an inverted file of L = 2 sqrt(N) lists (k-means on 32 rows per list, at most 4096
//   lists), the `kIvfProbes` lists nearest the query scored. Search O(L D + N D probes / L);
//   upsert and remove O(L D); build O(N L D); memory N D + L D floats. Lists are trained at build:
//   once N has grown to 4x the rows they were trained on, wants_rebuild() says so.
// - hnsw: faiss HNSW graph (16 links, efConstruction 40, efSearch 768). Search ~O(log N D);
//   upsert O(log N D); remove O(1) as a tombstone (a graph cannot drop a node): once tombstones
//   reach a quarter of the live rows, wants_rebuild() says so. Memory N (D + 32) floats.
// - auto: exact up to kExactUpTo people, hnsw above (resolve_index_kind): at 100k 512-d people
//   hnsw finds 99.95 % of the exact top 10 in 4.9 ms, where ivf at kIvfProbes lists finds 84 %
//   in 1.25 ms and exact takes 16 ms; at 1M hnsw 99.1 % in 9.3 ms (bench/bench_gallery.cpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "facemag/error.hpp"

namespace facemag::gallery {

// A build told to stop (PersonIndex::build's `stop`): a gallery closing while a rebuild runs.
class IndexBuildStopped : public Error {
 public:
  using Error::Error;
};

enum class IndexKind { kAuto, kExact, kHnsw, kIvf };
IndexKind parse_index_kind(const std::string& name);  // "auto", "exact", "hnsw", "ivf"
std::string index_kind_name(IndexKind kind);

// Where auto switches from exact to hnsw: an exact scan of 20k 512-d people reads 40 MB (~3 ms).
inline constexpr std::size_t kExactUpTo = 20000;
// IVF lists scored per query: fast, at a recall below hnsw's (bench/bench_gallery.cpp measures
// both; `gallery check --recall` on a user's gallery).
inline constexpr std::size_t kIvfProbes = 48;

// The kind an index of `people` rows gets: `requested`, or for kAuto exact up to kExactUpTo and
// hnsw above.
IndexKind resolve_index_kind(IndexKind requested, std::size_t people);

struct Neighbour {
  std::int64_t id = 0;  // the id given with the vector
  double cosine = 0;
};

class PersonIndex {
 public:
  PersonIndex();
  PersonIndex(PersonIndex&&) noexcept;
  PersonIndex& operator=(PersonIndex&&) noexcept;
  ~PersonIndex();

  // Replaces the contents: `ids[i]` has row i of `vectors` (ids.size() x dim, any scale: rows are
  // normalised here, in the vector given, which the index may keep; ids distinct). kAuto
  // resolves by the number of rows. InvalidInput for sizes that do not fit or a repeated id.
  // `stop`, when given, is read between chunks of kBuildChunk rows of an hnsw graph (and before
  // the other kinds start): once set, build throws IndexBuildStopped and the index is unchanged.
  void build(std::span<const std::int64_t> ids, std::vector<float> vectors, std::size_t dim,
             IndexKind kind, const std::atomic<bool>* stop = nullptr);
  // Rows an hnsw build adds between two looks at `stop` (~1.4 s at 1M 512-d people, 2 cores).
  static constexpr std::size_t kBuildChunk = 4096;
  // Adds `id`, or replaces its vector (any scale).
  void upsert(std::int64_t id, std::span<const float> vector);
  // Removes `id`; nothing when it is not there.
  void remove(std::int64_t id);

  std::size_t size() const;  // ids held
  std::size_t dim() const;
  IndexKind kind() const;  // resolved (never kAuto)
  bool contains(std::int64_t id) const;
  // Changes since build() have degraded the index (ivf grown past its lists, hnsw tombstones):
  // build it again from the vectors.
  bool wants_rebuild() const;

  // The k nearest ids of a query (any scale), best first; fewer when the index holds fewer.
  std::vector<Neighbour> search(std::span<const float> query, int k) const;

  // An hnsw index (its graph takes minutes to build at 1M people; the other kinds build from the
  // vectors in seconds) written to `path` with the caller's `tag`, atomically (a temporary file
  // renamed over it). InvalidInput for another kind; Error when the file cannot be written.
  // Time and size O(N (D + 32)).
  void save(const std::string& path, const std::string& tag) const;
  // Replaces this index with one save() wrote; its tag. nullopt, leaving this index as it was,
  // when there is no such file or it is not a whole saved index.
  std::optional<std::string> load(const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace facemag::gallery
