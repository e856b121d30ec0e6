#include "facemag/detect/draw.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdio>

namespace facemag {

void draw_detections(cv::Mat& image, std::span<const Detection> faces) {
  const int thickness = std::max(1, std::min(image.cols, image.rows) / 300);
  for (const auto& f : faces) {
    cv::rectangle(image, cv::Point2f(f.box.x1, f.box.y1), cv::Point2f(f.box.x2, f.box.y2),
                  {0, 255, 0}, thickness);
    for (const auto& p : f.landmarks.points)
      cv::circle(image, cv::Point2f(p.x, p.y), 2 * thickness, {0, 0, 255}, -1);
    char label[16];
    std::snprintf(label, sizeof label, "%.3f", f.score);
    cv::putText(image, label, cv::Point2f(f.box.x1, std::max(12.0f, f.box.y1 - 4)),
                cv::FONT_HERSHEY_SIMPLEX, 0.5 * thickness, {0, 255, 0}, thickness);
  }
}

}  // namespace facemag
