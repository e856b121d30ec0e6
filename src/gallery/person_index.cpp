#include "facemag/gallery/person_index.hpp"

#include <ATen/ATen.h>
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/index_io.h>
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <queue>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "facemag/error.hpp"

namespace facemag::gallery {

IndexKind parse_index_kind(const std::string& name) {
  if (name == "auto") return IndexKind::kAuto;
  if (name == "exact") return IndexKind::kExact;
  if (name == "hnsw") return IndexKind::kHnsw;
  if (name == "ivf") return IndexKind::kIvf;
  throw InvalidInput("unknown index '" + name + "' (auto, exact, hnsw, ivf)");
}

std::string index_kind_name(IndexKind kind) {
  switch (kind) {
    case IndexKind::kAuto:
      return "auto";
    case IndexKind::kExact:
      return "exact";
    case IndexKind::kHnsw:
      return "hnsw";
    case IndexKind::kIvf:
      return "ivf";
  }
  return "?";
}

IndexKind resolve_index_kind(IndexKind requested, std::size_t people) {
  if (requested != IndexKind::kAuto) return requested;
  return people <= kExactUpTo ? IndexKind::kExact : IndexKind::kHnsw;
}

namespace {

using FaissId = faiss::Index::idx_t;

std::vector<float> unit_copy(std::span<const float> v) {
  double sum = 0;
  for (const float x : v) sum += double(x) * x;
  const double scale = sum > 0 ? 1.0 / std::sqrt(sum) : 0.0;
  std::vector<float> out(v.size());
  for (std::size_t d = 0; d < v.size(); ++d) out[d] = float(v[d] * scale);
  return out;
}

at::Tensor matrix_view(const float* values, std::size_t rows, std::size_t dim) {
  return at::from_blob(const_cast<float*>(values),
                       {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(dim)},
                       at::kFloat);
}

// The k best (cosine, id) offered so far.
class TopK {
 public:
  explicit TopK(std::size_t k) : k_(k) {}
  void offer(float cosine, std::int64_t id) {
    if (heap_.size() < k_) {
      heap_.emplace(cosine, id);
    } else if (k_ > 0 && cosine > heap_.top().first) {
      heap_.pop();
      heap_.emplace(cosine, id);
    }
  }
  std::vector<Neighbour> best_first() {
    std::vector<Neighbour> out(heap_.size());
    for (auto i = out.size(); i-- > 0; heap_.pop())
      out[i] = {heap_.top().second, heap_.top().first};
    return out;
  }

 private:
  std::size_t k_;
  std::priority_queue<std::pair<float, std::int64_t>, std::vector<std::pair<float, std::int64_t>>,
                      std::greater<>>
      heap_;
};

// Unit rows and their ids, dense; a removal moves the last row into the hole.
class Rows {
 public:
  explicit Rows(std::size_t dim) : dim_(dim) {}
  Rows(std::size_t dim, std::span<const std::int64_t> ids, std::vector<float> unit_rows)
      : dim_(dim), values_(std::move(unit_rows)), ids_(ids.begin(), ids.end()) {}
  std::size_t size() const { return ids_.size(); }
  std::int64_t id(std::size_t slot) const { return ids_[slot]; }
  std::size_t append(std::int64_t id, const float* unit) {
    values_.insert(values_.end(), unit, unit + dim_);
    ids_.push_back(id);
    return ids_.size() - 1;
  }
  void overwrite(std::size_t slot, const float* unit) {
    std::copy_n(unit, dim_, values_.begin() + static_cast<std::ptrdiff_t>(slot * dim_));
  }
  // Removes row `slot`; the id moved into it from the end, or -1 when it was the last row.
  std::int64_t erase(std::size_t slot) {
    const std::size_t last = ids_.size() - 1;
    std::int64_t moved = -1;
    if (slot != last) {
      std::copy_n(values_.begin() + static_cast<std::ptrdiff_t>(last * dim_), dim_,
                  values_.begin() + static_cast<std::ptrdiff_t>(slot * dim_));
      ids_[slot] = moved = ids_[last];
    }
    values_.resize(last * dim_);
    ids_.pop_back();
    return moved;
  }
  // Every row's cosine to a unit query, offered to `top`.
  void score(const at::Tensor& query, TopK& top) const {
    if (ids_.empty()) return;
    const auto scores = matrix_view(values_.data(), ids_.size(), dim_).mv(query).contiguous();
    const float* s = scores.data_ptr<float>();
    for (std::size_t r = 0; r < ids_.size(); ++r) top.offer(s[r], ids_[r]);
  }

 private:
  std::size_t dim_;
  std::vector<float> values_;
  std::vector<std::int64_t> ids_;
};

struct Backend {
  virtual ~Backend() = default;
  virtual void upsert(std::int64_t id, const float* unit) = 0;
  virtual void remove(std::int64_t id) = 0;
  virtual std::size_t size() const = 0;
  virtual bool contains(std::int64_t id) const = 0;
  virtual bool wants_rebuild() const { return false; }
  virtual std::vector<Neighbour> search(const float* unit, std::size_t k) const = 0;
};

class ExactBackend final : public Backend {
 public:
  ExactBackend(std::size_t dim, std::span<const std::int64_t> ids, std::vector<float> unit_rows)
      : dim_(dim), rows_(dim, ids, std::move(unit_rows)) {
    for (std::size_t r = 0; r < ids.size(); ++r)
      if (!slot_.emplace(ids[r], r).second)
        throw InvalidInput("index: id " + std::to_string(ids[r]) + " given twice");
  }
  void upsert(std::int64_t id, const float* unit) override {
    const auto at = slot_.find(id);
    if (at != slot_.end())
      rows_.overwrite(at->second, unit);
    else
      slot_[id] = rows_.append(id, unit);
  }
  void remove(std::int64_t id) override {
    const auto at = slot_.find(id);
    if (at == slot_.end()) return;
    const auto slot = at->second;
    slot_.erase(at);
    if (const auto moved = rows_.erase(slot); moved >= 0) slot_[moved] = slot;
  }
  std::size_t size() const override { return rows_.size(); }
  bool contains(std::int64_t id) const override { return slot_.count(id) > 0; }
  std::vector<Neighbour> search(const float* unit, std::size_t k) const override {
    TopK top(k);
    rows_.score(at::from_blob(const_cast<float*>(unit), {static_cast<std::int64_t>(dim_)}), top);
    return top.best_first();
  }

 private:
  std::size_t dim_;
  Rows rows_;
  std::unordered_map<std::int64_t, std::size_t> slot_;
};

// An inverted file: unit centroids from k-means, each row in the list of its nearest centroid.
class IvfBackend final : public Backend {
 public:
  IvfBackend(std::size_t dim, std::span<const std::int64_t> ids, std::span<const float> unit_rows)
      : dim_(dim) {
    const std::size_t n = unit_rows.size() / dim;
    lists_count_ =
        std::clamp<std::size_t>(static_cast<std::size_t>(2 * std::sqrt(double(n))), 1, 4096);
    lists_count_ = std::min(lists_count_, std::max<std::size_t>(n, 1));
    centroids_.assign(lists_count_ * dim, 0.f);
    if (n > 0) {
      faiss::ClusteringParameters params;
      params.niter = 10;
      params.max_points_per_centroid = 32;  // faiss samples at most 32 rows per list
      params.spherical = true;
      faiss::Clustering kmeans(static_cast<int>(dim), static_cast<int>(lists_count_), params);
      faiss::IndexFlatIP assigner(static_cast<int>(dim));
      kmeans.train(static_cast<FaissId>(n), unit_rows.data(), assigner);
      centroids_ = kmeans.centroids;
    }
    trained_rows_ = n;
    lists_.assign(lists_count_, Rows(dim));
    constexpr std::size_t kChunk = 8192;
    for (std::size_t from = 0; from < n; from += kChunk) {
      const std::size_t rows = std::min(kChunk, n - from);
      const auto nearest =
          at::matmul(matrix_view(unit_rows.data() + from * dim, rows, dim), centroids().t())
              .argmax(1)
              .contiguous();
      const auto* list = nearest.data_ptr<std::int64_t>();
      for (std::size_t r = 0; r < rows; ++r)
        place(ids[from + r], static_cast<std::size_t>(list[r]),
              unit_rows.data() + (from + r) * dim);
    }
  }
  void upsert(std::int64_t id, const float* unit) override {
    remove(id);
    const auto scores = centroids().mv(vector_view(unit));
    place(id, static_cast<std::size_t>(scores.argmax().item<std::int64_t>()), unit);
  }
  void remove(std::int64_t id) override {
    const auto at = where_.find(id);
    if (at == where_.end()) return;
    const auto [list, slot] = at->second;
    where_.erase(at);
    if (const auto moved = lists_[list].erase(slot); moved >= 0) where_[moved] = {list, slot};
  }
  std::size_t size() const override { return where_.size(); }
  bool contains(std::int64_t id) const override { return where_.count(id) > 0; }
  bool wants_rebuild() const override {
    return size() > 4 * std::max<std::size_t>(trained_rows_, kExactUpTo / 4);
  }
  std::vector<Neighbour> search(const float* unit, std::size_t k) const override {
    const auto query = vector_view(unit);
    const auto probes = static_cast<std::int64_t>(std::min(kIvfProbes, lists_count_));
    const auto nearest = std::get<1>(centroids().mv(query).topk(probes)).contiguous();
    TopK top(k);
    for (std::int64_t p = 0; p < probes; ++p)
      lists_[static_cast<std::size_t>(nearest.data_ptr<std::int64_t>()[p])].score(query, top);
    return top.best_first();
  }

 private:
  at::Tensor centroids() const { return matrix_view(centroids_.data(), lists_count_, dim_); }
  at::Tensor vector_view(const float* unit) const {
    return at::from_blob(const_cast<float*>(unit), {static_cast<std::int64_t>(dim_)}, at::kFloat);
  }
  void place(std::int64_t id, std::size_t list, const float* unit) {
    if (where_.count(id)) throw InvalidInput("index: id " + std::to_string(id) + " given twice");
    where_[id] = {list, lists_[list].append(id, unit)};
  }

  std::size_t dim_;
  std::size_t lists_count_ = 1;
  std::size_t trained_rows_ = 0;
  std::vector<float> centroids_;
  std::vector<Rows> lists_;
  std::unordered_map<std::int64_t, std::pair<std::size_t, std::size_t>> where_;
};

// Debian's faiss is built for generic x86-64: its inner product is a scalar loop, one dependent
// add per value, and HNSW spends its build and its searches in them. These run 8 lanes at once
// where the CPU has AVX2 and FMA (chosen when the library loads).
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(s0, s1));
  float sum = 0;
  for (const float x : lanes) sum += x;
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float dot_portable(const float* a, const float* b, std::size_t n) {
  float s[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  float sum = 0;
  for (const float x : s) sum += x;
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

using DotProduct = float (*)(const float*, const float*, std::size_t);
const DotProduct dot = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? dot_avx2 : dot_portable;
}();

// faiss's flat inner-product storage, with distances from `dot`.
class FastFlatIP final : public faiss::IndexFlatIP {
 public:
  explicit FastFlatIP(int dim) : faiss::IndexFlatIP(dim) {}
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override {
    return new Distances(*this);
  }

 private:
  struct Distances final : faiss::FlatCodesDistanceComputer {
    explicit Distances(const FastFlatIP& storage)
        : faiss::FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
          dim(static_cast<std::size_t>(storage.d)),
          rows(storage.get_xb()) {}
    void set_query(const float* x) override { query = x; }
    float distance_to_code(const std::uint8_t* code) override {
      return dot(query, reinterpret_cast<const float*>(code), dim);
    }
    float symmetric_dis(idx_t i, idx_t j) override {
      return dot(rows + i * dim, rows + j * dim, dim);
    }
    std::size_t dim;
    const float* rows;
    const float* query = nullptr;
  };
};

// faiss HNSW over rows that are never removed: a removed or replaced id leaves a tombstone row.
class HnswBackend final : public Backend {
 public:
  explicit HnswBackend(std::size_t dim)
      : graph_(std::make_unique<faiss::IndexHNSWFlat>(static_cast<int>(dim), 16,
                                                      faiss::METRIC_INNER_PRODUCT)) {
    // 16 links and efConstruction 40: 1M 512-d people in 7 min on 2 cores.
    graph_->hnsw.efConstruction = 40;
    graph_->hnsw.efSearch = kEfSearch;
    use_fast_storage();
  }
  void add_rows(std::span<const std::int64_t> ids, const float* unit) {
    for (const auto id : ids) {
      if (row_.count(id)) throw InvalidInput("index: id " + std::to_string(id) + " given twice");
      row_[id] = row_ids_.size();
      row_ids_.push_back(id);
    }
    if (!ids.empty()) graph_->add(static_cast<FaissId>(ids.size()), unit);
  }
  void upsert(std::int64_t id, const float* unit) override {
    remove(id);
    add_rows({&id, 1}, unit);
  }
  void remove(std::int64_t id) override {
    const auto at = row_.find(id);
    if (at == row_.end()) return;
    row_ids_[at->second] = -1;
    row_.erase(at);
    ++tombstones_;
  }
  std::size_t size() const override { return row_.size(); }
  std::size_t dim() const { return static_cast<std::size_t>(graph_->d); }
  bool contains(std::int64_t id) const override { return row_.count(id) > 0; }
  bool wants_rebuild() const override { return tombstones_ > 0 && tombstones_ * 4 >= size(); }
  std::vector<Neighbour> search(const float* unit, std::size_t k) const override {
    // Ask for more rows than wanted while tombstones crowd the live ones out.
    const auto rows = static_cast<FaissId>(row_ids_.size());
    for (auto want = std::min<FaissId>(rows, static_cast<FaissId>(2 * k + 16));;
         want = std::min<FaissId>(rows, want * 4)) {
      std::vector<float> cosines(static_cast<std::size_t>(want));
      std::vector<FaissId> labels(static_cast<std::size_t>(want));
      // (faiss 1.7.3 reads efSearch from the index, not from search parameters, and explores at
      // least `want` candidates.)
      graph_->search(1, unit, want, cosines.data(), labels.data());
      std::vector<Neighbour> out;
      for (FaissId i = 0; i < want && out.size() < k; ++i) {
        const auto label = labels[static_cast<std::size_t>(i)];
        if (label < 0 || row_ids_[static_cast<std::size_t>(label)] < 0) continue;
        out.push_back(
            {row_ids_[static_cast<std::size_t>(label)], cosines[static_cast<std::size_t>(i)]});
      }
      if (out.size() >= std::min(k, size()) || want == rows) return out;
    }
  }

  // The graph (faiss's format) and then the row ids, to `f`.
  void write(FILE* f) const {
    faiss::write_index(graph_.get(), f);
    const std::uint64_t rows = row_ids_.size();
    if (std::fwrite(&rows, sizeof rows, 1, f) != 1 ||
        std::fwrite(row_ids_.data(), sizeof(std::int64_t), row_ids_.size(), f) != row_ids_.size())
      throw Error("index: cannot write the row ids");
  }
  // What write() wrote; nullptr when `f` does not hold it.
  static std::unique_ptr<HnswBackend> read(FILE* f) {
    std::unique_ptr<faiss::Index> read(faiss::read_index(f));
    auto* graph = dynamic_cast<faiss::IndexHNSWFlat*>(read.get());
    if (!graph) return nullptr;
    read.release();
    auto out =
        std::unique_ptr<HnswBackend>(new HnswBackend(std::unique_ptr<faiss::IndexHNSWFlat>(graph)));
    std::uint64_t rows = 0;
    if (std::fread(&rows, sizeof rows, 1, f) != 1 ||
        rows != static_cast<std::uint64_t>(out->graph_->ntotal))
      return nullptr;
    out->row_ids_.resize(rows);
    if (std::fread(out->row_ids_.data(), sizeof(std::int64_t), rows, f) != rows) return nullptr;
    for (std::size_t r = 0; r < rows; ++r) {
      if (out->row_ids_[r] < 0)
        ++out->tombstones_;
      else
        out->row_[out->row_ids_[r]] = r;
    }
    return out;
  }

 private:
  explicit HnswBackend(std::unique_ptr<faiss::IndexHNSWFlat> graph) : graph_(std::move(graph)) {
    graph_->hnsw.efSearch = kEfSearch;
    use_fast_storage();
  }
  // Moves the graph's vectors into a FastFlatIP (faiss writes and reads it as a flat index).
  void use_fast_storage() {
    auto* flat = dynamic_cast<faiss::IndexFlat*>(graph_->storage);
    if (!flat || dynamic_cast<FastFlatIP*>(flat)) return;
    auto fast = std::make_unique<FastFlatIP>(flat->d);
    fast->codes = std::move(flat->codes);
    fast->ntotal = flat->ntotal;
    if (graph_->own_fields) delete graph_->storage;
    graph_->storage = fast.release();
    graph_->own_fields = true;
  }

  // At 1M 512-d people: 512 finds 97.5 % of the exact top 10 in 8.6 ms, 768 99.3 % in 9.7 ms, 1024
  // 99.6 % in 12.2 ms (bench/bench_gallery.cpp; recall on stored faces as queries).
  static constexpr int kEfSearch = 768;
  std::unique_ptr<faiss::IndexHNSWFlat> graph_;
  std::vector<std::int64_t> row_ids_;  // row -> id, -1: tombstone
  std::unordered_map<std::int64_t, std::size_t> row_;
  std::size_t tombstones_ = 0;
};

}  // namespace

struct PersonIndex::Impl {
  std::size_t dim = 0;
  IndexKind kind = IndexKind::kExact;
  std::unique_ptr<Backend> backend;
};

PersonIndex::PersonIndex() : impl_(std::make_unique<Impl>()) {}
PersonIndex::PersonIndex(PersonIndex&&) noexcept = default;
PersonIndex& PersonIndex::operator=(PersonIndex&&) noexcept = default;
PersonIndex::~PersonIndex() = default;

void PersonIndex::build(std::span<const std::int64_t> ids, std::vector<float> vectors,
                        std::size_t dim, IndexKind kind, const std::atomic<bool>* stop) {
  const auto check_stop = [stop] {
    if (stop && stop->load()) throw IndexBuildStopped("index build stopped");
  };
  check_stop();
  if (dim == 0 || vectors.size() != ids.size() * dim)
    throw InvalidInput("index: " + std::to_string(vectors.size()) + " values are not " +
                       std::to_string(ids.size()) + " rows of " + std::to_string(dim));
  for (std::size_t r = 0; r < ids.size(); ++r) {
    const std::span<float> row(vectors.data() + r * dim, dim);
    const auto unit = unit_copy(row);
    std::copy(unit.begin(), unit.end(), row.begin());
  }
  auto impl = std::make_unique<Impl>();
  impl->dim = dim;
  impl->kind = resolve_index_kind(kind, ids.size());
  switch (impl->kind) {
    case IndexKind::kAuto:
    case IndexKind::kExact:
      impl->backend = std::make_unique<ExactBackend>(dim, ids, std::move(vectors));
      break;
    case IndexKind::kIvf:
      impl->backend = std::make_unique<IvfBackend>(dim, ids, vectors);
      break;
    case IndexKind::kHnsw: {
      auto hnsw = std::make_unique<HnswBackend>(dim);
      for (std::size_t start = 0; start < ids.size(); start += kBuildChunk) {
        check_stop();
        const auto n = std::min(kBuildChunk, ids.size() - start);
        hnsw->add_rows(ids.subspan(start, n), vectors.data() + start * dim);
      }
      impl->backend = std::move(hnsw);
      break;
    }
  }
  impl_ = std::move(impl);
}

void PersonIndex::upsert(std::int64_t id, std::span<const float> vector) {
  if (!impl_->backend) throw InvalidInput("index: upsert into an index that was never built");
  if (vector.size() != impl_->dim)
    throw InvalidInput("index: a vector of " + std::to_string(vector.size()) +
                       " values, the index holds " + std::to_string(impl_->dim) + "-d vectors");
  impl_->backend->upsert(id, unit_copy(vector).data());
}

void PersonIndex::remove(std::int64_t id) {
  if (impl_->backend) impl_->backend->remove(id);
}

std::size_t PersonIndex::size() const { return impl_->backend ? impl_->backend->size() : 0; }
std::size_t PersonIndex::dim() const { return impl_->dim; }
IndexKind PersonIndex::kind() const { return impl_->kind; }
bool PersonIndex::contains(std::int64_t id) const {
  return impl_->backend && impl_->backend->contains(id);
}
bool PersonIndex::wants_rebuild() const {
  return impl_->backend && impl_->backend->wants_rebuild();
}

namespace {
constexpr char kSavedMagic[8] = {'F', 'M', 'I', 'D', 'X', '1', '\n', '\0'};
}

void PersonIndex::save(const std::string& path, const std::string& tag) const {
  auto* hnsw = dynamic_cast<const HnswBackend*>(impl_->backend.get());
  if (!hnsw) throw InvalidInput("index: only an hnsw index is saved (the others build quickly)");
  // A name of this writer's own: processes that share a gallery may save at the same time.
  const std::string partial =
      path + ".partial-" + std::to_string(getpid()) + "-" + std::to_string(std::random_device{}());
  FILE* f = std::fopen(partial.c_str(), "wb");
  if (!f) throw Error(partial + ": cannot write the index (" + std::strerror(errno) + ")");
  try {
    const std::uint64_t tag_size = tag.size();
    if (std::fwrite(kSavedMagic, sizeof kSavedMagic, 1, f) != 1 ||
        std::fwrite(&tag_size, sizeof tag_size, 1, f) != 1 ||
        std::fwrite(tag.data(), 1, tag.size(), f) != tag.size())
      throw Error(partial + ": cannot write the index");
    hnsw->write(f);
    if (std::fflush(f) != 0 || fsync(fileno(f)) != 0)
      throw Error(partial + ": cannot write the index (" + std::strerror(errno) + ")");
  } catch (...) {
    std::fclose(f);
    std::filesystem::remove(partial);
    throw;
  }
  std::fclose(f);
  std::filesystem::rename(partial, path);  // a reader sees the old file or the whole new one
}

std::optional<std::string> PersonIndex::load(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::nullopt;
  std::optional<std::string> tag;
  try {
    char magic[sizeof kSavedMagic];
    std::uint64_t tag_size = 0;
    if (std::fread(magic, sizeof magic, 1, f) == 1 &&
        std::memcmp(magic, kSavedMagic, sizeof magic) == 0 &&
        std::fread(&tag_size, sizeof tag_size, 1, f) == 1 && tag_size < 4096) {
      std::string text(tag_size, '\0');
      if (std::fread(text.data(), 1, tag_size, f) == tag_size) {
        if (auto backend = HnswBackend::read(f)) {
          auto impl = std::make_unique<Impl>();
          impl->kind = IndexKind::kHnsw;
          impl->dim = static_cast<std::size_t>(backend->dim());
          impl->backend = std::move(backend);
          impl_ = std::move(impl);
          tag = std::move(text);
        }
      }
    }
  } catch (const std::exception&) {
    tag.reset();  // not an index of ours, or cut short: the caller builds one
  }
  std::fclose(f);
  return tag;
}

std::vector<Neighbour> PersonIndex::search(std::span<const float> query, int k) const {
  if (!impl_->backend || size() == 0 || k <= 0) return {};
  if (query.size() != impl_->dim)
    throw InvalidInput("index: a query of " + std::to_string(query.size()) +
                       " values, the index holds " + std::to_string(impl_->dim) + "-d vectors");
  return impl_->backend->search(unit_copy(query).data(), static_cast<std::size_t>(k));
}

}  // namespace facemag::gallery
