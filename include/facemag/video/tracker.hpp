// Face tracks through a video: which detections of successive frames are the same face, and what
// each track keeps (its span, its best face by quality, its quality-weighted template).
//
// A detection continues a track when its box overlaps the track's last box (IoU >= min_iou), the
// track was seen within `continuity_seconds` and in the same shot (no cut() since), and the face
// is not surely someone else: its cosine to the track's template or to the track's last face is
// at least `overlap_gate`. Otherwise it joins the track whose template it resembles most (cosine
// >= reid_similarity) among the tracks seen within `max_gap_seconds`: a face that leaves and
// comes back within a few seconds, or is shown again after a cut, keeps its track. Overlap wins
// over resemblance (blurred faces of different people look alike to a network; consecutive boxes
// of one face overlap); the gate only refuses an overlap, it never takes a face in. The gate is
// low because blur takes a face's embedding away from its sharp self (MobileFaceNet: the same
// photo sharp and blurred with sigma 6 has median cosine 0.07), and it accepts the last face too
// because blur sets in gradually (sigma 4.5 to 6: cosine >= 0.45 in 99 % of photos).
// Assignment is greedy, best pair first, one detection per track per frame; ties go to the older
// track and the earlier detection, so the result depends on the detections alone. As in
// ByteTrack, a detection the detector is unsure of (score below min_start_score: an ear, a
// blurred bystander) only continues a track by overlap: it neither starts a track nor rejoins one
// by resemblance (unsure detections embed close to each other).
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <span>
#include <vector>

#include "facemag/pipeline.hpp"

namespace facemag::video {

// Intersection over union of two boxes (0 when either is empty).
double box_iou(const Box& a, const Box& b);

struct TrackerOptions {
  double min_iou = 0.3;
  double continuity_seconds = 1.0;
  // Cosine to a track's template that takes a face back after it left: the model's
  // same_person_threshold is the natural value.
  double reid_similarity = 0.3;
  // Cosine to a track's template or last face below which an overlapping face is someone else's
  // (it may start a track or join another by resemblance); -1: overlap alone decides. VideoJob
  // uses half the model's same_person_threshold (overlap_gate_of()).
  double overlap_gate = 0.15;
  double max_gap_seconds = 5.0;  // a track unseen for longer is closed
  double min_start_score = 0.9;  // detector probability
  // A face's quality is its embedding's (Embedding::quality: the magnitude for MagFace models,
  // else the magnitude times the crop's sharpness factor, face_quality.hpp).
};

// One face of one frame, as a track keeps it.
struct TrackedFace {
  std::int64_t frame = 0;
  double time = 0;
  Detection detection;
  float magnitude = 0;
  float quality = 0;  // Embedding::quality
  int shot = 0;       // shots begun before this face's frame (FaceTracker::cut() calls)
};

struct Track {
  int id = 0;  // 1, 2, ... in order of first appearance
  TrackedFace first, last, best;
  int detections = 0;  // frames in which the face was detected
  int returns = 0;     // times it came back (by resemblance) after leaving or after a cut
  double quality_sum = 0;
  // Sum of quality x unit embedding; template() divides by quality_sum.
  std::vector<double> weighted_sum;
  std::vector<float> last_unit;  // the last face's unit embedding (the overlap gate's)
  cv::Mat best_crop;  // the model's input crop of `best` (set by the caller, see update())

  double mean_quality() const { return detections ? quality_sum / detections : 0; }
  // The quality-weighted mean of the track's unit embeddings (not normalised).
  std::vector<float> template_vector() const;
};

class FaceTracker {
 public:
  explicit FaceTracker(TrackerOptions options) : options_(options) {}

  struct Assignment {
    int track_id = 0;       // 0: in no track (an unsure detection that continued none)
    bool new_best = false;  // this face is now its track's best: the caller may keep its crop
  };
  // The faces of one frame (frames in increasing order; frames without detection are simply not
  // given). Returns, for each face, the track it joined.
  std::vector<Assignment> update(std::int64_t frame, double time,
                                 std::span<const FaceRecord> faces);
  // A shot boundary before the next update(): the open tracks continue only by resemblance.
  void cut() { ++shot_; }
  int shot() const { return shot_; }
  // The track of an id returned by update() (still open).
  Track& open_track(int id);

  // Tracks unseen for more than max_gap_seconds before `time`, closed and removed, by id.
  std::vector<Track> take_closed(double time);
  // Every track still open, closed, by id.
  std::vector<Track> finish();

  // Quality of a face under these options.
  float quality_of(const FaceRecord& face) const;

 private:
  TrackerOptions options_;
  std::vector<Track> open_;  // by id
  int next_id_ = 1;
  int shot_ = 0;
};

}  // namespace facemag::video
