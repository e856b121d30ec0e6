#include "facemag/gallery/person_index.hpp"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>

#include <algorithm>
#include <cmath>

#include "facemag/error.hpp"
#include "facemag/gallery/gallery.hpp"

namespace facemag::gallery {

struct PersonIndex::Impl {
  std::size_t dim = 0;
  IndexKind kind = IndexKind::kExact;
  std::unique_ptr<faiss::IndexFlatIP> quantizer;  // kIvf's coarse quantizer
  std::unique_ptr<faiss::Index> index;
};

namespace {

using idx_t = faiss::Index::idx_t;

void normalise_rows(std::vector<float>& v, std::size_t dim) {
  for (std::size_t r = 0; r < v.size() / dim; ++r) {
    double sum = 0;
    for (std::size_t d = 0; d < dim; ++d) sum += double(v[r * dim + d]) * v[r * dim + d];
    const double scale = sum > 0 ? 1.0 / std::sqrt(sum) : 0.0;
    for (std::size_t d = 0; d < dim; ++d) v[r * dim + d] = float(v[r * dim + d] * scale);
  }
}

}  // namespace

PersonIndex::PersonIndex() : impl_(std::make_unique<Impl>()) {}
PersonIndex::PersonIndex(PersonIndex&&) noexcept = default;
PersonIndex& PersonIndex::operator=(PersonIndex&&) noexcept = default;
PersonIndex::~PersonIndex() = default;

void PersonIndex::build(std::span<const float> vectors, std::size_t dim, IndexKind kind) {
  if (dim == 0 || vectors.size() % dim != 0)
    throw InvalidInput("index: " + std::to_string(vectors.size()) + " values are not rows of " +
                       std::to_string(dim));
  std::vector<float> unit(vectors.begin(), vectors.end());
  normalise_rows(unit, dim);
  const auto rows = static_cast<idx_t>(unit.size() / dim);
  auto impl = std::make_unique<Impl>();
  impl->dim = dim;
  impl->kind = kind;
  const auto d = static_cast<int>(dim);
  switch (kind) {
    case IndexKind::kExact:
      impl->index = std::make_unique<faiss::IndexFlatIP>(d);
      break;
    case IndexKind::kHnsw: {
      // 16 links and efConstruction 40 build 100k 512-d people in ~60 s on 2 cores; efSearch 512
      // then finds 99.85 % of the exact top 10 (bench/bench_gallery.cpp measures it).
      auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(d, 16, faiss::METRIC_INNER_PRODUCT);
      hnsw->hnsw.efConstruction = 40;
      hnsw->hnsw.efSearch = 512;
      impl->index = std::move(hnsw);
      break;
    }
    case IndexKind::kIvf: {
      const auto lists = static_cast<std::size_t>(std::clamp<idx_t>(rows / 39, 1, 4096));
      impl->quantizer = std::make_unique<faiss::IndexFlatIP>(d);
      auto ivf = std::make_unique<faiss::IndexIVFFlat>(impl->quantizer.get(), dim, lists,
                                                       faiss::METRIC_INNER_PRODUCT);
      if (rows > 0) ivf->train(rows, unit.data());
      ivf->nprobe = std::min<std::size_t>(16, lists);
      impl->index = std::move(ivf);
      break;
    }
  }
  if (rows > 0) impl->index->add(rows, unit.data());
  impl_ = std::move(impl);
}

std::size_t PersonIndex::size() const {
  return impl_->index ? static_cast<std::size_t>(impl_->index->ntotal) : 0;
}

std::vector<Neighbour> PersonIndex::search(std::span<const float> query, int k) const {
  if (!impl_->index || size() == 0 || k <= 0) return {};
  if (query.size() != impl_->dim)
    throw InvalidInput("index: a query of " + std::to_string(query.size()) +
                       " values, the index "
                       "holds " +
                       std::to_string(impl_->dim) + "-d vectors");
  std::vector<float> unit(query.begin(), query.end());
  normalise_rows(unit, impl_->dim);
  const auto want = static_cast<idx_t>(std::min<std::size_t>(std::size_t(k), size()));
  std::vector<float> distances(static_cast<std::size_t>(want));
  std::vector<idx_t> labels(static_cast<std::size_t>(want));
  impl_->index->search(1, unit.data(), want, distances.data(), labels.data());
  std::vector<Neighbour> out;
  for (idx_t i = 0; i < want; ++i) {
    if (labels[i] < 0) continue;
    out.push_back({static_cast<std::size_t>(labels[i]), distances[i]});
  }
  return out;
}

}  // namespace facemag::gallery
