// int8 calibration on a user's own faces, as `facemag calibrate-int8` makes it: faces aligned
// from the inputs (one per photo, as embed takes them), the largest magnitude of every value of
// the network measured over them in float32, and the calibration written where --precision int8
// looks for it.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "facemag/embed/embedder.hpp"
#include "facemag/pipeline.hpp"

namespace facemag {

struct Int8CalibrationOptions {
  std::size_t max_faces = 1000;  // use at most this many faces
  double percentile = 99.99;     // a value's range: this percentile of its magnitudes
  std::filesystem::path out;     // empty: int8_calibration_path(weights)
};

// Progress of a calibration, for a front end to show; every member is optional.
struct Int8CalibrationProgress {
  std::function<void(std::size_t total_faces)> begin;  // at most max_faces
  std::function<void()> face_added;
  // An input left out: `path` the unreadable file, or empty for a photo the aligner found no face
  // in (`reason` then names it).
  std::function<void(const std::string& path, const std::string& reason)> skipped;
};

// What a calibration wrote.
struct Int8CalibrationRun {
  std::filesystem::path file;  // the calibration written
  std::string model;           // the manifest's name
  nn::Int8Calibration calibration;
  std::size_t skipped = 0;  // inputs unreadable or without a face
};

// Aligns up to max_faces faces of `inputs` (files, folders, @list.txt; decoded 32 at a time) with
// `aligner`, calibrates `embedder` on them (Embedder::calibrate_int8: it should be loaded at
// Precision::kReference) and writes the calibration to options.out, else beside `weights`.
// Unreadable photos and photos without a face are skipped. InvalidInput when no face is found.
Int8CalibrationRun calibrate_int8_on_files(const Embedder& embedder, const FaceAligner& aligner,
                                           const std::vector<std::string>& inputs,
                                           const std::filesystem::path& weights,
                                           const Int8CalibrationOptions& options,
                                           const Int8CalibrationProgress& progress = {});

// The run's record: calibration (the file), model, faces, skipped, values.
nlohmann::json to_json(const Int8CalibrationRun& run);

}  // namespace facemag
