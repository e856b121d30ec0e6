// Photos in and out of a gallery, as every front end does it (`gallery enroll|search|reembed`,
// `eval identify`, Python): photos -> faces (FacePipeline) -> the decision rules of decide.hpp ->
// the store. The calls print nothing: they report each photo or face they leave out to
// `on_failure` as they find it, and hand their results to a callback once per chunk of photos, so
// that a front end writes as they come.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "facemag/embed/embedder.hpp"
#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/io/image.hpp"
#include "facemag/photo_chunks.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::gallery {

// A loaded detector and the FacePipeline over it and an embedder: what the calls below take, made
// once per command. Not copied or moved (the pipeline refers to the detector); `embedder` must
// outlive it.
class PhotoPipeline {
 public:
  PhotoPipeline(MtcnnDetector detector, const Embedder& embedder, MtcnnOptions options = {})
      : detector_(std::move(detector)), pipeline_(detector_, embedder, options) {}
  PhotoPipeline(const PhotoPipeline&) = delete;
  PhotoPipeline& operator=(const PhotoPipeline&) = delete;

  const FacePipeline& pipeline() const { return pipeline_; }

 private:
  MtcnnDetector detector_;
  FacePipeline pipeline_;
};

// A photo, or a face of one, left out; the call goes on with the others.
struct PhotoFailure {
  enum class Kind {
    kUnreadable,      // not decoded as an image (reembed: not read or not cropped)
    kNoFace,          // the detector found no face
    kNoPersonFolder,  // by folder, but the photo is not in a sub-folder
    kTooPoor,         // below the enrolment quality gate (enrolment_refusal)
    kSourceGone,      // reembed: the stored source photo no longer exists
    kSourceChanged,   // reembed: its SHA-256 differs from the one enrolled
  };
  Kind kind = Kind::kUnreadable;
  std::string path;    // the photo as given (kTooPoor: its absolute path, as enrolled)
  std::string reason;  // in words; may start with `path` (facemag's error messages do)
  std::optional<std::int64_t> face_id;  // reembed: the stored face
  std::string person;                   // reembed, kTooPoor: whose face
};
using FailureSink = std::function<void(const PhotoFailure&)>;

// The faces of one chunk of photos (up to 32, detected and embedded together).
using PhotoChunk = PhotoFacesChunk;

// Photos in chunks (for_each_photo_chunk, kUnreadable for a photo that does not decode), each
// photo without a face reported as kNoFace, then per_chunk, also for a chunk of no decoded photo.
// Returns the number of photos reported (unreadable or without a face).
std::size_t for_each_photo_faces(const FacePipeline& pipeline,
                                 const std::vector<io::InputFile>& files, KeepFaces keep,
                                 const FailureSink& on_failure,
                                 const std::function<void(const PhotoChunk&)>& per_chunk);

// ---- enrol ----

struct EnrolPhotosOptions {
  // Whom every photo shows; nullopt: each photo's first folder (io::InputFile::name) names its
  // person, and a photo named without one is kNoPersonFolder.
  std::optional<std::string> person;
  double min_quality = 0;  // replaces the model's quality gate when above 0 (decision_rules)
  bool force = false;      // enrol faces below the gate too
  KeepFaces keep = KeepFaces::kCenter;
};

struct EnrolledFace {
  std::string person;
  std::string source_path;              // absolute, normalised
  float quality = 0;                    // the face's magnitude
  std::optional<std::int64_t> face_id;  // nullopt: the face was already stored
};

// What one chunk committed (one transaction), in order; empty when it had nothing to enrol.
struct EnrolChunk {
  std::vector<EnrolledFace> faces;
  std::size_t inputs = 0;  // input files the chunk covered
};

struct EnrolPhotosResult {
  std::size_t failed_photos = 0;  // unreadable or without a face
  std::size_t refused = 0;        // faces below the gate (never with `force`)
  std::size_t added = 0;
  std::size_t duplicates = 0;  // already stored (same image SHA-256 and box)
};

// Enrols the faces of photos into `gallery`: each face the quality gate passes (or every one with
// `force`), one Gallery::enroll transaction per chunk; on_committed follows each chunk, after its
// commit. A photo not in a person folder is reported but not counted in the result. `pipeline`
// must run the gallery's model.
EnrolPhotosResult enrol_photos(Gallery& gallery, const FacePipeline& pipeline,
                               const std::vector<io::InputFile>& files,
                               const EnrolPhotosOptions& options, const FailureSink& on_failure,
                               const std::function<void(const EnrolChunk&)>& on_committed);

// ---- search ----

struct SearchPhotosOptions {
  int top_k = 5;
  double min_quality = 0;                       // as decision_rules takes them
  std::optional<double> same_person_threshold;  // nullopt: the model's
  KeepFaces keep = KeepFaces::kAll;
};

struct FaceAnswer {
  const io::InputFile* photo = nullptr;  // one of the `files` given
  FaceRecord face;
  Identification identification;
};

struct SearchChunk {
  std::vector<FaceAnswer> answers;  // every face of the chunk's photos, in order
  std::size_t inputs = 0;           // input files the chunk covered
};

// Identifies every face of the photos (identify() under the gallery's rules); on_answered gets
// each chunk's answers. Returns the number of photos reported (unreadable or without a face).
// The gallery may be changed by others meanwhile: each search sees the store's current state.
std::size_t search_photos(const Gallery& gallery, const FacePipeline& pipeline,
                          const std::vector<io::InputFile>& files,
                          const SearchPhotosOptions& options, const FailureSink& on_failure,
                          const std::function<void(const SearchChunk&)>& on_answered);

// ---- reembed ----

struct ReembedResult {
  std::size_t faces = 0;     // faces of the old gallery
  std::size_t left_out = 0;  // reported to on_failure, not in the new gallery
};

// A new gallery at `out`, bound to `model` (binding_of(embedder, ...)), from `old`'s stored
// source photos: each face re-aligned from its stored landmarks (no detection: the same face),
// embedded by `embedder`, enrolled with its person and enrolment time. `old` is only read. A
// file gallery is written as OUT.partial and renamed when complete (InvalidInput when `out`
// exists); a database one is written in place. A face whose photo is gone, changed or unreadable
// is left out (kSourceGone, kSourceChanged, kUnreadable). on_face follows each face.
ReembedResult reembed_gallery(
    const Gallery& old, const Embedder& embedder, const ModelBinding& model, const std::string& out,
    const FailureSink& on_failure,
    const std::function<void(std::size_t done, std::size_t total)>& on_face);

}  // namespace facemag::gallery
