#include "facemag/embedding_cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "facemag/detect/json.hpp"
#include "facemag/io/file.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/io/sha256.hpp"

namespace facemag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "facemag embedding cache";
constexpr int kVersion = 1;

std::string short_sha(const std::string& sha) {
  return sha.empty() ? std::string("none") : sha.substr(0, 12) + "...";
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

json identity_json(const EmbeddingCacheIdentity& id) {
  return {{"format", kFormat},
          {"version", kVersion},
          {"model",
           {{"name", id.model_name},
            {"architecture", id.architecture},
            {"embedding_size", id.embedding_size},
            {"precision", id.precision},
            {"weights_sha256", id.weights_sha256}}},
          {"detector",
           {{"sha256", id.detector_sha256},
            {"min_face_size", id.detection.min_face_size},
            {"thresholds", id.detection.thresholds},
            {"factor", id.detection.factor}}},
          {"faces", "all"},
          {"photo_key", "absolute path, size, modification time (ns)"}};
}

EmbeddingCacheIdentity identity_from_json(const std::string& text, const fs::path& file) {
  try {
    const auto j = json::parse(text);
    if (j.at("format").get<std::string>() != kFormat)
      throw EmbeddingCacheError(file.string() + ": not a facemag embedding cache (format '" +
                                j.at("format").get<std::string>() + "')");
    if (j.at("version").get<int>() != kVersion)
      throw VersionMismatch(file.string() + ": embedding cache version " +
                            std::to_string(j.at("version").get<int>()) + ", this facemag reads " +
                            std::to_string(kVersion));
    EmbeddingCacheIdentity id;
    const auto& m = j.at("model");
    id.model_name = m.at("name").get<std::string>();
    id.architecture = m.at("architecture").get<std::string>();
    id.embedding_size = m.at("embedding_size").get<int>();
    id.precision = m.at("precision").get<std::string>();
    id.weights_sha256 = m.at("weights_sha256").get<std::string>();
    const auto& d = j.at("detector");
    id.detector_sha256 = d.at("sha256").get<std::string>();
    id.detection.min_face_size = d.at("min_face_size").get<int>();
    id.detection.thresholds = d.at("thresholds").get<std::array<float, 3>>();
    id.detection.factor = d.at("factor").get<double>();
    return id;
  } catch (const json::exception& e) {
    throw EmbeddingCacheError(file.string() + ": not a readable embedding cache identity (" +
                              e.what() + ")");
  }
}

// A .npy (version 1.0, little-endian float32, C order) of `rows` x `cols` values, as bytes.
std::string npy_bytes(const std::vector<float>& values, std::size_t rows, std::size_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  return out;
}

// fsync of a folder: the renames into it reach the disk.
void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw Error(dir.string() + ": cannot sync the folder (" + reason + ")");
  }
  ::close(fd);
}

std::string chunk_stem(std::size_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "chunk-%08zu", index);
  return name;
}

// The chunk number of "chunk-NNNNNNNN<extension>", or nullopt for any other name.
std::optional<std::size_t> chunk_number(const std::string& name, const std::string& extension) {
  constexpr std::size_t kDigits = 8;
  if (name.size() != 6 + kDigits + extension.size() || name.rfind("chunk-", 0) != 0 ||
      name.substr(6 + kDigits) != extension)
    return std::nullopt;
  std::size_t n = 0;
  for (std::size_t i = 6; i < 6 + kDigits; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<std::size_t>(name[i] - '0');
  }
  return n;
}

struct CachedFace {
  std::size_t index = 0;
  std::size_t faces_in_photo = 0;
  Detection detection;
  float magnitude = 0;
  float quality = 0;  // Embedding::quality (caches written before it had one: the magnitude)
};

Detection detection_from_json(const json& j) {
  Detection d;
  const auto box = j.at("box").get<std::array<float, 4>>();
  d.box = {box[0], box[1], box[2], box[3]};
  d.score = j.at("score").get<float>();
  const auto& marks = j.at("landmarks");
  if (marks.size() != 5) throw std::out_of_range("landmarks: expected 5 points");
  for (int i = 0; i < 5; ++i) {
    const auto p = marks.at(static_cast<std::size_t>(i)).get<std::array<float, 2>>();
    d.landmarks[i] = {p[0], p[1]};
  }
  return d;
}

}  // namespace

std::string EmbeddingCacheIdentity::describe() const {
  return model_name + " (" + architecture + ", " + std::to_string(embedding_size) + "-d, " +
         precision + ", weights sha256 " + short_sha(weights_sha256) + "; MTCNN sha256 " +
         short_sha(detector_sha256) + ", min face " + std::to_string(detection.min_face_size) +
         " px, thresholds " + number(detection.thresholds[0]) + "/" +
         number(detection.thresholds[1]) + "/" + number(detection.thresholds[2]) + ", factor " +
         number(detection.factor) + ")";
}

bool EmbeddingCacheIdentity::operator==(const EmbeddingCacheIdentity& o) const {
  return model_name == o.model_name && architecture == o.architecture &&
         embedding_size == o.embedding_size && precision == o.precision &&
         weights_sha256 == o.weights_sha256 && detector_sha256 == o.detector_sha256 &&
         detection.min_face_size == o.detection.min_face_size &&
         detection.thresholds == o.detection.thresholds && detection.factor == o.detection.factor;
}

std::string detector_sha256(const fs::path& mtcnn_dir) {
  std::string hashes;
  for (const char* net : {"pnet.pt", "rnet.pt", "onet.pt"})
    hashes += io::sha256_file(mtcnn_dir / net);
  return io::sha256_hex(hashes);
}

EmbeddingCacheIdentity cache_identity_of(const Embedder& embedder, const MtcnnOptions& detection,
                                         const fs::path& mtcnn_dir) {
  const auto& m = embedder.manifest();
  EmbeddingCacheIdentity id;
  id.model_name = m.name;
  id.architecture = m.architecture;
  id.embedding_size = embedder.output_size();
  id.precision = precision_name(embedder.precision());
  id.weights_sha256 = m.sha256;
  id.detector_sha256 = detector_sha256(mtcnn_dir);
  id.detection = detection;
  return id;
}

std::optional<PhotoKey> PhotoKey::of(const fs::path& file) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) return std::nullopt;
  const auto time = fs::last_write_time(file, ec);
  if (ec) return std::nullopt;
  const auto absolute = fs::absolute(file, ec);
  if (ec) return std::nullopt;
  PhotoKey key;
  key.path = absolute.lexically_normal().string();
  key.size = size;
  key.mtime_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
  return key;
}

struct EmbeddingCache::State {
  fs::path dir;
  EmbeddingCacheIdentity identity;
  int lock_fd = -1;
  // Where each path's latest record is: its key, chunk, the first of its faces (an index into
  // `faces`) and its row in the chunk's .npy.
  struct Entry {
    PhotoKey key;
    std::size_t chunk = 0;
    std::size_t first_face = 0;
    std::size_t faces = 0;
    std::size_t row = 0;
  };
  std::unordered_map<std::string, Entry> entries;
  std::vector<CachedFace> faces;  // every face record read, in chunk order (stale ones too)
  std::size_t chunks = 0;         // chunks in the folder
  std::size_t next_chunk = 0;     // above every chunk's number (numbers may have gaps)
  std::size_t live_faces = 0;

  ~State() {
    if (lock_fd >= 0) ::close(lock_fd);  // releases the flock
  }

  fs::path file(std::size_t chunk, const char* extension) const {
    return dir / (chunk_stem(chunk) + extension);
  }

  const Entry* find(const PhotoKey& key) const {
    const auto it = entries.find(key.path);
    return it != entries.end() && it->second.key == key ? &it->second : nullptr;
  }

  void add(const PhotoKey& key, std::size_t chunk, std::vector<CachedFace> photo_faces,
           std::size_t row) {
    Entry e{key, chunk, faces.size(), photo_faces.size(), row};
    std::move(photo_faces.begin(), photo_faces.end(), std::back_inserter(faces));
    auto [it, inserted] = entries.try_emplace(key.path, e);
    if (!inserted) {
      live_faces -= it->second.faces;
      it->second = e;
    }
    live_faces += e.faces;
  }

  // Reads chunk `chunk` (its .jsonl, and checks its .npy against it) into the index.
  void load_chunk(std::size_t chunk) {
    const auto records_file = file(chunk, ".jsonl");
    const auto npy_file = file(chunk, ".npy");
    const auto damaged = [&](const fs::path& where, const std::string& what) {
      return EmbeddingCacheError(
          where.string() + ": " + what + "; this chunk of the cache is damaged: delete " +
          (dir / (chunk_stem(chunk) + ".*")).string() + " and its photos are embedded again");
    };
    std::istringstream lines(io::read_file_bytes(records_file));
    std::size_t row = 0, line_number = 0;
    std::vector<std::pair<PhotoKey, std::vector<CachedFace>>> photos;
    for (std::string line; std::getline(lines, line);) {
      ++line_number;
      if (line.empty()) continue;
      try {
        const auto j = json::parse(line);
        PhotoKey key{j.at("path").get<std::string>(), j.at("size").get<std::uintmax_t>(),
                     j.at("mtime_ns").get<std::int64_t>()};
        std::vector<CachedFace> photo_faces;
        for (const auto& f : j.at("faces")) {
          photo_faces.push_back({f.at("index").get<std::size_t>(),
                                 f.at("faces_in_photo").get<std::size_t>(), detection_from_json(f),
                                 f.at("magnitude").get<float>(),
                                 f.value("quality", f.at("magnitude").get<float>())});
        }
        photos.emplace_back(std::move(key), std::move(photo_faces));
      } catch (const std::exception& e) {
        throw damaged(records_file, "line " + std::to_string(line_number) +
                                        " is not a photo record (" + e.what() + ")");
      }
    }
    std::size_t face_rows = 0;
    for (const auto& p : photos) face_rows += p.second.size();
    torch::Tensor rows;
    try {
      rows = io::read_npy_bytes(io::read_file_bytes(npy_file), npy_file.string());
    } catch (const Error& e) {
      throw damaged(npy_file, std::string("unreadable (") + e.what() + ")");
    }
    const auto dim = static_cast<std::int64_t>(identity.embedding_size);
    if (rows.scalar_type() != torch::kFloat32 || rows.dim() != 2 ||
        rows.size(0) != static_cast<std::int64_t>(face_rows) || rows.size(1) != dim) {
      std::string shape;
      for (std::int64_t i = 0; i < rows.dim(); ++i)
        shape += (i ? " x " : "") + std::to_string(rows.size(i));
      throw damaged(npy_file, "expected float32 " + std::to_string(face_rows) + " x " +
                                  std::to_string(dim) + " (the faces of " +
                                  records_file.filename().string() + "), found " +
                                  std::string(c10::toString(rows.scalar_type())) + " " + shape);
    }
    for (auto& [key, photo_faces] : photos) {
      const auto n = photo_faces.size();
      add(key, chunk, std::move(photo_faces), row);
      row += n;
    }
  }
};

EmbeddingCache::EmbeddingCache(std::unique_ptr<State> state) : state_(std::move(state)) {}
EmbeddingCache::EmbeddingCache(EmbeddingCache&&) noexcept = default;
EmbeddingCache& EmbeddingCache::operator=(EmbeddingCache&&) noexcept = default;
EmbeddingCache::~EmbeddingCache() = default;

EmbeddingCache EmbeddingCache::open(const fs::path& dir, const EmbeddingCacheIdentity& identity) {
  auto state = std::make_unique<State>();
  state->dir = dir;
  state->identity = identity;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir))
    throw EmbeddingCacheError(dir.string() + ": cannot create the cache folder" +
                              (ec ? " (" + ec.message() + ")" : std::string()));
  const auto lock = dir / "lock";
  state->lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (state->lock_fd < 0)
    throw EmbeddingCacheError(lock.string() + ": cannot open (" + std::strerror(errno) + ")");
  if (::flock(state->lock_fd, LOCK_EX | LOCK_NB) != 0)
    throw EmbeddingCacheError(dir.string() + ": the cache is in use by another facemag process (" +
                              lock.string() + " is locked)");

  // What is in the folder: chunk records, .npy files, and temporary files of a killed writer
  // (removable: the lock says no writer is alive).
  std::vector<std::size_t> chunks;
  bool any_npy = false;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.find(".part-") != std::string::npos) {
      fs::remove(entry.path(), ec);
    } else if (const auto n = chunk_number(name, ".jsonl")) {
      chunks.push_back(*n);
    } else if (chunk_number(name, ".npy")) {
      any_npy = true;
    }
  }
  std::sort(chunks.begin(), chunks.end());

  const auto identity_file = dir / "cache.json";
  if (!fs::exists(identity_file)) {
    if (!chunks.empty() || any_npy)
      throw EmbeddingCacheError(identity_file.string() +
                                ": missing, but the folder holds chunk files: not a cache "
                                "facemag can check (use an empty folder, or restore cache.json)");
    io::write_file_atomic(identity_file, identity_json(identity).dump(2) + "\n");
  } else {
    const auto cached = identity_from_json(io::read_file_bytes(identity_file), identity_file);
    if (!(cached == identity))
      throw EmbeddingCacheError(dir.string() + ": this cache holds embeddings of " +
                                cached.describe() + ", not of " + identity.describe() +
                                " (use that model and detector, or another --cache folder)");
  }
  // In order, so that a path's latest record wins. A chunk deleted by hand leaves a gap: its
  // photos are embedded again.
  for (const auto chunk : chunks) state->load_chunk(chunk);
  state->chunks = chunks.size();
  // An .npy beyond the last chunk is the half of a chunk a kill interrupted: the next append
  // overwrites it.
  state->next_chunk = chunks.empty() ? 0 : chunks.back() + 1;
  return EmbeddingCache(std::move(state));
}

bool EmbeddingCache::contains(const PhotoKey& key) const { return state_->find(key) != nullptr; }

std::vector<std::optional<std::vector<FaceRecord>>> EmbeddingCache::faces_of(
    const std::vector<PhotoKey>& keys) const {
  std::vector<std::optional<std::vector<FaceRecord>>> out(keys.size());
  // Chunk by chunk: each .npy read once, whatever the order of the keys.
  std::map<std::size_t, std::vector<std::size_t>> by_chunk;
  for (std::size_t k = 0; k < keys.size(); ++k) {
    if (const auto* e = state_->find(keys[k])) by_chunk[e->chunk].push_back(k);
  }
  const auto dim = static_cast<std::size_t>(state_->identity.embedding_size);
  for (const auto& [chunk, wanted] : by_chunk) {
    const auto npy_file = state_->file(chunk, ".npy");
    const auto rows = io::read_npy_bytes(io::read_file_bytes(npy_file), npy_file.string());
    if (rows.scalar_type() != torch::kFloat32 || rows.dim() != 2 ||
        rows.size(1) != static_cast<std::int64_t>(dim))
      throw EmbeddingCacheError(npy_file.string() + ": changed since the cache was opened");
    const float* data = rows.data_ptr<float>();
    for (const auto k : wanted) {
      const auto& e = *state_->find(keys[k]);
      if (static_cast<std::int64_t>(e.row + e.faces) > rows.size(0))
        throw EmbeddingCacheError(npy_file.string() + ": changed since the cache was opened");
      std::vector<FaceRecord> faces;
      for (std::size_t f = 0; f < e.faces; ++f) {
        const auto& c = state_->faces[e.first_face + f];
        FaceRecord r;
        r.index = c.index;
        r.faces_in_photo = c.faces_in_photo;
        r.detection = c.detection;
        r.embedding.magnitude = c.magnitude;
        r.embedding.quality = c.quality;
        const float* row = data + (e.row + f) * dim;
        r.embedding.raw.assign(row, row + dim);
        faces.push_back(std::move(r));
      }
      out[k] = std::move(faces);
    }
  }
  return out;
}

void EmbeddingCache::append(const std::vector<PhotoKey>& photos,
                            const std::vector<std::vector<FaceRecord>>& faces) {
  if (photos.size() != faces.size())
    throw InvalidInput("EmbeddingCache::append: " + std::to_string(photos.size()) +
                       " photos but faces for " + std::to_string(faces.size()));
  const auto dim = static_cast<std::size_t>(state_->identity.embedding_size);
  std::vector<float> values;
  std::string records;
  std::size_t rows = 0;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    json faces_json = json::array();
    for (const auto& r : faces[p]) {
      if (r.embedding.raw.size() != dim)
        throw InvalidInput(state_->dir.string() + ": an embedding of " +
                           std::to_string(r.embedding.raw.size()) + " values for a cache of " +
                           std::to_string(dim) + "-d embeddings (" + photos[p].path + ")");
      values.insert(values.end(), r.embedding.raw.begin(), r.embedding.raw.end());
      auto f = to_json(r.detection);
      f["index"] = r.index;
      f["faces_in_photo"] = r.faces_in_photo;
      f["magnitude"] = r.embedding.magnitude;
      f["quality"] = r.embedding.quality;
      faces_json.push_back(std::move(f));
      ++rows;
    }
    const json record{{"path", photos[p].path},
                      {"size", photos[p].size},
                      {"mtime_ns", photos[p].mtime_ns},
                      {"faces", std::move(faces_json)}};
    records += record.dump() + "\n";
  }
  const std::size_t chunk = state_->next_chunk;
  // The .npy first, made durable with its folder entry before the .jsonl is written: the chunk
  // exists once its .jsonl does, even after a power cut.
  io::write_file_atomic(state_->file(chunk, ".npy"), npy_bytes(values, rows, dim));
  sync_folder(state_->dir);
  io::write_file_atomic(state_->file(chunk, ".jsonl"), records);
  state_->next_chunk = chunk + 1;
  ++state_->chunks;
  std::size_t row = 0;
  for (std::size_t p = 0; p < photos.size(); ++p) {
    std::vector<CachedFace> photo_faces;
    for (const auto& r : faces[p])
      photo_faces.push_back(
          {r.index, r.faces_in_photo, r.detection, r.embedding.magnitude, r.embedding.quality});
    state_->add(photos[p], chunk, std::move(photo_faces), row);
    row += faces[p].size();
  }
}

const fs::path& EmbeddingCache::dir() const { return state_->dir; }
const EmbeddingCacheIdentity& EmbeddingCache::identity() const { return state_->identity; }
std::size_t EmbeddingCache::photos() const { return state_->entries.size(); }
std::size_t EmbeddingCache::faces() const { return state_->live_faces; }
std::size_t EmbeddingCache::chunks() const { return state_->chunks; }

CachedFacesRun faces_with_cache(
    const FacePipeline& pipeline, const std::vector<io::InputFile>& files, EmbeddingCache& cache,
    const UnreadablePhotoSink& on_unreadable,
    const std::function<void(std::size_t inputs)>& on_progress,
    const std::function<void(const io::InputFile& photo, std::vector<FaceRecord> faces)>&
        per_photo) {
  const auto& id = cache.identity();
  const auto& m = pipeline.manifest();
  if (m.name != id.model_name || m.architecture != id.architecture || m.sha256 != id.weights_sha256)
    throw EmbeddingCacheError(cache.dir().string() + ": this cache holds embeddings of " +
                              id.describe() + ", not of " + m.name + " (" + m.architecture +
                              ", weights sha256 " + short_sha(m.sha256) + ")");

  CachedFacesRun run;
  // The inputs to embed: one per key not cached (a photo named twice is embedded once), and every
  // input without a key (it fails to decode, or is embedded without being cached).
  std::vector<std::optional<PhotoKey>> keys(files.size());
  std::vector<std::size_t> todo;
  std::unordered_set<std::string> queued;
  for (std::size_t i = 0; i < files.size(); ++i) {
    keys[i] = PhotoKey::of(files[i].path);
    if (keys[i] && cache.contains(*keys[i])) {
      ++run.cached;
    } else if (!keys[i] || queued.insert(keys[i]->path).second) {
      todo.push_back(i);
    }
  }
  if (run.cached > 0) on_progress(run.cached);

  // Batches (each one for_each_photo_chunk chunk, appended to the cache when done): the inputs to
  // embed grouped by the chunk of kPhotosPerChunk inputs a run without a cache puts them in,
  // consecutive groups sharing a batch while it holds at most kPhotosPerChunk inputs. A resumed
  // run's groups are the chunks the killed run had not finished, whole, so every photo is
  // detected beside the same photos as in an uninterrupted run (MTCNN's landmarks depend in the
  // last bits on the other photos of a batch). Photos that do not decode take no part in a batch.
  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t t = 0; t < todo.size();) {
    std::size_t group_end = t;
    while (group_end < todo.size() &&
           todo[group_end] / kPhotosPerChunk == todo[t] / kPhotosPerChunk)
      ++group_end;
    if (batches.empty() || batches.back().size() + (group_end - t) > kPhotosPerChunk)
      batches.emplace_back();
    batches.back().insert(batches.back().end(), todo.begin() + static_cast<std::ptrdiff_t>(t),
                          todo.begin() + static_cast<std::ptrdiff_t>(group_end));
    t = group_end;
  }

  std::unordered_map<std::size_t, std::vector<FaceRecord>> uncacheable;  // by input index
  for (const auto& batch : batches) {
    std::vector<io::InputFile> slice;
    for (const auto i : batch) slice.push_back(files[i]);
    std::vector<PhotoKey> commit_keys;
    std::vector<std::vector<FaceRecord>> commit_faces;
    const auto unreadable = for_each_photo_chunk(
        pipeline, slice, KeepFaces::kAll, on_unreadable, [&](PhotoFacesChunk& chunk) {
          for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
            const auto i = batch[static_cast<std::size_t>(chunk.photos[k] - slice.data())];
            if (keys[i]) {
              commit_keys.push_back(*keys[i]);
              commit_faces.push_back(std::move(chunk.faces[k]));
            } else {
              uncacheable[i] = std::move(chunk.faces[k]);
            }
          }
          on_progress(chunk.inputs);
        });
    run.embedded += batch.size() - unreadable;
    if (!commit_keys.empty()) cache.append(commit_keys, commit_faces);
  }

  // Every readable input in input order, its faces from the cache (read chunk by chunk).
  std::vector<PhotoKey> lookup;
  std::vector<std::size_t> lookup_of(files.size(), 0);
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (!keys[i]) continue;
    lookup_of[i] = lookup.size();
    lookup.push_back(*keys[i]);
  }
  auto cached = cache.faces_of(lookup);
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::optional<std::vector<FaceRecord>>* faces = nullptr;
    std::optional<std::vector<FaceRecord>> own;
    if (keys[i]) {
      faces = &cached[lookup_of[i]];
    } else if (const auto it = uncacheable.find(i); it != uncacheable.end()) {
      own = std::move(it->second);
      faces = &own;
    }
    if (!faces || !*faces) {
      ++run.unreadable;  // did not decode (reported above)
      continue;
    }
    per_photo(files[i], std::move(**faces));  // a photo named twice has a copy per mention
  }
  return run;
}

}  // namespace facemag
