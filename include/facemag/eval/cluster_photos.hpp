// Which faces in a set of photos belong to the same person, and how sure that is (`facemag
// cluster`): every face of the photos (FacePipeline) grouped by average linkage (group_faces).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <vector>

#include "facemag/embedding_cache.hpp"
#include "facemag/eval/cluster.hpp"
#include "facemag/eval/knn_cluster.hpp"
#include "facemag/io/image.hpp"
#include "facemag/photo_chunks.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::eval {

// A face and the photo it is in.
struct PhotoFace {
  const io::InputFile* photo = nullptr;  // one of the files given
  FaceRecord record;
};

struct PhotoClusters {
  std::vector<PhotoFace> faces;   // every face found, in input order
  std::vector<FaceGroup> groups;  // PlacedFace::row indexes `faces`
  std::size_t photos_read = 0;    // photos decoded (unreadable ones went to on_unreadable)
  ClusterMethod method = ClusterMethod::kExact;
  // With an embedding cache: inputs whose faces came from it, and photos embedded now.
  std::size_t photos_cached = 0;
  std::size_t photos_embedded = 0;
};

// Finds every face of the photos and groups them: a face joins a group while its mean cosine
// similarity to the members is at least `threshold` (exact or graph average linkage, by
// `clustering`). on_progress gets the number of inputs after each chunk. InvalidInput "no faces
// found in the given photos" when there is none.
PhotoClusters cluster_photos(const FacePipeline& pipeline, const std::vector<io::InputFile>& files,
                             double threshold, const ClusterOptions& clustering,
                             const UnreadablePhotoSink& on_unreadable,
                             const std::function<void(std::size_t inputs)>& on_progress);

// The same through an embedding cache (faces_with_cache): photos the cache holds are not
// detected again, the others are embedded and appended a chunk at a time, then every face of
// `files` (not the cache's other photos) is grouped. A first run, and a run resumed after a kill,
// give the call above's result bit for bit; over a grown folder, the faces of photos embedded in
// an earlier run can differ from the call above's by float rounding (see faces_with_cache).
// Throws EmbeddingCacheError for a cache of another model. Time: detecting and embedding the
// photos not cached (a run over a cached folder skips it), reading the cache (linear in its
// photos and faces) and grouping, as above. Memory: the cache's index (linear in its photos and
// faces) beside what the call above holds.
PhotoClusters cluster_photos(const FacePipeline& pipeline, const std::vector<io::InputFile>& files,
                             double threshold, const ClusterOptions& clustering,
                             const UnreadablePhotoSink& on_unreadable,
                             const std::function<void(std::size_t inputs)>& on_progress,
                             EmbeddingCache& cache);

// One face's record: {"path", "face" (index in its photo), "group" (1-based), "similarity",
// "verdict", "score" (the detector's), and "next_group", "next_similarity" when there is one}.
nlohmann::json to_json(const PhotoFace& face, std::size_t group, const PlacedFace& placed);

// The manifest to embed photos with for clustering: the model's, with MobileFaceNet's mirrored
// face concatenated (its own evaluation protocol, and the embeddings its clustering threshold was
// calibrated on: see cluster_calibration).
ModelManifest clustering_manifest(ModelManifest manifest);

}  // namespace facemag::eval
