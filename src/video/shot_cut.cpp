#include "facemag/video/shot_cut.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "facemag/error.hpp"

namespace facemag::video {
namespace {

constexpr int kThumbnailWidth = 64;
constexpr int kHistogramBins = 32;

// The frame's HSV thumbnail and its normalised grey histogram (CV_64F, kHistogramBins x 1).
void thumbnail(const cv::Mat& bgr, cv::Mat& hsv, cv::Mat& histogram) {
  if (bgr.empty() || bgr.type() != CV_8UC3)
    throw InvalidInput("shot cut detection: expected an 8-bit BGR frame, got " +
                       (bgr.empty() ? std::string("an empty one")
                                    : "type " + std::to_string(bgr.type()) + " with " +
                                          std::to_string(bgr.channels()) + " channel(s)"));
  const int height = std::max(
      1, static_cast<int>(std::lround(static_cast<double>(kThumbnailWidth) * bgr.rows / bgr.cols)));
  cv::Mat small, grey;
  cv::resize(bgr, small, {kThumbnailWidth, height}, 0, 0, cv::INTER_AREA);
  cv::cvtColor(small, hsv, cv::COLOR_BGR2HSV);
  cv::cvtColor(small, grey, cv::COLOR_BGR2GRAY);
  histogram = cv::Mat::zeros(kHistogramBins, 1, CV_64F);
  for (int y = 0; y < grey.rows; ++y) {
    const auto* row = grey.ptr<unsigned char>(y);
    for (int x = 0; x < grey.cols; ++x) histogram.at<double>(row[x] * kHistogramBins / 256) += 1;
  }
  histogram /= static_cast<double>(grey.total());
}

FrameChange change_between(const cv::Mat& hsv_a, const cv::Mat& hist_a, const cv::Mat& hsv_b,
                           const cv::Mat& hist_b) {
  double hue = 0, saturation = 0, value = 0;
  for (int y = 0; y < hsv_a.rows; ++y) {
    const auto* a = hsv_a.ptr<cv::Vec3b>(y);
    const auto* b = hsv_b.ptr<cv::Vec3b>(y);
    for (int x = 0; x < hsv_a.cols; ++x) {
      // Hue is an angle (0-179 for 0-358 degrees): red sits at both ends, skin near them.
      const int dh = std::abs(a[x][0] - b[x][0]);
      hue += std::min(dh, 180 - dh);
      saturation += std::abs(a[x][1] - b[x][1]);
      value += std::abs(a[x][2] - b[x][2]);
    }
  }
  const double n = static_cast<double>(hsv_a.total());
  return {(hue + saturation + value) / (3 * n), cv::norm(hist_a, hist_b, cv::NORM_L1) / 2};
}

}  // namespace

FrameChange frame_change(const cv::Mat& before, const cv::Mat& after) {
  cv::Mat hsv_a, hist_a, hsv_b, hist_b;
  thumbnail(before, hsv_a, hist_a);
  thumbnail(after, hsv_b, hist_b);
  // Thumbnails of frames of other aspect ratios: compare at the first one's size.
  if (hsv_b.size() != hsv_a.size()) cv::resize(hsv_b, hsv_b, hsv_a.size(), 0, 0, cv::INTER_AREA);
  return change_between(hsv_a, hist_a, hsv_b, hist_b);
}

bool ShotCutDetector::is_cut(const cv::Mat& bgr) {
  if (!options_.enabled) return false;
  cv::Mat hsv, histogram;
  thumbnail(bgr, hsv, histogram);
  const bool first = previous_hsv_.empty();
  if (!first && hsv.size() != previous_hsv_.size())
    cv::resize(hsv, hsv, previous_hsv_.size(), 0, 0, cv::INTER_AREA);
  last_change_ =
      first ? FrameChange{} : change_between(previous_hsv_, previous_histogram_, hsv, histogram);
  previous_hsv_ = hsv;
  previous_histogram_ = histogram;
  return !first && last_change_.colour >= options_.min_colour_change &&
         last_change_.histogram >= options_.min_histogram_change;
}

}  // namespace facemag::video
