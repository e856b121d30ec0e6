#include "facemag/embed_files.hpp"

#include <algorithm>
#include <fstream>
#include <utility>

#include "facemag/error.hpp"
#include "facemag/io/image.hpp"

namespace facemag {

std::vector<std::vector<ClassScore>> top_classes(const Embedder& embedder,
                                                 const std::vector<cv::Mat>& faces, int k,
                                                 const std::vector<std::string>& labels) {
  const auto probs = torch::softmax(embedder.logits(embedder.preprocess(faces)), 1);
  const auto [values, indices] = probs.topk(std::min<std::int64_t>(k, probs.size(1)), 1);
  std::vector<std::vector<ClassScore>> out;
  for (std::int64_t i = 0; i < values.size(0); ++i) {
    std::vector<ClassScore> top;
    for (std::int64_t j = 0; j < values.size(1); ++j) {
      ClassScore score{indices[i][j].item<std::int64_t>(), values[i][j].item<float>(), {}};
      if (score.index < static_cast<std::int64_t>(labels.size()))
        score.name = labels[static_cast<std::size_t>(score.index)];
      top.push_back(std::move(score));
    }
    out.push_back(std::move(top));
  }
  return out;
}

std::vector<std::string> read_class_labels(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InvalidInput(path.string() + ": cannot open labels file");
  std::vector<std::string> labels;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    const auto comma = line.rfind(',');
    labels.push_back(comma == std::string::npos ? line : line.substr(comma + 1));
  }
  if (!labels.empty() && (labels[0] == "name" || labels[0] == "Name" || labels[0] == "label")) {
    labels.erase(labels.begin());
  }
  return labels;
}

// The decoded inputs of a chunk. Slots, in input order: faces ready at once (aligned from
// landmarks), or the index of a photo among those detected together. Aligned inputs are embedded
// together after them.
struct FileEmbedder::Chunk {
  struct Slot {
    std::string path;
    std::vector<FileFace> ready;
    std::optional<std::size_t> photo;
  };
  std::vector<Slot> slots;
  std::vector<cv::Mat> photos;
  std::vector<cv::Mat> aligned;
  std::vector<std::string> aligned_paths;
};

FileEmbedder::FileEmbedder(const Embedder& embedder, const MtcnnDetector* detector,
                           EmbedFilesOptions options)
    : embedder_(embedder), options_(std::move(options)) {
  if (options_.chunk == 0) throw InvalidInput("FileEmbedder: chunk must be at least 1");
  // The message names the CLI's option, as `facemag embed` has always printed it.
  if (options_.classify > 0 && embedder_.manifest().num_classes == 0) {
    throw InvalidInput(embedder_.manifest().name +
                       ": the checkpoint has no classifier layer (logits.*) for --classify");
  }
  if (detector) pipeline_.emplace(*detector, embedder_, options_.detection);
}

void FileEmbedder::embed(std::span<const std::filesystem::path> files,
                         const std::function<void(EmbeddedFiles chunk)>& on_chunk) const {
  for (std::size_t start = 0; start < files.size(); start += options_.chunk) {
    const std::size_t size = std::min(files.size() - start, options_.chunk);
    on_chunk(embed_chunk(files.subspan(start, size)));
  }
}

EmbeddedFiles FileEmbedder::embed(std::span<const std::filesystem::path> files) const {
  EmbeddedFiles all;
  embed(files, [&all](EmbeddedFiles chunk) {
    all.files += chunk.files;
    std::move(chunk.faces.begin(), chunk.faces.end(), std::back_inserter(all.faces));
    std::move(chunk.failures.begin(), chunk.failures.end(), std::back_inserter(all.failures));
    std::move(chunk.faceless.begin(), chunk.faceless.end(), std::back_inserter(all.faceless));
    all.detected += chunk.detected;
    all.several += chunk.several;
  });
  return all;
}

EmbeddedFiles FileEmbedder::embed_chunk(std::span<const std::filesystem::path> files) const {
  EmbeddedFiles result;
  result.files = files.size();
  Chunk chunk;
  for (const auto& file : files) {
    try {
      decode(file, chunk);
    } catch (const InvalidInput& e) {
      result.failures.push_back({file.string(), e.what()});
    }
  }
  detect(chunk, result);
  for (auto& slot : chunk.slots) {
    for (auto& face : slot.ready) result.faces.push_back(std::move(face));
  }
  auto embeddings = embedder_.embed(chunk.aligned);
  const auto classes =
      options_.classify > 0 && !chunk.aligned.empty()
          ? top_classes(embedder_, chunk.aligned, options_.classify, options_.labels)
          : std::vector<std::vector<ClassScore>>{};
  for (std::size_t i = 0; i < embeddings.size(); ++i) {
    result.faces.push_back({chunk.aligned_paths[i], std::nullopt, std::move(embeddings[i]),
                            classes.empty() ? std::vector<ClassScore>{} : classes[i]});
  }
  return result;
}

void FileEmbedder::decode(const std::filesystem::path& file, Chunk& chunk) const {
  const std::string path = file.string();
  cv::Mat image = io::read_image_bgr(file);
  const ModelManifest& manifest = embedder_.manifest();
  const bool aligned_size =
      image.rows == manifest.input_height && image.cols == manifest.input_width;
  if (options_.landmarks && !aligned_size) {
    Chunk::Slot slot{path, {}, std::nullopt};
    slot.ready.push_back(from_landmarks(file, image));
    chunk.slots.push_back(std::move(slot));
    return;
  }
  if (pipeline_) {
    chunk.slots.push_back({path, {}, chunk.photos.size()});
    chunk.photos.push_back(std::move(image));
    return;
  }
  if (!aligned_size) {
    throw InvalidInput(path + ": image is " + std::to_string(image.cols) + "x" +
                       std::to_string(image.rows) + ", an aligned face for " + manifest.name +
                       " is " + std::to_string(manifest.input_width) + "x" +
                       std::to_string(manifest.input_height) +
                       " (leave out --aligned to detect and align faces in photos)");
  }
  chunk.aligned.push_back(std::move(image));
  chunk.aligned_paths.push_back(path);
}

FileFace FileEmbedder::from_landmarks(const std::filesystem::path& file,
                                      const cv::Mat& image) const {
  const Landmarks5* marks = options_.landmarks->find(file);
  if (!marks) throw InvalidInput("no landmarks in " + options_.landmarks->source().string());
  const Detection face = detection_from_landmarks(*marks);
  const cv::Mat crop = crop_for_model(image, face, embedder_.manifest());
  FileFace out{file.string(), FoundFace{0, 1, face}, embedder_.embed({crop})[0], {}};
  if (options_.classify > 0)
    out.classes = top_classes(embedder_, {crop}, options_.classify, options_.labels)[0];
  return out;
}

void FileEmbedder::detect(Chunk& chunk, EmbeddedFiles& result) const {
  if (chunk.photos.empty()) return;
  const auto found = pipeline_->process_batch(chunk.photos, options_.keep);
  for (auto& slot : chunk.slots) {
    if (!slot.photo) continue;
    const auto& records = found[*slot.photo];
    if (records.empty()) {
      result.faceless.push_back(slot.path);
    } else {
      ++result.detected;
      result.several += records.front().faces_in_photo > 1;
    }
    for (const auto& r : records) {
      FileFace face{slot.path, FoundFace{r.index, r.faces_in_photo, r.detection}, r.embedding, {}};
      if (options_.classify > 0) {
        const cv::Mat crop = crop_for_model(chunk.photos[*slot.photo], r.detection, manifest());
        face.classes = top_classes(embedder_, {crop}, options_.classify, options_.labels)[0];
      }
      slot.ready.push_back(std::move(face));
    }
  }
}

}  // namespace facemag
