#include "facemag/video/tracker.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "facemag/error.hpp"

namespace facemag::video {

double box_iou(const Box& a, const Box& b) {
  const double w = std::max(0.0f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
  const double h = std::max(0.0f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
  const double inter = w * h;
  const double uni =
      static_cast<double>(std::max(0.0f, a.area())) + std::max(0.0f, b.area()) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::vector<float> Track::template_vector() const {
  std::vector<float> out(weighted_sum.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = quality_sum > 0 ? static_cast<float>(weighted_sum[i] / quality_sum) : 0.0f;
  return out;
}

float FaceTracker::quality_of(const FaceRecord& face) const { return face.embedding.quality; }

namespace {

double cosine(const std::vector<float>& unit, const std::vector<double>& v) {
  double dot = 0, norm = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    dot += unit[i] * v[i];
    norm += v[i] * v[i];
  }
  return norm > 0 ? dot / std::sqrt(norm) : -1.0;
}

// Whether `unit` (a face overlapping `track`) may be the track's face: its cosine to the template
// (`to_template`) or to the last face reaches the gate. A track without appearance (zero
// qualities) lets overlap decide.
bool passes_gate_of(const std::vector<float>& unit, const Track& track, double to_template,
                    double gate) {
  if (to_template >= gate) return true;
  double norm = 0;
  for (const double v : track.weighted_sum) norm += v * v;
  if (norm == 0) return true;
  double to_last = 0;
  for (std::size_t k = 0; k < track.last_unit.size() && k < unit.size(); ++k)
    to_last += static_cast<double>(unit[k]) * track.last_unit[k];
  return to_last >= gate;
}

struct Candidate {
  double score;  // 1 + IoU for overlap, the cosine for resemblance: overlap always ranks first
  std::size_t track;
  std::size_t face;
  bool by_overlap;
};

}  // namespace

std::vector<FaceTracker::Assignment> FaceTracker::update(std::int64_t frame, double time,
                                                         std::span<const FaceRecord> faces) {
  if (faces.empty()) return {};
  std::vector<std::vector<float>> units;
  units.reserve(faces.size());
  for (const auto& f : faces) units.push_back(f.embedding.normalized());

  std::vector<Candidate> candidates;
  for (std::size_t t = 0; t < open_.size(); ++t) {
    const Track& track = open_[t];
    const double gap = time - track.last.time;
    if (gap > options_.max_gap_seconds) continue;
    if (!track.weighted_sum.empty() && track.weighted_sum.size() != units.front().size())
      throw InvalidInput("face tracker: embeddings of " + std::to_string(units.front().size()) +
                         " values after " + std::to_string(track.weighted_sum.size()));
    for (std::size_t i = 0; i < faces.size(); ++i) {
      const double similarity = cosine(units[i], track.weighted_sum);
      const double overlap = box_iou(faces[i].detection.box, track.last.detection.box);
      if (track.last.shot == shot_ && gap <= options_.continuity_seconds &&
          overlap >= options_.min_iou &&
          passes_gate_of(units[i], track, similarity, options_.overlap_gate)) {
        candidates.push_back({1.0 + overlap, t, i, true});
        continue;
      }
      if (faces[i].detection.score < options_.min_start_score) continue;
      if (similarity >= options_.reid_similarity) candidates.push_back({similarity, t, i, false});
    }
  }
  // Best pair first; ties: the older track, then the earlier face.
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(b.score, a.track, a.face) < std::tie(a.score, b.track, b.face);
  });

  std::vector<Assignment> out(faces.size());
  std::vector<char> face_taken(faces.size(), 0), track_taken(open_.size(), 0);
  const auto join = [&](Track& track, std::size_t i) {
    const auto& f = faces[i];
    const TrackedFace seen{frame, time, f.detection, f.embedding.magnitude, quality_of(f), shot_};
    if (track.detections == 0) {
      track.first = track.best = seen;
      track.weighted_sum.assign(units[i].size(), 0.0);
    }
    const bool new_best = track.detections == 0 || seen.quality > track.best.quality;
    if (new_best) track.best = seen;
    track.last = seen;
    track.last_unit = units[i];
    ++track.detections;
    track.quality_sum += seen.quality;
    for (std::size_t k = 0; k < units[i].size(); ++k)
      track.weighted_sum[k] += static_cast<double>(seen.quality) * units[i][k];
    out[i] = {track.id, new_best};
  };
  for (const auto& c : candidates) {
    if (face_taken[c.face] || track_taken[c.track]) continue;
    face_taken[c.face] = track_taken[c.track] = 1;
    if (!c.by_overlap) ++open_[c.track].returns;
    join(open_[c.track], c.face);
  }
  for (std::size_t i = 0; i < faces.size(); ++i) {
    if (face_taken[i] || faces[i].detection.score < options_.min_start_score) continue;
    Track track;
    track.id = next_id_++;
    open_.push_back(std::move(track));
    join(open_.back(), i);
  }
  return out;
}

Track& FaceTracker::open_track(int id) {
  for (auto& t : open_) {
    if (t.id == id) return t;
  }
  throw InvalidInput("face tracker: no open track " + std::to_string(id));
}

std::vector<Track> FaceTracker::take_closed(double time) {
  std::vector<Track> closed;
  std::vector<Track> still_open;
  for (auto& t : open_) {
    (time - t.last.time > options_.max_gap_seconds ? closed : still_open).push_back(std::move(t));
  }
  open_ = std::move(still_open);
  return closed;
}

std::vector<Track> FaceTracker::finish() { return std::exchange(open_, {}); }

}  // namespace facemag::video
