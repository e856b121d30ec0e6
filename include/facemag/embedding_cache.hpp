// An embedding cache: the faces of photos (every face, KeepFaces::kAll: box, score, landmarks,
// raw embedding) kept in a folder, so that a long run over a photo library resumes where it was
// killed, and a run over a grown library embeds only the new photos (`facemag cluster --cache`).
//
// Layout of the folder (every file written whole: a temporary file, fsync, rename):
//   cache.json            what the embeddings depend on (EmbeddingCacheIdentity), written once
//   chunk-NNNNNNNN.npy    float32, F x D: the raw embeddings of the chunk's F faces, in order
//   chunk-NNNNNNNN.jsonl  one line per photo of the chunk, in order: {"path", "size", "mtime_ns",
//                         "faces": [{"index", "faces_in_photo", "box", "score", "landmarks",
//                         "magnitude"}, ...]}; a photo without a face has "faces": []. A face's
//                         row in the .npy is its position among the chunk's faces.
//   lock                  flock()ed while a process holds the cache open
// A chunk counts once its .jsonl exists (written after its .npy): a process killed at any
// moment leaves whole chunks, at most an .npy without its .jsonl (ignored, then overwritten)
// and a temporary *.part-<pid> file (removed at the next open).
//
// A photo is known by its key: its absolute path (lexically normal, symbolic links not resolved),
// size in bytes and modification time in nanoseconds. A photo whose size or time changed is
// embedded again (the older record stays in its chunk, unused); a photo moved or renamed is
// embedded again. (A content hash would survive a move, but it reads every byte of every photo on
// each run: at 100k photos of 3 MB, 300 GB read to find the few new ones.)
//
// Cost, for a cache of P photos and F faces of D values in C chunk files: open() reads every
// .jsonl and .npy once (O(P + F D) time, the .npy bytes only checked, not kept) and keeps an
// index of O(P + F) memory (~80 bytes a face, ~150 bytes plus its path a photo); faces_of() reads
// the chunks that hold the photos asked for, one at a time, so its memory is that of its result,
// O(F' D) for the F' faces returned. append() writes two files and fsyncs them: O(faces D).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facemag/detect/mtcnn.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/photo_chunks.hpp"
#include "facemag/pipeline.hpp"

namespace facemag {

// A cache that cannot be used as it is: made for another model or detector, damaged, or held by
// another process. The message names the file, what was expected and what was found.
class EmbeddingCacheError : public Error {
 public:
  using Error::Error;
};

// What a cache's embeddings depend on; a cache opened with another identity is refused.
struct EmbeddingCacheIdentity {
  std::string model_name;    // manifest name, e.g. "mobilefacenet-casia"
  std::string architecture;  // e.g. "mobilefacenet"
  int embedding_size = 0;    // values per embedding (Embedder::output_size(): doubled with flip)
  std::string precision;     // precision_name(): "fp32", "bf16", ...
  std::string weights_sha256;
  std::string detector_sha256;  // of MTCNN's pnet.pt, rnet.pt, onet.pt (detector_sha256())
  MtcnnOptions detection;

  // "mobilefacenet-casia (mobilefacenet, 256-d, fp32, weights sha256 0123456789ab...; MTCNN
  // sha256 0123456789ab..., min face 20 px, thresholds 0.6/0.7/0.7, factor 0.709)".
  std::string describe() const;
  bool operator==(const EmbeddingCacheIdentity&) const;
};

// One SHA-256 for MTCNN's weights: of the hex SHA-256 of pnet.pt, rnet.pt and onet.pt in
// `mtcnn_dir`, concatenated in that order (2 MB read). InvalidInput naming a missing file.
std::string detector_sha256(const std::filesystem::path& mtcnn_dir);

// The identity of the faces a FacePipeline of this embedder and a detector loaded from
// `mtcnn_dir` with `detection` finds. The weights' SHA-256 is the embedder's manifest's (set by
// Embedder::load when it verifies, the default; empty for formula weights).
EmbeddingCacheIdentity cache_identity_of(const Embedder& embedder, const MtcnnOptions& detection,
                                         const std::filesystem::path& mtcnn_dir);

// A photo as the cache knows it (see the top of this file).
struct PhotoKey {
  std::string path;  // absolute, lexically normal
  std::uintmax_t size = 0;
  std::int64_t mtime_ns = 0;

  // The key of the file as it is now; nullopt when it cannot be stat()ed (then it is not cached).
  static std::optional<PhotoKey> of(const std::filesystem::path& file);
  bool operator==(const PhotoKey&) const = default;
};

class EmbeddingCache {
 public:
  // Opens the cache in `dir`, creating the folder and its cache.json when absent, and holds it
  // (flock on DIR/lock) until destroyed. Throws EmbeddingCacheError: a cache of another identity
  // (naming both), one held by another process, a folder with chunks but no cache.json, a
  // damaged chunk (naming the file, the expected and the found value; deleting that chunk's two
  // files makes its photos embedded again). A damaged chunk cannot come from a kill (see the
  // top of this file), only from outside: disk trouble or an edit, which is reported rather than
  // repaired silently.
  static EmbeddingCache open(const std::filesystem::path& dir,
                             const EmbeddingCacheIdentity& identity);

  EmbeddingCache(EmbeddingCache&&) noexcept;
  EmbeddingCache& operator=(EmbeddingCache&&) noexcept;
  ~EmbeddingCache();

  // True when the cache holds the photo with this key (a photo without a face included).
  bool contains(const PhotoKey& key) const;
  // The cached faces of each key (FaceRecord as FacePipeline::process gives them, KeepFaces::kAll,
  // the embedding bit for bit as it was computed); nullopt for a key not in the cache.
  std::vector<std::optional<std::vector<FaceRecord>>> faces_of(
      const std::vector<PhotoKey>& keys) const;

  // Appends one chunk: photos[i] with faces[i] (every face of the photo, as process_batch gave
  // them; empty for a photo without a face). Its .npy then its .jsonl are written whole, so the
  // chunk is in the cache entirely or not at all. InvalidInput for an embedding of another size
  // than the identity's, or sizes of `photos` and `faces` that differ.
  void append(const std::vector<PhotoKey>& photos,
              const std::vector<std::vector<FaceRecord>>& faces);

  const std::filesystem::path& dir() const;
  const EmbeddingCacheIdentity& identity() const;
  std::size_t photos() const;  // photo keys held (the latest record of a path counts)
  std::size_t faces() const;   // faces of those photos
  std::size_t chunks() const;  // chunks (.jsonl and .npy pairs) in the folder

  struct State;

 private:
  explicit EmbeddingCache(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// What faces_with_cache did.
struct CachedFacesRun {
  std::size_t cached = 0;      // photos (inputs) whose faces came from the cache as it was opened
  std::size_t embedded = 0;    // photos detected and embedded now, and appended
  std::size_t unreadable = 0;  // inputs that did not decode (reported, never cached)
};

// Every face (KeepFaces::kAll) of each input photo, in input order: from the cache when it holds
// the photo's key, else detected and embedded (for_each_photo_chunk) and appended to the cache
// chunk by chunk (kPhotosPerChunk photos at most), so that a kill loses at most one chunk's work.
// A photo named twice is embedded once. on_unreadable gets each photo that does not decode (not
// cached: it is tried again next time); on_progress the number of inputs done, first the cached
// ones at once, then per chunk; per_photo each readable photo with its faces, in input order,
// once every photo is embedded and appended. Throws EmbeddingCacheError when the cache's model is
// not the pipeline's.
//
// The photos to embed are chunked as a run without a cache chunks them (grouped by the chunk of
// kPhotosPerChunk inputs they fall in): a run resumed after a kill detects every photo beside the
// same photos as an uninterrupted run, so its faces are those of for_each_photo_chunk over all the
// files, bit for bit. Photos new to a cache are detected beside other new photos only; MTCNN's
// landmarks differ in the last bits with the other photos of a chunk (<= ~3e-5 px), so their
// embeddings can differ from a run without a cache by float rounding (~1e-4 in a cosine).
//
// Time: embedding the photos not cached, plus O(P + F D) to read the cache. Memory: the cache's
// index, plus the faces handed to per_photo (the cache's .npy files read one at a time).
CachedFacesRun faces_with_cache(
    const FacePipeline& pipeline, const std::vector<io::InputFile>& files, EmbeddingCache& cache,
    const UnreadablePhotoSink& on_unreadable,
    const std::function<void(std::size_t inputs)>& on_progress,
    const std::function<void(const io::InputFile& photo, std::vector<FaceRecord> faces)>&
        per_photo);

}  // namespace facemag
