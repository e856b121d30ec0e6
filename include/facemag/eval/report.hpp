// An analysis report on a set of faces in groups (identities, or demographic groups for bias
// checks): pictures, a JSON file of every number and one self-contained HTML page. `facemag
// report` is this over the faces it encodes.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "facemag/embed/embedder.hpp"
#include "facemag/eval/analysis.hpp"
#include "facemag/io/image.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::eval {

struct ReportFace {
  std::string name;     // shown in the pictures and tables, e.g. the file name
  std::string group;    // faces with the same group name form one group
  Embedding embedding;  // raw, not normalised; its `quality` ranks the faces
  cv::Mat crop;         // the aligned face, 8-bit BGR, any size (scaled to 112 x 112 tiles)
};

struct ReportOptions {
  std::string model;                 // the model's name, as the report shows it
  bool magnitude_is_quality = true;  // the model's: names the quality (face_quality.hpp)
  int columns = 10;                  // faces per row of the quality grid
  std::size_t skipped_inputs = 0;    // inputs the caller could not use, mentioned on the page
};

struct ReportSummary {
  std::size_t faces = 0;
  std::vector<GroupSpread> groups;  // in name order
  double total_wss = 0;
  double between_ss = 0;
  std::vector<std::filesystem::path> pictures;  // the PNG files written, in page order
  std::filesystem::path json, html;
};

// The faces of `files` as `facemag report` takes them: each file read and encoded one at a time
// (one face: the encoder's choice), its group the first folder of its name relative to its input
// folder, or "all". A file that cannot be read or has no face goes to `skipped` (its path and the
// reason) and is counted in `skipped_inputs`; `progress` is called after every file.
struct ReportFaces {
  std::vector<ReportFace> faces;
  std::size_t skipped_inputs = 0;
};
ReportFaces encode_report_faces(
    const std::vector<io::InputFile>& files, const FaceEncoder& encoder,
    const std::function<void(const std::string& path, const std::string& reason)>& skipped = {},
    const std::function<void()>& progress = {});

// Writes into `out_dir` (created when missing): faces_by_quality.png, similarity.png,
// distance.png, pca.png, quality_histogram.png, report.json (every number: faces, groups, PCA,
// the similarity, distance and centroid distance matrices) and report.html (the pictures
// embedded as base64 PNG, the tables). Groups are numbered in name order; the matrices list the
// faces by group, then best quality first. Analysis numbers: eval::analyse_embeddings.
// Requires: at least one face (else InvalidInput, nothing written), embeddings of equal size.
// InvalidInput naming the file when a picture cannot be written.
ReportSummary write_report(const std::vector<ReportFace>& faces, const ReportOptions& options,
                           const std::filesystem::path& out_dir);

}  // namespace facemag::eval
