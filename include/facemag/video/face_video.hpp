// Faces through a whole video: detect on every N-th frame (frames batched through MTCNN and the
// embedder), follow the faces with a FaceTracker, hand each track over once it is closed.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "facemag/pipeline.hpp"
#include "facemag/video/shot_cut.hpp"
#include "facemag/video/tracker.hpp"
#include "facemag/video/video_source.hpp"

namespace facemag::video {

struct VideoTrackingOptions {
  int every = 1;  // detect on frames 0, every, 2 x every, ...
  // Detection frames per network batch (speed and memory, not results); 0: auto_frame_batch().
  int frame_batch = 0;
  TrackerOptions tracker;
  // Every decoded frame (detected or not) is compared with the one before; at a cut the tracker
  // is told (FaceTracker::cut()) before the next detection, and held boxes are dropped.
  ShotCutOptions cuts;
};

// Frames of width x height that go through MTCNN together by default: as many as fit in about
// 2 megapixels, 1 to 8. Measured (bench/bench_video.cpp, Zen 5, 2 threads): batching 8 frames
// of 640x360 runs 1.2-1.27x a frame at a time, 2 frames of 1280x720 1.05-1.13x, but 8 frames of
// 1280x720 only 0.70-0.89x: the first pyramid levels of a larger batch no longer stay in cache.
int auto_frame_batch(int width, int height);

// A face box to show on a frame: its track's detection on this frame, or on the last frame that
// went through detection (frames in between are not detected).
struct FrameBox {
  int track_id = 0;
  Detection detection;
  float quality = 0;
};

// The first frame of a new shot.
struct ShotCut {
  std::int64_t frame = 0;
  double time = 0;
  FrameChange change;
};

struct VideoRunSummary {
  std::int64_t frames = 0;           // decoded
  std::int64_t detected_frames = 0;  // went through detection
  std::int64_t faces = 0;            // detections
  int tracks = 0;
  std::vector<ShotCut> cuts;  // in order
  std::string end_note;       // VideoSource::end_note()
};

// Runs the video to its end. on_track gets each track when it closes (unseen for
// max_gap_seconds) and the rest at the end, with best_crop set. on_frame (optional) gets every
// frame in order with the boxes shown on it. The result does not depend on the thread count nor
// on frame_batch beyond floating-point rounding of batched network passes.
VideoRunSummary track_video(
    VideoSource& source, const FacePipeline& pipeline, const VideoTrackingOptions& options,
    const std::function<void(Track&&)>& on_track,
    const std::function<void(const Frame&, std::span<const FrameBox>)>& on_frame = {});

}  // namespace facemag::video
