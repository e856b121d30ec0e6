// Typed detection results shared by detectors, alignment and the CLI.
#pragma once

#include <array>
#include <vector>

namespace facemag {

struct Point {
  float x = 0;
  float y = 0;
};

// Corners in image pixels (x to the right, y down), as MTCNN reports them.
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  float area() const { return width() * height(); }
};

// Five landmarks in one documented order, as seen in the image (not the subject's left/right):
// left eye, right eye, nose tip, left mouth corner, right mouth corner.
struct Landmarks5 {
  enum Index { kLeftEye = 0, kRightEye, kNose, kMouthLeft, kMouthRight };
  std::array<Point, 5> points;
  const Point& operator[](int i) const { return points[static_cast<std::size_t>(i)]; }
  Point& operator[](int i) { return points[static_cast<std::size_t>(i)]; }
};

struct Detection {
  Box box;
  float score = 0;  // the detector's face probability
  Landmarks5 landmarks;
};

}  // namespace facemag
