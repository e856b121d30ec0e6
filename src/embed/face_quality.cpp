#include "facemag/embed/face_quality.hpp"

#include "facemag/error.hpp"
#include "facemag/model/manifest.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

namespace facemag {

namespace {
constexpr int kSharpnessRows = 112;
}

double crop_sharpness(const cv::Mat& crop) {
  if (crop.empty() || crop.depth() != CV_8U || (crop.channels() != 3 && crop.channels() != 1))
    throw InvalidInput("crop_sharpness: expected an 8-bit BGR or grey crop, got " +
                       std::to_string(crop.cols) + " x " + std::to_string(crop.rows) + " with " +
                       std::to_string(crop.channels()) + " channel(s) of depth " +
                       std::to_string(crop.depth()));
  cv::Mat grey;
  if (crop.channels() == 3)
    cv::cvtColor(crop, grey, cv::COLOR_BGR2GRAY);
  else
    grey = crop;
  if (grey.rows != kSharpnessRows) {
    const int cols =
        std::max(1, static_cast<int>(std::lround(grey.cols * double(kSharpnessRows) / grey.rows)));
    cv::Mat resized;
    cv::resize(grey, resized, {cols, kSharpnessRows}, 0, 0,
               grey.rows > kSharpnessRows ? cv::INTER_AREA : cv::INTER_LINEAR);
    grey = resized;
  }
  cv::Mat levels, laplacian;
  grey.convertTo(levels, CV_32F);
  cv::Laplacian(levels, laplacian, CV_32F);
  cv::Scalar mean, deviation;
  cv::meanStdDev(laplacian, mean, deviation);
  return deviation[0] * deviation[0];
}

double sharpness_factor(const cv::Mat& crop) {
  return std::min(1.0, crop_sharpness(crop) / kSharpnessReference);
}

float face_quality(const ModelManifest& model, float magnitude, const cv::Mat& crop) {
  if (model.magnitude_is_quality) return magnitude;
  return static_cast<float>(magnitude * sharpness_factor(crop));
}

std::string quality_source(bool magnitude_is_quality) {
  return magnitude_is_quality ? "magnitude" : "magnitude*sharpness";
}

std::string quality_source(const ModelManifest& model) {
  return quality_source(model.magnitude_is_quality);
}

}  // namespace facemag
