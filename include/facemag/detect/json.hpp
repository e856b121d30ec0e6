// The JSON form of detections, written once for every front end (`facemag detect`, `embed`,
// `gallery`, the server's answers): a box is [x1, y1, x2, y2] in pixels of its image, landmarks
// are [x, y] pairs in Landmarks5's order.
#pragma once

#include <nlohmann/json.hpp>

#include <span>
#include <string>

#include "facemag/detect/detection.hpp"

namespace facemag {

// [x1, y1, x2, y2].
nlohmann::json to_json(const Box& box);
// {"box": [x1, y1, x2, y2], "score": probability, "landmarks": [[x, y] x 5]}.
nlohmann::json to_json(const Detection& detection);
// What `facemag detect` writes per photo: {"path", "width", "height", "faces": [to_json(face)]}.
nlohmann::json photo_detections_json(const std::string& path, int width, int height,
                                     std::span<const Detection> faces);

}  // namespace facemag
