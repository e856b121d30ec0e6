#include "facemag/align/landmark_file.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "facemag/error.hpp"

namespace facemag {

LandmarkFile LandmarkFile::read(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!std::filesystem::exists(path)) throw InvalidInput(path.string() + ": no such file");
  if (!in) throw InvalidInput(path.string() + ": cannot open");
  LandmarkFile file;
  file.source_ = path;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    std::istringstream fields(line);
    std::string photo;
    if (!(fields >> photo)) continue;
    const auto where = path.string() + ":" + std::to_string(number);
    Landmarks5 marks;
    for (auto& p : marks.points) {
      if (!(fields >> p.x >> p.y))
        throw InvalidInput(where + ": expected a path and 10 numbers (x, y of five points)");
    }
    if (std::string extra; fields >> extra)
      throw InvalidInput(where + ": more than 10 numbers after the path ('" + extra + "')");
    const auto key = std::filesystem::path(photo).lexically_normal().generic_string();
    if (!file.by_path_.emplace(key, marks).second)
      throw InvalidInput(where + ": " + photo + " is listed twice");
  }
  return file;
}

const Landmarks5* LandmarkFile::find(const std::filesystem::path& photo) const {
  std::vector<std::string> parts;
  for (const auto& part : photo.lexically_normal()) {
    if (!part.empty() && part != "/") parts.push_back(part.generic_string());
  }
  // Longest trailing part first.
  for (std::size_t first = 0; first < parts.size(); ++first) {
    std::string key;
    for (std::size_t i = first; i < parts.size(); ++i) key += (key.empty() ? "" : "/") + parts[i];
    if (const auto it = by_path_.find(key); it != by_path_.end()) return &it->second;
  }
  return nullptr;
}

Detection detection_from_landmarks(const Landmarks5& landmarks) {
  Detection d;
  d.landmarks = landmarks;
  d.score = 1;
  const auto& p = landmarks.points;
  const auto [min_x, max_x] = std::minmax_element(
      p.begin(), p.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
  const auto [min_y, max_y] = std::minmax_element(
      p.begin(), p.end(), [](const Point& a, const Point& b) { return a.y < b.y; });
  d.box = {min_x->x, min_y->y, max_x->x, max_y->y};
  return d;
}

}  // namespace facemag
