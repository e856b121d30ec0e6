#include "facemag/embed_records.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "facemag/detect/json.hpp"
#include "facemag/error.hpp"
#include "facemag/io/npy.hpp"

namespace facemag {

nlohmann::json to_json(const FileFace& face, const std::string& model, bool with_vector,
                       const std::string& quality_source) {
  nlohmann::json j{{"path", face.path}};
  if (face.found) {
    j["face"] = face.found->index;
    j["box"] = to_json(face.found->detection.box);
    j["score"] = face.found->detection.score;
  }
  j["model"] = model;
  j["quality"] = face.embedding.quality;
  if (quality_source != "magnitude") j["magnitude"] = face.embedding.magnitude;
  j["quality_source"] = quality_source;
  if (with_vector) j["embedding"] = face.embedding.raw;
  if (!face.classes.empty()) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& c : face.classes) {
      nlohmann::json entry{{"class", c.index}, {"probability", c.probability}};
      if (c.name) entry["name"] = *c.name;
      top.push_back(entry);
    }
    j["classes"] = top;
  }
  return j;
}

std::filesystem::path npy_row_index_path(const std::filesystem::path& npy) {
  return std::filesystem::path(npy).replace_extension(".jsonl");
}

FaceRecordWriter::FaceRecordWriter(std::ostream& out, std::size_t dims, FaceRecordOptions options)
    : out_(out), dims_(dims), options_(std::move(options)) {
  if (options_.npy.empty()) return;
  const auto index_path = npy_row_index_path(options_.npy);
  index_ = std::make_unique<std::ofstream>(index_path);
  if (!*index_) throw InvalidInput(index_path.string() + ": cannot open for writing");
}

void FaceRecordWriter::write(FileFace face) {
  if (index_) {
    nlohmann::json row{{"row", matrix_.size() / dims_}, {"path", face.path}};
    if (face.found) row["face"] = face.found->index;
    row["quality"] = face.embedding.quality;
    *index_ << row << "\n";
    matrix_.insert(matrix_.end(), face.embedding.raw.begin(), face.embedding.raw.end());
  }
  if (options_.sort_by_quality) {
    kept_.push_back(std::move(face));
  } else {
    out_ << to_json(face, options_.model, options_.with_vector, options_.quality_source) << "\n";
  }
}

void FaceRecordWriter::finish() {
  if (options_.sort_by_quality) {
    // Best quality first, as MagFace's quality listings.
    std::stable_sort(kept_.begin(), kept_.end(), [](const FileFace& a, const FileFace& b) {
      return a.embedding.quality > b.embedding.quality;
    });
    for (const auto& f : kept_)
      out_ << to_json(f, options_.model, options_.with_vector, options_.quality_source) << "\n";
  }
  if (!options_.npy.empty()) {
    const auto rows = static_cast<std::int64_t>(matrix_.size() / dims_);
    io::write_npy(options_.npy,
                  torch::from_blob(matrix_.data(), {rows, static_cast<std::int64_t>(dims_)},
                                   torch::kFloat32));
  }
}

}  // namespace facemag
