// The face tracker on synthetic detections, and the video source on clips written here.
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <atomic>
#include <cmath>
#include <fstream>

#include "facemag/error.hpp"
#include "facemag/video/shot_cut.hpp"
#include "facemag/video/tracker.hpp"
#include "facemag/video/video_source.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

using video::FaceTracker;
using video::TrackerOptions;

// A face at box (x, y, x + 100, y + 100) whose embedding points along axis `who` of 8 (tilted by
// `tilt` towards axis 7) with the given magnitude (also its quality) and detector score.
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
  r.embedding.quality = magnitude;
  return r;
}

TrackerOptions options() {
  TrackerOptions o;
  o.reid_similarity = 0.5;
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
  // Frame 1: a blurred face of person 0 in place, whose embedding now resembles person 1 more
  // (cosine 0.95) than its own track (0.31, above the gate 0.15), and an unsure detection (score
  // 0.5) far from both: the first stays with track 1 by overlap, the second starts nothing.
  auto blurred = face(5, 0, 0, 3, 0.7f);
  blurred.embedding.raw = {0.31f * 3, 0.95f * 3, 0, 0, 0, 0, 0, 0};
  const auto a =
      tracker.update(1, 0.1, std::vector<FaceRecord>{blurred, face(600, 300, 0, 10, 0.5f)});
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
  const auto a = tracker.update(1, 0.1, std::vector<FaceRecord>{face(40, 0, 0), face(10, 0, 0)});
  EXPECT_EQ(a[1].track_id, 1);  // IoU 0.82 against 0.43
  EXPECT_EQ(a[0].track_id, 2);
}

// The identity switch of issue 41: someone else stands where a tracked face was.
TEST(VideoTracker, AnOverlappingFaceBelowTheGateIsSomeoneElseAndStartsItsOwnTrack) {
  FaceTracker tracker(options());  // gate 0.15
  for (int f = 0; f < 3; ++f) tracker.update(f, f * 0.1, std::vector<FaceRecord>{face(0, 0, 0)});
  // Person 1 in the same place (cosine 0 to track 1): a new track, and it stays theirs while
  // track 1 is still within reach by overlap (the same box: equal IoU, the older track would win).
  for (int f = 3; f < 6; ++f) {
    const auto a = tracker.update(f, f * 0.1, std::vector<FaceRecord>{face(2, 0, 1)});
    EXPECT_EQ(a[0].track_id, 2) << f;
  }
  // Person 0 back in place within a second: their track again by overlap (track 2's gate refuses
  // them, track 1's lets them through).
  const auto back = tracker.update(6, 0.6, std::vector<FaceRecord>{face(0, 0, 0)});
  EXPECT_EQ(back[0].track_id, 1);
  auto tracks = tracker.finish();
  ASSERT_EQ(tracks.size(), 2u);
  EXPECT_EQ(tracks[0].detections, 4);
  EXPECT_EQ(tracks[0].returns, 0);
  EXPECT_EQ(tracks[1].detections, 3);
  EXPECT_EQ(tracks[1].first.frame, 3);
  EXPECT_EQ(tracks[1].last.frame, 5);

  // Gate -1: overlap alone decides, as before issue 41.
  auto o = options();
  o.overlap_gate = -1;
  FaceTracker blind(o);
  blind.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0)});
  EXPECT_EQ(blind.update(1, 0.1, std::vector<FaceRecord>{face(2, 0, 1)})[0].track_id, 1);
}

TEST(VideoTracker, AGradualChangePassesTheGateByTheLastFaceAnAbruptOneDoesNot) {
  auto o = options();
  o.overlap_gate = 0.5;
  // Three frames along axis 0, then turning by 0.6 rad a frame (cosine 0.83 to the last face):
  // the 2nd and 3rd turned faces are below the gate against the template (the mean of the faces
  // so far, lagging behind), not against the last face.
  FaceTracker gradual(o);
  for (int f = 0; f < 3; ++f) gradual.update(f, f * 0.1, std::vector<FaceRecord>{face(0, 0, 0)});
  const double expected_to_template[] = {0.83, 0.49, 0.11};  // before each joins
  for (int f = 3; f < 6; ++f) {
    const float tilt = 0.6f * static_cast<float>(f - 2);
    const auto tmpl = gradual.open_track(1).template_vector();
    const double to_template =
        (tmpl[0] * std::cos(tilt) + tmpl[7] * std::sin(tilt)) / std::hypot(tmpl[0], tmpl[7]);
    EXPECT_NEAR(to_template, expected_to_template[f - 3], 0.01) << f;
    const auto a =
        gradual.update(f, f * 0.1, std::vector<FaceRecord>{face(0, 0, 0, 10, 0.99f, tilt)});
    EXPECT_EQ(a[0].track_id, 1) << f;
  }
  // The same last face straight after the first three: cosine -0.23 to both.
  FaceTracker abrupt(o);
  for (int f = 0; f < 3; ++f) abrupt.update(f, f * 0.1, std::vector<FaceRecord>{face(0, 0, 0)});
  EXPECT_EQ(
      abrupt.update(3, 0.3, std::vector<FaceRecord>{face(0, 0, 0, 10, 0.99f, 1.8f)})[0].track_id,
      2);
}

TEST(VideoTracker, AfterACutTracksContinueOnlyByResemblance) {
  auto o = options();
  o.overlap_gate = -1;  // overlap alone would take anyone in
  FaceTracker tracker(o);
  tracker.update(0, 0.0, std::vector<FaceRecord>{face(0, 0, 0), face(300, 0, 1)});
  EXPECT_EQ(tracker.shot(), 0);
  tracker.cut();
  EXPECT_EQ(tracker.shot(), 1);
  // After the cut, in the same places: person 2 where person 0 was (a new track), person 1 where
  // it was (its track, by resemblance), an unsure detection where person 0 was (nothing).
  const auto a = tracker.update(
      1, 0.1, std::vector<FaceRecord>{face(0, 0, 2), face(300, 0, 1), face(5, 0, 0, 10, 0.5f)});
  EXPECT_EQ(a[0].track_id, 3);
  EXPECT_EQ(a[1].track_id, 2);
  EXPECT_EQ(a[2].track_id, 0);
  // Within the new shot overlap works again.
  const auto b = tracker.update(2, 0.2, std::vector<FaceRecord>{face(5, 0, 2)});
  EXPECT_EQ(b[0].track_id, 3);
  auto tracks = tracker.finish();
  ASSERT_EQ(tracks.size(), 3u);
  EXPECT_EQ(tracks[0].detections, 1);
  EXPECT_EQ(tracks[1].returns, 1);
  EXPECT_EQ(tracks[1].first.shot, 0);
  EXPECT_EQ(tracks[1].last.shot, 1);
  EXPECT_EQ(tracks[2].first.shot, 1);
  EXPECT_EQ(tracks[2].detections, 2);
}

// The embedder's quality (for a model that is not MagFace-trained, the magnitude times the
// crop's sharpness factor) ranks faces and weights the template, not the magnitude or the
// detector score.
TEST(VideoTracker, TheEmbeddingsQualityRanksFacesAndWeightsTheTemplate) {
  FaceTracker tracker(options());
  auto sharp = face(0, 0, 0, 5, 0.95f);  // quality 5
  auto blurred = face(0, 0, 0, 30, 0.999f, 0.5f);
  blurred.embedding.quality = 3;  // a blurred crop: high magnitude, low sharpness
  tracker.update(0, 0.0, std::vector<FaceRecord>{sharp});
  const auto a = tracker.update(1, 0.1, std::vector<FaceRecord>{blurred});
  EXPECT_FALSE(a[0].new_best);
  auto tracks = tracker.finish();
  ASSERT_EQ(tracks.size(), 1u);
  EXPECT_EQ(tracks[0].best.frame, 0);
  EXPECT_FLOAT_EQ(tracks[0].best.quality, 5);
  EXPECT_FLOAT_EQ(tracks[0].best.magnitude, 5);
  EXPECT_DOUBLE_EQ(tracks[0].quality_sum, 8);
  // Template: (5 * e0 + 3 * (cos 0.5 e0 + sin 0.5 e7)) / 8.
  const auto t = tracks[0].template_vector();
  EXPECT_NEAR(t[0], (5 + 3 * std::cos(0.5)) / 8, 1e-6);
  EXPECT_NEAR(t[7], 3 * std::sin(0.5) / 8, 1e-6);
}

// ---- shot cuts ----

cv::Mat uniform_frame(int grey) { return cv::Mat(90, 160, CV_8UC3, cv::Scalar::all(grey)); }

// A 160x90 frame cut from a smooth colour texture (seeded noise, blurred), shifted `shift` px.
cv::Mat textured_frame(unsigned seed, cv::Scalar low, cv::Scalar high, int shift = 0) {
  cv::Mat wide(90, 320, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(wide, cv::RNG::UNIFORM, low, high);
  cv::GaussianBlur(wide, wide, {0, 0}, 4);
  return wide(cv::Rect(shift, 0, 160, 90)).clone();
}

TEST(VideoShotCut, FrameChangeOfKnownFrames) {
  const auto same = video::frame_change(uniform_frame(100), uniform_frame(100));
  EXPECT_DOUBLE_EQ(same.colour, 0);
  EXPECT_DOUBLE_EQ(same.histogram, 0);
  // Grey 100 to 150: value +50, hue and saturation 0: colour 50 / 3; every pixel changes bin.
  const auto brighter = video::frame_change(uniform_frame(100), uniform_frame(150));
  EXPECT_NEAR(brighter.colour, 50.0 / 3, 1e-9);
  EXPECT_DOUBLE_EQ(brighter.histogram, 1.0);
  // Hue is an angle: OpenCV hue 2 and 178 are 4 apart, not 176.
  const auto hue_frame = [](int hue) {
    cv::Mat hsv(90, 160, CV_8UC3, cv::Scalar(hue, 255, 255)), bgr;
    cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
    return bgr;
  };
  EXPECT_NEAR(video::frame_change(hue_frame(2), hue_frame(178)).colour, 4.0 / 3, 1.0);
  try {
    video::frame_change(cv::Mat(), uniform_frame(1));
    ADD_FAILURE() << "no error";
  } catch (const InvalidInput& e) {
    EXPECT_STREQ(e.what(), "shot cut detection: expected an 8-bit BGR frame, got an empty one");
  }
}

TEST(VideoShotCut, ACutChangesColourAndHistogramAPanOrAnExposureChangeOnlyOne) {
  const cv::Scalar blue_low(120, 40, 0), blue_high(255, 140, 80);
  const cv::Scalar skin_low(60, 110, 170), skin_high(150, 190, 255);
  const auto a = textured_frame(1, blue_low, blue_high);
  const auto cut = video::frame_change(a, textured_frame(2, skin_low, skin_high));
  EXPECT_GE(cut.colour, 30);
  EXPECT_GE(cut.histogram, 0.15);
  // A pan by 20 % of the width: the pixels change, their histogram hardly.
  const auto pan = video::frame_change(a, textured_frame(1, blue_low, blue_high, 32));
  EXPECT_LT(pan.histogram, 0.15) << pan.colour;
  // Exposure: the histogram moves, the colour change stays below a cut's.
  const auto darker = video::frame_change(uniform_frame(100), uniform_frame(150));
  EXPECT_LT(darker.colour, 30);

  video::ShotCutDetector detector({});
  const std::vector<cv::Mat> frames{a,
                                    textured_frame(1, blue_low, blue_high, 4),
                                    textured_frame(1, blue_low, blue_high, 36),
                                    textured_frame(2, skin_low, skin_high),
                                    textured_frame(2, skin_low, skin_high, 2),
                                    a};
  std::vector<int> cuts;
  for (int i = 0; i < static_cast<int>(frames.size()); ++i) {
    if (detector.is_cut(frames[static_cast<std::size_t>(i)])) cuts.push_back(i);
  }
  EXPECT_EQ(cuts, (std::vector<int>{3, 5}));
  EXPECT_GE(detector.last_change().colour, 30);

  video::ShotCutDetector off({.enabled = false});
  for (const auto& f : frames) EXPECT_FALSE(off.is_cut(f));
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
