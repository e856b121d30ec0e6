#include "facemag/align/align.hpp"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "facemag/error.hpp"

namespace facemag {

const AlignmentTemplate& arcface_template() {
  static const AlignmentTemplate t{"arcface-112x112",
                                   112,
                                   112,
                                   {{{38.2946, 51.6963},
                                     {73.5318, 51.5014},
                                     {56.0252, 71.7366},
                                     {41.5493, 92.3655},
                                     {70.7299, 92.2041}}}};
  return t;
}

const AlignmentTemplate& sphereface_template() {
  static const AlignmentTemplate t = [] {
    AlignmentTemplate s = arcface_template();
    s.name = "sphereface-96x112";
    s.width = 96;
    for (auto& p : s.points) p.x -= 8.0;
    return s;
  }();
  return t;
}

const AlignmentTemplate& alignment_template(const std::string& name) {
  if (name == arcface_template().name) return arcface_template();
  if (name == sphereface_template().name) return sphereface_template();
  throw InvalidInput("unknown alignment template '" + name + "'");
}

cv::Matx23d similarity_transform(const std::array<cv::Point2d, 5>& from,
                                 const std::array<cv::Point2d, 5>& to) {
  constexpr int n = 5;
  cv::Vec2d src_mean(0, 0), dst_mean(0, 0);
  for (int i = 0; i < n; ++i) {
    src_mean += cv::Vec2d(from[i].x, from[i].y);
    dst_mean += cv::Vec2d(to[i].x, to[i].y);
  }
  src_mean /= n;
  dst_mean /= n;
  cv::Matx22d a = cv::Matx22d::zeros();  // dst_demeanᵀ · src_demean / n
  double src_var = 0;
  for (int i = 0; i < n; ++i) {
    const cv::Vec2d s = cv::Vec2d(from[i].x, from[i].y) - src_mean;
    const cv::Vec2d d = cv::Vec2d(to[i].x, to[i].y) - dst_mean;
    a += cv::Matx22d(d[0] * s[0], d[0] * s[1], d[1] * s[0], d[1] * s[1]);
    src_var += s.dot(s);
  }
  a *= 1.0 / n;
  src_var /= n;

  cv::Matx21d singular;
  cv::Matx22d u, vt;
  cv::SVD::compute(a, singular, u, vt);
  cv::Vec2d d(1, 1);
  if (cv::determinant(a) < 0) d[1] = -1;
  const double tol =
      std::max(singular(0), singular(1)) * 2 * std::numeric_limits<double>::epsilon();
  const int rank = (singular(0) > tol) + (singular(1) > tol);
  if (rank == 0) throw InvalidInput("landmarks are degenerate (all in one point): no alignment");
  cv::Matx22d rotation;
  if (rank == 1 && cv::determinant(u) * cv::determinant(vt) <= 0) {
    rotation = u * cv::Matx22d(1, 0, 0, -1) * vt;
  } else {
    rotation = u * cv::Matx22d(d[0], 0, 0, d[1]) * vt;
  }
  const double scale = (singular(0) * d[0] + singular(1) * d[1]) / src_var;
  const cv::Vec2d t = dst_mean - scale * (rotation * src_mean);
  return {scale * rotation(0, 0), scale * rotation(0, 1), t[0],
          scale * rotation(1, 0), scale * rotation(1, 1), t[1]};
}

AlignedFace align_face(const cv::Mat& image, const Landmarks5& landmarks,
                       const AlignmentTemplate& tmpl) {
  AlignedFace out;
  std::array<cv::Point2d, 5> from;
  for (int i = 0; i < 5; ++i) from[i] = {landmarks[i].x, landmarks[i].y};
  out.matrix = similarity_transform(from, tmpl.points);
  cv::warpAffine(image, out.image, out.matrix, cv::Size(tmpl.width, tmpl.height), cv::INTER_LINEAR,
                 cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return out;
}

cv::Mat margin_crop(const cv::Mat& image, const Box& box, int image_size, int margin) {
  if (image_size <= margin) throw InvalidInput("margin must be smaller than image_size");
  const double mx = static_cast<double>(margin) * (box.x2 - box.x1) / (image_size - margin);
  const double my = static_cast<double>(margin) * (box.y2 - box.y1) / (image_size - margin);
  const int x1 = static_cast<int>(std::max(box.x1 - mx / 2, 0.0));
  const int y1 = static_cast<int>(std::max(box.y1 - my / 2, 0.0));
  const int x2 = static_cast<int>(std::min(box.x2 + mx / 2, static_cast<double>(image.cols)));
  const int y2 = static_cast<int>(std::min(box.y2 + my / 2, static_cast<double>(image.rows)));
  if (x2 <= x1 || y2 <= y1) throw InvalidInput("face box lies outside the image");
  cv::Mat out;
  cv::resize(image(cv::Range(y1, y2), cv::Range(x1, x2)), out, cv::Size(image_size, image_size), 0,
             0, cv::INTER_AREA);
  return out;
}

}  // namespace facemag
