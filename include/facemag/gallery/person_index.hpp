// Nearest people by cosine similarity over unit-length template vectors, on faiss: exact inner
// product, HNSW graph, or an inverted file; what a gallery searches.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace facemag::gallery {

enum class IndexKind;

struct Neighbour {
  std::size_t row = 0;  // row of the vector given to build()
  double cosine = 0;
};

class PersonIndex {
 public:
  PersonIndex();
  PersonIndex(PersonIndex&&) noexcept;
  PersonIndex& operator=(PersonIndex&&) noexcept;
  ~PersonIndex();

  // `vectors`: rows x dim, any scale (each row is normalised here). kExact: exact inner product;
  // kHnsw: HNSW graph (16 links,
  // efConstruction 40, efSearch 512); kIvf: inverted file
  // of max(1, rows / 39) lists (at most 4096), 16 probed.
  void build(std::span<const float> vectors, std::size_t dim, IndexKind kind);
  std::size_t size() const;
  // The k nearest rows of a query (any scale), best first; fewer when the index is smaller.
  std::vector<Neighbour> search(std::span<const float> query, int k) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace facemag::gallery
