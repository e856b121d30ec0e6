// Five-point landmarks that a dataset publishes, so that a paper's alignment can be reproduced
// exactly with detection skipped.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <unordered_map>

#include "facemag/detect/detection.hpp"

namespace facemag {

// One photo per line: a path, then x and y of the five points in Landmarks5 order (left eye,
// right eye, nose, left mouth corner, right mouth corner as seen in the image), in the photo's
// pixel coordinates, separated by tabs or spaces. This is the layout of LFW's landmark file from
// the SphereFace ports (`Name/Name_0001.jpg` and 10 numbers). Blank lines are skipped.
class LandmarkFile {
 public:
  // InvalidInput naming the file and line for a line that is not a path and 10 numbers, and for
  // a path listed twice.
  static LandmarkFile read(const std::filesystem::path& path);

  // The landmarks of `photo`: the entry whose path is the longest trailing part of the photo's
  // path (`data/lfw/Name/Name_0001.jpg` finds `Name/Name_0001.jpg`); nullptr when none is.
  const Landmarks5* find(const std::filesystem::path& photo) const;

  std::size_t size() const { return by_path_.size(); }
  const std::filesystem::path& source() const { return source_; }

 private:
  std::filesystem::path source_;
  std::unordered_map<std::string, Landmarks5> by_path_;  // generic, lexically normal paths
};

// A detection made from given landmarks: the box is their bounding box (alignment uses only the
// landmarks), the score 1.
Detection detection_from_landmarks(const Landmarks5& landmarks);

}  // namespace facemag
