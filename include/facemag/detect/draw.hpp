// Detections drawn onto their photo, as `facemag detect --draw` writes them.
#pragma once

#include <opencv2/core/mat.hpp>

#include <span>

#include "facemag/detect/detection.hpp"

namespace facemag {

// Draws each face's box (green), its landmarks (red dots) and its score above the box onto the
// 8-bit BGR `image`, with strokes scaled to the image (1 px per 300 px of its shorter side).
void draw_detections(cv::Mat& image, std::span<const Detection> faces);

}  // namespace facemag
