#include "facemag/video/video_source.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "facemag/error.hpp"

namespace facemag::video {

namespace {

bool is_camera_index(const std::string& input) {
  return !input.empty() && input.size() < 4 &&
         std::all_of(input.begin(), input.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string seconds_text(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", seconds);
  return buf;
}

}  // namespace

struct VideoSource::State {
  VideoInfo info;
  cv::VideoCapture capture;
  const std::atomic<bool>* stop = nullptr;
  std::size_t capacity = kDefaultQueue;

  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Frame> queue;
  bool finished = false;   // the decoder will push no more
  bool cancelled = false;  // the consumer is gone
  std::int64_t decoded = 0;
  std::string end_note;
  std::thread decoder;

  double time_of(std::int64_t index) const { return static_cast<double>(index) / info.fps; }

  void decode() {
    std::string note;
    try {
      for (;;) {
        if (stop && stop->load()) {
          note = info.input + ": stopped on request after frame " + std::to_string(decoded);
          break;
        }
        Frame frame;
        if (!capture.read(frame.bgr) || frame.bgr.empty()) break;
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return queue.size() < capacity || cancelled; });
        if (cancelled) return;
        frame.index = decoded++;
        frame.time = time_of(frame.index);
        queue.push_back(std::move(frame));
        changed.notify_all();
      }
    } catch (const std::exception& e) {
      note =
          info.input + ": decoding failed after frame " + std::to_string(decoded) + ": " + e.what();
    }
    // Container frame counts are exact for most files and estimates (duration x rate) for some:
    // only a shortfall beyond 1 % (at least 2 frames) is reported.
    const std::int64_t announced = info.announced_frames;
    if (note.empty() && announced > 0 &&
        decoded < announced - std::max<std::int64_t>(2, announced / 100)) {
      note = info.input + ": decoding stopped at frame " + std::to_string(decoded) + " (" +
             seconds_text(time_of(decoded)) + ") of the " + std::to_string(announced) +
             " the file announces: it is truncated or damaged; the frames before were used";
    }
    std::lock_guard lock(mutex);
    end_note = note;
    finished = true;
    changed.notify_all();
  }
};

VideoSource::VideoSource(const std::string& input, std::size_t queue_frames,
                         const std::atomic<bool>* stop)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.info.input = input;
  s.stop = stop;
  s.capacity = std::max<std::size_t>(1, queue_frames);
  // FFmpeg writes its own complaints to stderr; facemag reports failures itself, in one line.
  // OPENCV_FFMPEG_LOGLEVEL set by the user (e.g. 32 for FFmpeg's info) still wins.
  setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", /*overwrite=*/0);
  if (is_camera_index(input)) {
    s.capture.open(std::stoi(input), cv::CAP_ANY);
  } else {
    if (!input.empty() && input.find("://") == std::string::npos && !std::filesystem::exists(input))
      throw InvalidInput(input + ": no such file");
    // FFmpeg would open a photo as a one-frame video; a photo given here is a mistake.
    if (std::filesystem::is_regular_file(input) && cv::haveImageReader(input))
      throw InvalidInput(input +
                         ": a still image, not a video (photos go to facemag detect, "
                         "embed or quality)");
    s.capture.open(input, cv::CAP_FFMPEG);
  }
  if (!s.capture.isOpened())
    throw InvalidInput(input + ": not a video OpenCV can open (FFmpeg back end" +
                       std::string(is_camera_index(input) ? ", camera index" : "") + ")");
  Frame first;
  if (!s.capture.read(first.bgr) || first.bgr.empty())
    throw InvalidInput(input + ": opened, but no frame decodes");
  const double fps = s.capture.get(cv::CAP_PROP_FPS);
  s.info.fps_reported = std::isfinite(fps) && fps > 0 && fps < 1000;
  s.info.fps = s.info.fps_reported ? fps : kDefaultFps;
  s.info.width = first.bgr.cols;
  s.info.height = first.bgr.rows;
  const double count = s.capture.get(cv::CAP_PROP_FRAME_COUNT);
  s.info.announced_frames =
      std::isfinite(count) && count > 0 ? static_cast<std::int64_t>(std::llround(count)) : 0;
  s.info.backend = s.capture.getBackendName();
  first.index = 0;
  first.time = 0;
  s.queue.push_back(std::move(first));
  s.decoded = 1;
  s.decoder = std::thread([&s] { s.decode(); });
}

VideoSource::~VideoSource() {
  {
    std::lock_guard lock(state_->mutex);
    state_->cancelled = true;
    state_->changed.notify_all();
  }
  state_->decoder.join();
}

const VideoInfo& VideoSource::info() const { return state_->info; }

std::optional<Frame> VideoSource::next() {
  auto& s = *state_;
  std::unique_lock lock(s.mutex);
  s.changed.wait(lock, [&] { return !s.queue.empty() || s.finished; });
  if (s.queue.empty()) return std::nullopt;
  Frame frame = std::move(s.queue.front());
  s.queue.pop_front();
  s.changed.notify_all();
  return frame;
}

std::string VideoSource::end_note() const {
  std::lock_guard lock(state_->mutex);
  return state_->end_note;
}

}  // namespace facemag::video
