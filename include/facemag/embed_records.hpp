// Embedded faces of files (FileEmbedder) as records: the JSON record of each face, and the
// N x D embedding matrix with its row index. What `facemag embed` and `facemag quality` write,
// and what another front end writes to give the same files.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "facemag/embed_files.hpp"

namespace facemag {

// One face's record: "path"; for a detected face its "face" index, "box" and detector "score";
// the "model" name; "quality" (the face's quality, face_quality.hpp), "magnitude" when the
// quality is not the magnitude, and "quality_source" (what the quality measures); the raw
// "embedding" when `with_vector`; and its top "classes" ({"class", "probability", "name" when
// known}) when it has any.
nlohmann::json to_json(const FileFace& face, const std::string& model, bool with_vector,
                       const std::string& quality_source = "magnitude");

// The row index written beside an embedding matrix: the .npy path with the extension .jsonl.
std::filesystem::path npy_row_index_path(const std::filesystem::path& npy);

struct FaceRecordOptions {
  std::string model;                         // the "model" of every record
  bool with_vector = true;                   // records carry the raw embedding
  bool sort_by_quality = false;              // hold records until finish(), then best quality first
  std::filesystem::path npy;                 // also write the float32 matrix here (empty: none)
  std::string quality_source = "magnitude";  // quality_source() of the model
};

// Writes records as faces come (JSON Lines on `out`, which must outlive the writer), or sorted at
// the end; with options.npy the rows of the matrix, in the order faces came, and a row index
// ({"row", "path", "face" when detected, "quality"} per line) beside it.
class FaceRecordWriter {
 public:
  // `dims`: the embedding size. InvalidInput when the row index cannot be opened.
  FaceRecordWriter(std::ostream& out, std::size_t dims, FaceRecordOptions options);
  void write(FileFace face);
  // Writes the sorted records (sort_by_quality) and the matrix (npy).
  void finish();

 private:
  std::ostream& out_;
  std::size_t dims_;
  FaceRecordOptions options_;
  std::unique_ptr<std::ofstream> index_;
  std::vector<FileFace> kept_;  // sort_by_quality
  std::vector<float> matrix_;
};

}  // namespace facemag
