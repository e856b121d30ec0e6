// Typed detection results shared by detectors, alignment and the CLI.
#pragma once

#include <array>
#include <cstddef>
#include <span>
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

// Which face a photo is about, as insightface's FaceAnalysis ranks faces: the largest box weighted
// by its distance from the image centre, i.e. the highest box area minus twice the squared
// distance of the box centre from the image centre (width / 2, height / 2, rounded down). A large
// face at the edge loses to a smaller one in the middle. Index into `faces`; 0 for an empty list.
std::size_t central_face(std::span<const Detection> faces, int image_width, int image_height);

}  // namespace facemag
