// Shot boundaries (cuts) from the decoded frames themselves: a cut is where consecutive frames
// differ both in colour, pixel by pixel, and in their brightness histogram. Cheap: each frame is
// compared as a 64-pixel-wide thumbnail.
//
// Two measures, because each alone mistakes something for a cut: the colour change rises with
// fast camera pans (the picture moves under the pixels), the histogram change with a person
// walking into a still frame and with changes of exposure; a cut changes both. Measured on 297
// consecutive pairs of lfw-half photos as 250x250 frames (docs/video.md): cuts between two
// people's sharp photos have colour change >= 37.1 and histogram change >= 0.17; between two
// photos blurred with sigma 6, 1 of 297 has colour 28.4 (missed), the rest >= 30. Within a shot:
// a pan of 25 px a frame reaches colour 55.1 but histogram 0.128; a blur of sigma 6 colour
// 20.9; a 250x250 photo appearing on a still 640x360 frame colour 26.3 (histogram 0.28). A whole
// frame darkened to 1/2 in one frame is a cut 5 % of the time, to 1/4 71 % (a flash is one).
#pragma once

#include <opencv2/core/mat.hpp>

namespace facemag::video {

struct ShotCutOptions {
  bool enabled = true;
  // Mean absolute difference of the HSV thumbnails (hue as an angle in OpenCV's 0-179 units,
  // saturation and value 0-255), averaged over the three channels.
  double min_colour_change = 30;
  // Total variation distance (0-1) of the thumbnails' 32-bin grey histograms.
  double min_histogram_change = 0.15;
};

// How much a frame differs from the one before it.
struct FrameChange {
  double colour = 0;     // see ShotCutOptions::min_colour_change
  double histogram = 0;  // see ShotCutOptions::min_histogram_change
};

// The change between two frames (8-bit BGR, any sizes: each is compared as its 64-pixel-wide
// thumbnail). InvalidInput for an empty frame or another type.
FrameChange frame_change(const cv::Mat& before, const cv::Mat& after);

// Frames given in order; says which begin a new shot. Keeps the previous frame's thumbnail (one
// detector per video).
class ShotCutDetector {
 public:
  explicit ShotCutDetector(ShotCutOptions options) : options_(options) {}

  // True when `bgr` (8-bit BGR) differs from the frame given before it by at least both
  // thresholds; never for the first frame, nor when the detector is disabled.
  bool is_cut(const cv::Mat& bgr);
  // The change measured by the last is_cut() (zero for the first frame).
  const FrameChange& last_change() const { return last_change_; }

 private:
  ShotCutOptions options_;
  cv::Mat previous_hsv_;
  cv::Mat previous_histogram_;
  FrameChange last_change_;
};

}  // namespace facemag::video
