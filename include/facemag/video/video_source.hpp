// Frames of a video file, a stream URL or a camera, decoded on a thread of their own ahead of the
// consumer. Frames are 8-bit BGR (OpenCV's order), numbered from 0 in decoding order.
#pragma once

#include <opencv2/core/mat.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace facemag::video {

struct VideoInfo {
  std::string input;
  double fps = 0;  // as the container or device reports it; kDefaultFps when it reports none
  bool fps_reported = true;
  int width = 0;
  int height = 0;
  std::int64_t announced_frames = 0;  // what the container says it holds; 0 when unknown (streams)
  std::string backend;                // OpenCV's back end, e.g. "FFMPEG", "V4L2"
};

struct Frame {
  std::int64_t index = 0;
  double time = 0;  // seconds: index / fps (constant frame rate)
  cv::Mat bgr;
};

class VideoSource {
 public:
  // Frames per second assumed when a source reports none (some cameras and streams).
  static constexpr double kDefaultFps = 25.0;
  static constexpr std::size_t kDefaultQueue = 16;

  // `input`: a file, a URL (rtsp://, http://, ...) or a camera index ("0"). InvalidInput naming
  // `input` when OpenCV cannot open it or its first frame does not decode. Starts decoding at
  // once, at most `queue_frames` ahead of next(). `stop` (optional): set it (e.g. from a signal
  // handler) to end decoding early; next() then runs out as at the end of the video.
  explicit VideoSource(const std::string& input, std::size_t queue_frames = kDefaultQueue,
                       const std::atomic<bool>* stop = nullptr);
  ~VideoSource();
  VideoSource(const VideoSource&) = delete;
  VideoSource& operator=(const VideoSource&) = delete;

  const VideoInfo& info() const;
  // The next frame in order; nullopt once decoding has ended.
  std::optional<Frame> next();
  // After next() returned nullopt: why decoding ended early, in one sentence naming the input
  // and the last frame ("stopped at frame 21 (2.10 s) of the 50 the file announces: truncated
  // or damaged"); empty when it reached the announced end or the source announces no length.
  std::string end_note() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace facemag::video
