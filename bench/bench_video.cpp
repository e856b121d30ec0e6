// Video throughput: frames/s of `facemag video`'s engine (decoding on its own thread, frames
// batched through MTCNN and the embedder, tracking) on a synthetic 720p clip, against the way
// the peers' examples run a video (facenet-pytorch's tracking notebook, face_recognition's
// webcam examples): read a frame, detect and embed that one frame, repeat. Both use facemag's own
// detector and model, in the same run, so the ratio is what the engine's structure buys.
//
//   build/bench/facemag_video_bench [--frames N] [--repeat R] [--height H] [--frame-batch B]
//                                   [--weights W] [--mtcnn DIR]
//   (defaults: 150 frames of 1280x720 (H = 720, width 16:9), 3 repetitions, auto frame batch,
//   MobileFaceNet 068.ckpt and MTCNN from ../shared)
//
// Prints one JSON line per detection interval (--every 1 and 5): median frames/s of each, after
// one untimed pass (LibTorch and oneDNN set up their kernels for each new shape on first use).
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "facemag/embed/embedder.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"
#include "facemag/video/face_video.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// 1280x720 at 25 frames/s: three people (300 px faces photos) drifting right 4 px a frame.
fs::path write_clip(const fs::path& dir, const fs::path& casia, int frames, int height) {
  const int width = height * 16 / 9, face = height * 300 / 720, step = std::max(1, height / 180);
  std::vector<cv::Mat> people;
  for (const char* name : {"bruce/001.jpg", "neil/002.jpg", "pam/003.jpg"}) {
    cv::Mat photo = cv::imread((casia / name).string()), big;
    if (photo.empty()) throw std::runtime_error((casia / name).string() + ": cannot read");
    cv::resize(photo, big, {face, face});
    people.push_back(big);
  }
  const auto path = dir / "clip.avi";
  cv::VideoWriter writer(path.string(), cv::CAP_FFMPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'),
                         25, {width, height});
  if (!writer.isOpened()) throw std::runtime_error("cannot write " + path.string());
  for (int f = 0; f < frames; ++f) {
    cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(70, 90, 110));
    for (std::size_t p = 0; p < people.size(); ++p) {
      const int slot = static_cast<int>(p);
      const int x = (width / 32 + width * 21 / 64 * slot + step * f) % (width - face);
      people[p].copyTo(canvas(cv::Rect(x, height / 12 + height / 6 * slot, face, face)));
    }
    writer.write(canvas);
  }
  return path;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path shared = FACEMAG_SHARED_DIR;
  int frames = 150, repeat = 3, height = 720;
  int frame_batch = facemag::video::VideoTrackingOptions{}.frame_batch;
  fs::path weights = shared / "weights/mobilefacenet/068.ckpt", mtcnn = shared / "weights/mtcnn";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--frames")
      frames = std::stoi(argv[i + 1]);
    else if (a == "--repeat")
      repeat = std::stoi(argv[i + 1]);
    else if (a == "--frame-batch")
      frame_batch = std::stoi(argv[i + 1]);
    else if (a == "--height")
      height = std::stoi(argv[i + 1]);
    else if (a == "--weights")
      weights = argv[i + 1];
    else if (a == "--mtcnn")
      mtcnn = argv[i + 1];
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  const int threads = facemag::configure_runtime(0);
  const auto embedder =
      facemag::Embedder::load(facemag::builtin_manifest("mobilefacenet"), weights);
  const auto detector = facemag::MtcnnDetector::load(mtcnn);
  const facemag::FacePipeline pipeline(detector, embedder);
  const auto dir = fs::temp_directory_path() / ("facemag-video-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto clip = write_clip(dir, shared / "data/faces-casia", frames, height);

  {
    facemag::video::VideoSource warm_up(clip.string());
    facemag::video::track_video(warm_up, pipeline, {}, [](facemag::video::Track&&) {});
  }
  for (const int every : {1, 5}) {
    std::vector<double> engine, per_frame;
    std::int64_t faces = 0;
    for (int r = 0; r < repeat; ++r) {
      auto t0 = Clock::now();
      facemag::video::VideoSource source(clip.string());
      facemag::video::VideoTrackingOptions options;
      options.every = every;
      options.frame_batch = frame_batch;
      options.frame_batch = frame_batch;
      const auto summary =
          facemag::video::track_video(source, pipeline, options, [](facemag::video::Track&&) {});
      engine.push_back(summary.frames / std::chrono::duration<double>(Clock::now() - t0).count());
      faces = summary.faces;

      t0 = Clock::now();
      cv::VideoCapture capture(clip.string(), cv::CAP_FFMPEG);
      cv::Mat frame;
      std::int64_t n = 0;
      while (capture.read(frame)) {
        if (n++ % every == 0) pipeline.process(frame);
      }
      per_frame.push_back(n / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::cout << nlohmann::json{{"clip", std::to_string(height * 16 / 9) + "x" +
                                             std::to_string(height) + ", " +
                                             std::to_string(frames) + " frames"},
                                {"every", every},
                                {"faces", faces},
                                {"frame_batch", frame_batch > 0 ? frame_batch
                                                                : facemag::video::auto_frame_batch(
                                                                      height * 16 / 9, height)},
                                {"frame_batch", frame_batch > 0 ? frame_batch
                                                                : facemag::video::auto_frame_batch(
                                                                      height * 16 / 9, height)},
                                {"threads", threads},
                                {"facemag_video_fps", median(engine)},
                                {"per_frame_loop_fps", median(per_frame)},
                                {"ratio", median(engine) / median(per_frame)}}
              << std::endl;
  }
  fs::remove_all(dir);
  return 0;
}
