#include "facemag/detect/detection.hpp"

namespace facemag {

std::size_t central_face(std::span<const Detection> faces, int image_width, int image_height) {
  const double cx = image_width / 2, cy = image_height / 2;  // integer halves, as insightface
  std::size_t best = 0;
  double best_value = 0;
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const Box& b = faces[i].box;
    const double dx = (b.x1 + b.x2) / 2.0 - cx, dy = (b.y1 + b.y2) / 2.0 - cy;
    const double value = double(b.width()) * double(b.height()) - 2.0 * (dx * dx + dy * dy);
    if (i == 0 || value > best_value) {
      best = i;
      best_value = value;
    }
  }
  return best;
}

}  // namespace facemag
