// The face tracker on synthetic detections, and the video source on clips written here.
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <atomic>
#include <cmath>
#include <fstream>

#include "facemag/error.hpp"
#include "facemag/video/tracker.hpp"
#include "facemag/video/video_source.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using video::FaceTracker;
using video::TrackerOptions;

// A face at box (x, y, x + 100, y + 100) whose embedding points along axis `who` of 8 (tilted by
// `tilt` towards axis 7) with the given magnitude and detector score.
FaceRecord face(float x, float y, int who, float magnitude = 10, float score = 0.99f,
                float tilt = 0) {
  FaceRecord r;
  r.detection.box = {x, y, x + 100, y + 100};
  r.detection.score = score;
  r.embedding.raw.assign(8, 0.0f);
  r.embedding.raw[static_cast<std::size_t>(who)] = std::cos(tilt);
  r.embedding.raw[7] += std::sin(tilt);
  for (auto& v : r.embedding.raw) v *= magnitude;
  r.embedding.magnitude = magnitude;
  return r;
}

TrackerOptions options(bool magnitude_is_quality = true) {
  TrackerOptions o;
  o.reid_similarity = 0.5;
  o.magnitude_is_quality = magnitude_is_quality;
  return o;
}

TEST(VideoTracker, BoxIouOfKnownBoxes) {
  EXPECT_DOUBLE_EQ(video::box_iou({0, 0, 10, 10}, {0, 0, 10, 10}), 1.0);
  EXPECT_DOUBLE_EQ(video::box_iou({0, 0, 10, 10}, {5, 0, 15, 10}), 50.0 / 150.0);
  EXPECT_DOUBLE_EQ(video::box_iou({0, 0, 10, 10}, {20, 20, 30, 30}), 0.0);
  EXPECT_DOUBLE_EQ(video::box_iou({0, 0, 0, 0}, {0, 0, 0, 0}), 0.0);
}

TEST(VideoTracker, OverlapContinuesATrackAndKeepsTheBestFaceAndTheWeightedTemplate) {
  FaceTracker tracker(options());
  // Two people side by side; the left one moves right by 10 px a frame, its quality varies.
  const float left_quality[] = {10, 25, 15, 5};
  std::vector<int> left_ids, right_ids;
  for (int f = 0; f < 4; ++f) {
    const std::vector<FaceRecord> faces{face(10.0f * f, 0, 0, left_quality[f], 0.99f, 0.1f * f),
                                        face(400, 0, 1, 20)};
    const auto a = tracker.update(f, f * 0.1, faces);
    ASSERT_EQ(a.size(), 2u);
    left_ids.push_back(a[0].track_id);
    right_ids.push_back(a[1].track_id);
    EXPECT_EQ(a[0].new_best, f == 0 || f == 1) << f;
  }
  EXPECT_EQ(left_ids, std::vector<int>(4, 1));
  EXPECT_EQ(right_ids, std::vector<int>(4, 2));
  EXPECT_TRUE(tracker.take_closed(0.3).empty());
  auto tracks = tracker.finish();
  ASSERT_EQ(tracks.size(), 2u);
  const auto& left = tracks[0];
  EXPECT_EQ(left.id, 1);
  EXPECT_EQ(left.detections, 4);
  EXPECT_EQ(left.returns, 0);
  EXPECT_EQ(left.first.frame, 0);
  EXPECT_EQ(left.last.frame, 3);
  EXPECT_EQ(left.best.frame, 1);
  EXPECT_FLOAT_EQ(left.best.quality, 25);
  EXPECT_DOUBLE_EQ(left.mean_quality(), (10 + 25 + 15 + 5) / 4.0);
  // Template: the magnitude-weighted mean of the unit embeddings, computed independently.
  std::vector<double> expected(8, 0.0);
  for (int f = 0; f < 4; ++f) {
    expected[0] += left_quality[f] * std::cos(0.1 * f);
    expected[7] += left_quality[f] * std::sin(0.1 * f);
  }
  const auto tmpl = left.template_vector();
  for (std::size_t k = 0; k < 8; ++k) EXPECT_NEAR(tmpl[k], expected[k] / 55.0, 1e-6) << k;
}

TEST(VideoTracker, AFaceThatComesBackWithinTheGapRejoinsByResemblance) {
  FaceTracker tracker(options());
  tracker.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0)});
  tracker.update(1, 0.1, std::vector<FaceRecord>{face(0, 0, 0)});
  // Gone for 3 s, back elsewhere (no overlap), slightly turned (cosine 0.8 to its template).
  const auto back = tracker.update(
      31, 3.1, std::vector<FaceRecord>{face(500, 300, 0, 10, 0.99f, std::acos(0.8f))});
  EXPECT_EQ(back[0].track_id, 1);
  // Someone else in the old place shortly after: resembles no track, so a new one even though
  // the box overlaps track 1's last (a second old one).
  const auto other = tracker.update(32, 3.2, std::vector<FaceRecord>{face(0, 0, 3)});
  EXPECT_EQ(other[0].track_id, 2);
  auto tracks = tracker.finish();
  ASSERT_EQ(tracks.size(), 2u);
  EXPECT_EQ(tracks[0].returns, 1);
  EXPECT_EQ(tracks[0].detections, 3);
  EXPECT_DOUBLE_EQ(tracks[0].last.time, 3.1);
}

TEST(VideoTracker, ATrackUnseenForLongerThanTheGapIsClosedAndNotRejoined) {
  FaceTracker tracker(options());
  tracker.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0)});
  EXPECT_TRUE(tracker.take_closed(5.0).empty());  // exactly max_gap: still open
  const auto closed = tracker.take_closed(5.01);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].id, 1);
  const auto again = tracker.update(51, 5.1, std::vector<FaceRecord>{face(0, 0, 0)});
  EXPECT_EQ(again[0].track_id, 2);
  // Without take_closed, a track past the gap is not matched either.
  const auto late = tracker.update(200, 20.0, std::vector<FaceRecord>{face(0, 0, 0)});
  EXPECT_EQ(late[0].track_id, 3);
}

TEST(VideoTracker, OverlapWinsOverResemblanceAndUnsureDetectionsOnlyContinue) {
  FaceTracker tracker(options());
  tracker.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0), face(300, 0, 1)});
  // Frame 1: a blurred face of person 0 in place (its embedding now resembles person 1) and an
  // unsure detection (score 0.5) far from both: the first stays with track 1 by overlap, the
  // second starts nothing.
  const auto a = tracker.update(
      1, 0.1, std::vector<FaceRecord>{face(5, 0, 1, 3, 0.7f), face(600, 300, 0, 10, 0.5f)});
  EXPECT_EQ(a[0].track_id, 1);
  EXPECT_EQ(a[1].track_id, 0);
  auto tracks = tracker.finish();
  ASSERT_EQ(tracks.size(), 2u);
  EXPECT_EQ(tracks[0].detections, 2);
  EXPECT_EQ(tracks[1].detections, 1);
}

TEST(VideoTracker, TwoFacesOverlappingOneTrackTheCloserOneWins) {
  FaceTracker tracker(options());
  tracker.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0)});
  const auto a = tracker.update(1, 0.1, std::vector<FaceRecord>{face(40, 0, 2), face(10, 0, 2)});
  EXPECT_EQ(a[1].track_id, 1);  // IoU 0.82 against 0.43
  EXPECT_EQ(a[0].track_id, 2);
}

TEST(VideoTracker, WithoutMagFaceTheDetectorScoreIsTheQuality) {
  FaceTracker tracker(options(/*magnitude_is_quality=*/false));
  tracker.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0, 30, 0.95f)});
  const auto a = tracker.update(1, 0.1, std::vector<FaceRecord>{face(0, 0, 0, 5, 0.999f)});
  EXPECT_TRUE(a[0].new_best);
  auto tracks = tracker.finish();
  EXPECT_EQ(tracks[0].best.frame, 1);
  EXPECT_FLOAT_EQ(tracks[0].best.quality, 0.999f);
  EXPECT_FLOAT_EQ(tracks[0].best.magnitude, 5);
}

// ---- the video source ----

// A 10 frames/s MJPG clip of `frames` 64x48 frames, frame i filled with grey level 10 + 4 i.
std::filesystem::path write_grey_clip(const test::TempDir& tmp, int frames) {
  const auto path = tmp / "grey.avi";
  cv::VideoWriter writer(path.string(), cv::CAP_FFMPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'),
                         10, {64, 48});
  if (!writer.isOpened()) return {};
  for (int i = 0; i < frames; ++i)
    writer.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar::all(10 + 4 * i)));
  writer.release();
  return path;
}

#define REQUIRE_CLIP(path) \
  if ((path).empty()) GTEST_SKIP() << "this OpenCV cannot write MJPG through FFmpeg"

TEST(VideoSource, DecodesEveryFrameInOrderThroughASmallQueue) {
  test::TempDir tmp;
  const auto clip = write_grey_clip(tmp, 40);
  REQUIRE_CLIP(clip);
  video::VideoSource source(clip.string(), /*queue_frames=*/2);
  EXPECT_EQ(source.info().announced_frames, 40);
  EXPECT_DOUBLE_EQ(source.info().fps, 10.0);
  EXPECT_EQ(source.info().width, 64);
  EXPECT_EQ(source.info().height, 48);
  int n = 0;
  while (auto frame = source.next()) {
    EXPECT_EQ(frame->index, n);
    EXPECT_DOUBLE_EQ(frame->time, n / 10.0);
    EXPECT_NEAR(cv::mean(frame->bgr)[0], 10 + 4 * n, 2.0) << n;  // JPEG rounding
    ++n;
  }
  EXPECT_EQ(n, 40);
  EXPECT_EQ(source.end_note(), "");
}

TEST(VideoSource, ATruncatedFileGivesTheFramesBeforeTheCutAndSaysWhereItStopped) {
  test::TempDir tmp;
  const auto clip = write_grey_clip(tmp, 40);
  REQUIRE_CLIP(clip);
  const auto bytes = test::read_file(clip);
  const auto cut = tmp / "cut.avi";
  test::write_file(cut, bytes.substr(0, bytes.size() / 2));
  video::VideoSource source(cut.string());
  int n = 0;
  while (source.next()) ++n;
  EXPECT_GT(n, 5);
  EXPECT_LT(n, 30);
  const auto note = source.end_note();
  EXPECT_NE(note.find("cut.avi: decoding stopped at frame " + std::to_string(n)), std::string::npos)
      << note;
  EXPECT_NE(note.find("of the 40 the file announces"), std::string::npos) << note;
}

TEST(VideoSource, StopsWhenAskedAndSaysSo) {
  test::TempDir tmp;
  const auto clip = write_grey_clip(tmp, 40);
  REQUIRE_CLIP(clip);
  std::atomic<bool> stop{true};
  video::VideoSource source(clip.string(), 1, &stop);
  int n = 0;
  while (source.next()) ++n;
  EXPECT_LE(n, 2);  // the first frame, read on opening, and at most one in flight
  EXPECT_NE(source.end_note().find("stopped on request"), std::string::npos);
}

TEST(VideoSource, WhatIsNoVideoIsOneClearError) {
  test::TempDir tmp;
  test::write_file(tmp / "text.avi", std::string(4000, 'x'));
  const auto message = [](const std::string& input) {
    try {
      video::VideoSource source(input);
    } catch (const InvalidInput& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message((tmp / "text.avi").string()),
            (tmp / "text.avi").string() + ": not a video OpenCV can open (FFmpeg back end)");
  EXPECT_EQ(message((tmp / "missing.mp4").string()),
            (tmp / "missing.mp4").string() + ": no such file");
  // A still photo is not taken for a one-frame video.
  cv::imwrite((tmp / "still.png").string(), cv::Mat(48, 64, CV_8UC3, cv::Scalar::all(128)));
  EXPECT_EQ(message((tmp / "still.png").string()),
            (tmp / "still.png").string() +
                ": a still image, not a video (photos go to facemag detect, embed or quality)");
  // Nothing listens on port 9 of the loopback: refused at once.
  EXPECT_EQ(message("rtsp://127.0.0.1:9/none"),
            "rtsp://127.0.0.1:9/none: not a video OpenCV can open (FFmpeg back end)");
}

}  // namespace
}  // namespace facemag
