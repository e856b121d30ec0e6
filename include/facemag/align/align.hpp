// Face alignment: a least-squares similarity transform (Umeyama, with scaling) from the five
// detected landmarks to a template, and facenet-pytorch's margin crop.
#pragma once

#include <opencv2/core/mat.hpp>
#include <opencv2/core/matx.hpp>
#include <opencv2/core/types.hpp>

#include <array>
#include <string>

#include "facemag/detect/detection.hpp"

namespace facemag {

// Where the five landmarks (Landmarks5 order) go in an aligned crop of width x height.
struct AlignmentTemplate {
  std::string name;
  int width = 0;
  int height = 0;
  std::array<cv::Point2d, 5> points;  // double: the published coordinates are used exactly
};

// ArcFace/insightface 112x112 template (MagFace, iResNet).
const AlignmentTemplate& arcface_template();
// SphereFace 96x112 (width x height) template: the ArcFace one shifted 8 px left (MobileFaceNet).
const AlignmentTemplate& sphereface_template();
// A template by name: "arcface-112x112" or "sphereface-96x112"; InvalidInput otherwise.
const AlignmentTemplate& alignment_template(const std::string& name);

// The 2x3 similarity (rotation, uniform scale, translation) that maps `from` onto `to` in the
// least-squares sense (Umeyama 1991, as skimage.transform.SimilarityTransform.estimate).
cv::Matx23d similarity_transform(const std::array<cv::Point2d, 5>& from,
                                 const std::array<cv::Point2d, 5>& to);

struct AlignedFace {
  cv::Mat image;       // template width x height, same type as the input (BGR stays BGR)
  cv::Matx23d matrix;  // image -> crop coordinates
};

// Warps `image` so that `landmarks` land on the template: bilinear, black outside the image.
AlignedFace align_face(const cv::Mat& image, const Landmarks5& landmarks,
                       const AlignmentTemplate& tmpl);

// facenet-pytorch's extract_face: the box widened by `margin` pixels *of the output*, clipped to
// the image, cropped and resized to image_size x image_size with area interpolation (the
// reference's OpenCV path). Same channel order as the input.
cv::Mat margin_crop(const cv::Mat& image, const Box& box, int image_size = 160, int margin = 0);

}  // namespace facemag
