#include "facemag/video/face_video.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "facemag/error.hpp"

namespace facemag::video {

int auto_frame_batch(int width, int height) {
  constexpr double kBatchPixels = 2.0e6;
  constexpr int kMaxFrames = 8;
  const double pixels = std::max(1.0, static_cast<double>(width) * height);
  return std::clamp(static_cast<int>(kBatchPixels / pixels), 1, kMaxFrames);
}

VideoRunSummary track_video(
    VideoSource& source, const FacePipeline& pipeline, const VideoTrackingOptions& options,
    const std::function<void(Track&&)>& on_track,
    const std::function<void(const Frame&, std::span<const FrameBox>)>& on_frame) {
  if (options.every < 1) throw InvalidInput("detection interval must be at least 1 frame");
  if (options.frame_batch < 0) throw InvalidInput("frame batch must be at least 1 (0: auto)");
  const std::size_t frame_batch = static_cast<std::size_t>(
      options.frame_batch > 0 ? options.frame_batch
                              : auto_frame_batch(source.info().width, source.info().height));
  VideoRunSummary summary;
  FaceTracker tracker(options.tracker);
  ShotCutDetector cuts(options.cuts);
  const auto hand_over = [&](std::vector<Track> closed) {
    for (auto& t : closed) {
      ++summary.tracks;
      on_track(std::move(t));
    }
  };
  std::vector<Frame> window;          // frames decoded since the last batch
  std::vector<std::size_t> detected;  // which of them go through detection
  std::vector<FrameBox> shown;
  const auto run_window = [&] {
    std::vector<cv::Mat> photos;
    for (const std::size_t w : detected) photos.push_back(window[w].bgr);
    const auto records = photos.empty() ? std::vector<std::vector<FaceRecord>>{}
                                        : pipeline.process_batch(photos, KeepFaces::kAll);
    std::size_t next_detected = 0;
    for (std::size_t w = 0; w < window.size(); ++w) {
      const Frame& frame = window[w];
      if (cuts.is_cut(frame.bgr)) {
        tracker.cut();
        summary.cuts.push_back({frame.index, frame.time, cuts.last_change()});
        shown.clear();  // the boxes held from the last shot are no longer on screen
      }
      if (next_detected < detected.size() && detected[next_detected] == w) {
        const auto& faces = records[next_detected++];
        hand_over(tracker.take_closed(frame.time));
        const auto assigned = tracker.update(frame.index, frame.time, faces);
        shown.clear();
        for (std::size_t i = 0; i < faces.size(); ++i) {
          if (assigned[i].track_id == 0) continue;
          Track& track = tracker.open_track(assigned[i].track_id);
          if (assigned[i].new_best)
            track.best_crop = crop_for_model(frame.bgr, faces[i].detection, pipeline.manifest());
          shown.push_back({track.id, faces[i].detection, tracker.quality_of(faces[i])});
        }
        ++summary.detected_frames;
        summary.faces += static_cast<std::int64_t>(faces.size());
      }
      if (on_frame) on_frame(frame, shown);
    }
    window.clear();
    detected.clear();
  };
  for (;;) {
    auto frame = source.next();
    if (frame) {
      ++summary.frames;
      if (frame->index % options.every == 0) detected.push_back(window.size());
      window.push_back(std::move(*frame));
    }
    if (detected.size() == frame_batch || (!frame && !window.empty())) run_window();
    if (!frame) break;
  }
  hand_over(tracker.finish());
  summary.end_note = source.end_note();
  return summary;
}

}  // namespace facemag::video
