#include "facemag/detect/json.hpp"

namespace facemag {

nlohmann::json to_json(const Box& box) { return {box.x1, box.y1, box.x2, box.y2}; }

nlohmann::json to_json(const Detection& detection) {
  nlohmann::json marks = nlohmann::json::array();
  for (const auto& p : detection.landmarks.points) marks.push_back({p.x, p.y});
  return {{"box", to_json(detection.box)}, {"score", detection.score}, {"landmarks", marks}};
}

nlohmann::json photo_detections_json(const std::string& path, int width, int height,
                                     std::span<const Detection> faces) {
  nlohmann::json record{{"path", path}, {"width", width}, {"height", height}};
  record["faces"] = nlohmann::json::array();
  for (const auto& f : faces) record["faces"].push_back(to_json(f));
  return record;
}

}  // namespace facemag
