#include "facemag/eval/cluster_photos.hpp"

#include <torch/torch.h>

#include "facemag/error.hpp"

namespace facemag::eval {
namespace {

// Groups out.faces (input order) by average linkage.
void group(PhotoClusters& out, double threshold, const ClusterOptions& clustering) {
  if (out.faces.empty()) throw InvalidInput("no faces found in the given photos");
  const auto dim = static_cast<std::int64_t>(out.faces.front().record.embedding.raw.size());
  auto embeddings = torch::empty({static_cast<std::int64_t>(out.faces.size()), dim});
  float* row = embeddings.data_ptr<float>();
  for (const auto& f : out.faces)
    row = std::copy(f.record.embedding.raw.begin(), f.record.embedding.raw.end(), row);
  auto grouped = group_faces(embeddings, threshold, clustering);
  out.groups = std::move(grouped.groups);
  out.method = grouped.method;
}

}  // namespace

PhotoClusters cluster_photos(const FacePipeline& pipeline, const std::vector<io::InputFile>& files,
                             double threshold, const ClusterOptions& clustering,
                             const UnreadablePhotoSink& on_unreadable,
                             const std::function<void(std::size_t inputs)>& on_progress) {
  PhotoClusters out;
  const auto unreadable = for_each_photo_chunk(
      pipeline, files, KeepFaces::kAll, on_unreadable, [&](PhotoFacesChunk& chunk) {
        for (std::size_t k = 0; k < chunk.photos.size(); ++k) {
          for (auto& r : chunk.faces[k]) out.faces.push_back({chunk.photos[k], std::move(r)});
        }
        on_progress(chunk.inputs);
      });
  out.photos_read = files.size() - unreadable;
  group(out, threshold, clustering);
  return out;
}

PhotoClusters cluster_photos(const FacePipeline& pipeline, const std::vector<io::InputFile>& files,
                             double threshold, const ClusterOptions& clustering,
                             const UnreadablePhotoSink& on_unreadable,
                             const std::function<void(std::size_t inputs)>& on_progress,
                             EmbeddingCache& cache) {
  PhotoClusters out;
  const auto run = faces_with_cache(pipeline, files, cache, on_unreadable, on_progress,
                                    [&](const io::InputFile& photo, std::vector<FaceRecord> faces) {
                                      for (auto& r : faces)
                                        out.faces.push_back({&photo, std::move(r)});
                                    });
  out.photos_read = files.size() - run.unreadable;
  out.photos_cached = run.cached;
  out.photos_embedded = run.embedded;
  group(out, threshold, clustering);
  return out;
}

nlohmann::json to_json(const PhotoFace& face, std::size_t group, const PlacedFace& placed) {
  nlohmann::json rec{{"path", face.photo->path.string()},
                     {"face", face.record.index},
                     {"group", group + 1},
                     {"similarity", placed.similarity},
                     {"verdict", verdict_name(placed.verdict)},
                     {"score", face.record.detection.score}};
  if (placed.next_group >= 0) {
    rec["next_group"] = placed.next_group + 1;
    rec["next_similarity"] = placed.next_similarity;
  }
  return rec;
}

ModelManifest clustering_manifest(ModelManifest manifest) {
  if (manifest.architecture == "mobilefacenet") manifest.concat_flipped = true;
  return manifest;
}

}  // namespace facemag::eval
