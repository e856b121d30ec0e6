#include "facemag/calibrate_int8.hpp"

#include <algorithm>

#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/model/resolve.hpp"

namespace facemag {

Int8CalibrationRun calibrate_int8_on_files(const Embedder& embedder, const FaceAligner& aligner,
                                           const std::vector<std::string>& inputs,
                                           const std::filesystem::path& weights,
                                           const Int8CalibrationOptions& options,
                                           const Int8CalibrationProgress& progress) {
  constexpr std::size_t kChunk = 32;
  Int8CalibrationRun run;
  std::vector<cv::Mat> faces;
  const auto skip = [&](const std::string& path, const std::string& reason) {
    if (progress.skipped) progress.skipped(path, reason);
    ++run.skipped;
  };
  const auto files = io::expand_inputs(inputs);
  if (progress.begin) progress.begin(std::min(files.size(), options.max_faces));
  for (std::size_t start = 0; start < files.size() && faces.size() < options.max_faces;
       start += kChunk) {
    std::vector<cv::Mat> images;
    std::vector<std::string> names;
    for (std::size_t i = start; i < std::min(files.size(), start + kChunk); ++i) {
      try {
        images.push_back(io::read_image_bgr(files[i].path));
        names.push_back(files[i].name.string());
      } catch (const InvalidInput& e) {
        skip(files[i].path.string(), e.what());
      }
    }
    for (auto& candidates : aligner.align(images, names)) {
      if (candidates.crops.empty()) {
        skip("", candidates.error);
      } else if (faces.size() < options.max_faces) {
        faces.push_back(candidates.crops.front());
        if (progress.face_added) progress.face_added();
      }
    }
  }
  if (faces.empty()) throw InvalidInput("calibrate-int8: no face in the inputs");
  run.calibration = embedder.calibrate_int8(faces, options.percentile);
  run.file = options.out.empty() ? int8_calibration_path(weights) : options.out;
  run.model = embedder.manifest().name;
  write_int8_calibration(run.file, embedder.manifest(), run.calibration);
  return run;
}

nlohmann::json to_json(const Int8CalibrationRun& run) {
  return {{"calibration", run.file.string()},
          {"model", run.model},
          {"faces", run.calibration.faces},
          {"skipped", run.skipped},
          {"values", run.calibration.values.size()}};
}

}  // namespace facemag
