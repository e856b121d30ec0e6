// A video run as every front end makes it (`facemag video`, Python, the server): faces tracked
// through a video (track_video), and per track its best face as a PNG, a JSON line in
// tracks.jsonl, its template as a row of templates.npy and, with a gallery, who it is; optionally
// an annotated copy of the video.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/video/face_video.hpp"
#include "facemag/video/tracker.hpp"
#include "facemag/video/video_source.hpp"

namespace facemag::video {

// The overlap gate for a model: half its same_person_threshold t. Unrelated faces embed near
// orthogonal (cosine around 0), t sits in their upper tail; t / 2, halfway, is where a face is
// surely someone else's rather than a degraded view of the track's person. MobileFaceNet (t 0.2):
// 0.1. Measured on 150 lfw-half people (docs/video.md): 80 % of pairs of two people's sharp
// photos fall below it, and of a photo and the same photo blurred 0.7 % at sigma 3, 9 % at sigma
// 4.5, 72 % at sigma 6 (the last face still passes a gradual blur).
double overlap_gate_of(const ModelManifest& manifest);

struct VideoJobOptions {
  std::filesystem::path out_dir;  // created; see VideoJob
  bool overwrite = false;         // replace the output of an earlier run in out_dir
  int every = 1;                  // detect on every N-th frame (at least 1)
  int frame_batch = 0;            // detection frames per batch; 0: auto_frame_batch()
  double max_gap_seconds = 5.0;   // see TrackerOptions
  double min_iou = 0.3;
  double min_start_score = 0.9;
  // Cosine to a track's template that takes a face back to it; default: the model's
  // same_person_threshold.
  std::optional<double> reid_similarity;
  // Cosine to a track's template or last face that an overlapping face needs to continue it;
  // default: overlap_gate_of() the model.
  std::optional<double> overlap_gate;
  ShotCutOptions cuts;         // shot boundaries; cuts.enabled = false: none
  int min_frames = 1;          // tracks detected on fewer frames are left out (counted only)
  std::filesystem::path draw;  // an annotated copy (.mp4, .m4v, .mov, .mkv, .avi); empty: none
  int top_k = 3;               // gallery candidates per track (at least 1)
  // Set it (e.g. StopOnSignal::flag()) to end decoding early; the tracks so far are written.
  const std::atomic<bool>* stop = nullptr;
};

// One track as written: the track (best_crop set), the file name of its best crop in out_dir
// ("track-NNNN.png"), its row in templates.npy and its template (quality-weighted mean of unit
// embeddings, not normalised), and with a gallery who it is (decided by gallery::identify on the
// template, with the best face's magnitude as the quality).
struct VideoTrackRecord {
  Track track;
  std::string crop;
  int template_row = 0;
  std::vector<float> template_vector;
  std::string quality_source = "magnitude";  // what the qualities measure (face_quality.hpp)
  std::optional<gallery::Identification> identity;
};

// The record as its line in tracks.jsonl (one JSON object, no newline): track, first and last
// {frame, time, shot (cuts before it)},
// detections, rejoins, mean_quality, best {frame, time, quality, magnitude, score, box, crop},
// quality_source ("magnitude" or "magnitude*sharpness"), template_row and, with a gallery, identity
// {candidates [{person, similarity}], threshold, decision, person (for a match)}.
std::string to_json_line(const VideoTrackRecord& record);

// The record as a terminal shows it in place of its JSON line: "track   3      1.20 s -     4.80 s
//     37 frames  best at 2.40 s (q 0.812)", with a gallery "  -> match NAME" (or the decision).
std::string to_text_line(const VideoTrackRecord& record);

struct VideoJobSummary {
  VideoRunSummary run;  // frames, faces, tracks; end_note when decoding ended early
  int written = 0;      // tracks written
  int too_short = 0;    // tracks left out by min_frames
  double seconds = 0;   // tracking time (wall clock)
};

// The run in one sentence: "INPUT: F frames (D through detection, N faces, C shot cut(s)) in S s
// (R frames/s); T track(s) written to OUT_DIR", with " (K shorter than --min-frames M left out)"
// when some were.
std::string describe(const VideoJobSummary& summary, const std::string& input,
                     const std::string& out_dir, int min_frames);

// The steps are apart so that a front end can show the video's size before the run.
class VideoJob {
 public:
  // Opens `input` (see VideoSource), then prepares out_dir: created; one holding files already is
  // refused unless `overwrite`, which removes only what an earlier run wrote (tracks.jsonl,
  // templates.npy, track-*.png); then opens the draw copy and tracks.jsonl. InvalidInput naming
  // the file or folder at each step. `pipeline` and `gallery` (optional: identities) must outlive
  // the job; the gallery's rules are gallery::decision_rules of its model. Notes on stderr (spdlog)
  // when the model is not MagFace-trained and when the source reports no frame rate.
  VideoJob(const std::string& input, const FacePipeline& pipeline, const gallery::Gallery* gallery,
           const VideoJobOptions& options);
  ~VideoJob();
  VideoJob(const VideoJob&) = delete;
  VideoJob& operator=(const VideoJob&) = delete;

  const VideoInfo& info() const;

  // Runs the video to its end (once). Each track of at least min_frames is written (crop, then its
  // line in tracks.jsonl, flushed) and handed to on_track as it closes; on_frame (optional) gets
  // every frame with its boxes. At the end templates.npy (written tracks x dimension, float32;
  // none without tracks) is written and the draw copy closed.
  VideoJobSummary run(
      const std::function<void(const VideoTrackRecord&)>& on_track,
      const std::function<void(const Frame&, std::span<const FrameBox>)>& on_frame = {});

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace facemag::video
