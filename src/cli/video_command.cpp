// `facemag video`: faces tracked through a video file, stream or camera; per track its span, its
// best face by quality (PNG), its quality-weighted template, and with --gallery who it is.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/video/face_video.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

struct VideoOptions {
  std::string input;
  std::string out_dir;
  bool overwrite = false;
  int every = 1;
  int frame_batch = 0;  // auto
  double max_gap = 5.0;
  double min_iou = 0.3;
  double min_score = 0.9;
  double reid_threshold = -2;  // default: the model's same-person threshold
  int min_frames = 1;
  std::string draw;
  std::string gallery;
  int top_k = 3;
  ModelOptions model;
  CLI::Option* arch_option = nullptr;
};

// The output folder: created; one holding files already is refused unless --overwrite, which
// removes only what an earlier run wrote (tracks.jsonl, templates.npy, track-*.png).
void prepare_out_dir(const std::filesystem::path& dir, bool overwrite) {
  namespace fs = std::filesystem;
  if (fs::exists(dir) && !fs::is_directory(dir))
    throw InvalidInput(dir.string() + ": exists and is not a folder");
  fs::create_directories(dir);
  std::vector<fs::path> ours, others;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    const bool earlier_output = name == "tracks.jsonl" || name == "templates.npy" ||
                                (name.rfind("track-", 0) == 0 && e.path().extension() == ".png");
    (earlier_output ? ours : others).push_back(e.path());
  }
  if (!ours.empty() && !overwrite)
    throw InvalidInput(dir.string() + ": holds the output of an earlier run (" +
                       ours.front().filename().string() +
                       ", ...): give --overwrite or another --out");
  for (const auto& p : ours) fs::remove(p);
}

// --draw: an annotated copy, MJPG in .avi, MPEG-4 in .mp4/.m4v/.mov/.mkv.
cv::VideoWriter open_draw_writer(const std::string& path, const video::VideoInfo& info) {
  auto ext = std::filesystem::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int fourcc = 0;
  if (ext == ".avi") {
    fourcc = cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
  } else if (ext == ".mp4" || ext == ".m4v" || ext == ".mov" || ext == ".mkv") {
    fourcc = cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  } else {
    throw InvalidInput("--draw " + path + ": give a .mp4, .mkv, .mov or .avi file");
  }
  cv::VideoWriter writer(path, cv::CAP_FFMPEG, fourcc, info.fps, {info.width, info.height});
  if (!writer.isOpened()) throw InvalidInput("--draw " + path + ": cannot write a video there");
  return writer;
}

void draw_boxes(cv::Mat& image, std::span<const video::FrameBox> boxes, bool magnitude_quality) {
  static const cv::Scalar kColours[] = {{0, 200, 0},   {0, 128, 255},  {255, 64, 0},
                                        {200, 0, 200}, {0, 220, 220},  {255, 200, 0},
                                        {64, 64, 255}, {160, 160, 160}};
  const int thickness = std::max(1, image.cols / 640);
  for (const auto& b : boxes) {
    const auto& colour = kColours[static_cast<std::size_t>(b.track_id) % std::size(kColours)];
    const auto& box = b.detection.box;
    cv::rectangle(image, cv::Point2f(box.x1, box.y1), cv::Point2f(box.x2, box.y2), colour,
                  thickness);
    char label[48];
    std::snprintf(label, sizeof label, magnitude_quality ? "#%d q %.1f" : "#%d q %.3f", b.track_id,
                  b.quality);
    cv::putText(image, label, cv::Point2f(box.x1, std::max(12.0f, box.y1 - 4)),
                cv::FONT_HERSHEY_SIMPLEX, 0.5 * thickness, colour, thickness);
  }
}

nlohmann::json face_json(const video::TrackedFace& f) {
  return {{"frame", f.frame}, {"time", f.time}};
}

std::string track_line(const nlohmann::json& t) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "track %3d  %8.2f s - %8.2f s  %5d frames  best at %.2f s (q %.3f)",
                t["track"].get<int>(), t["first"]["time"].get<double>(),
                t["last"]["time"].get<double>(), t["detections"].get<int>(),
                t["best"]["time"].get<double>(), t["best"]["quality"].get<double>());
  std::string out = buf;
  if (t.contains("identity"))
    out +=
        "  -> " + t["identity"]["decision"].get<std::string>() +
        (t["identity"].contains("person") ? " " + t["identity"]["person"].get<std::string>() : "");
  return out;
}

int run_video(VideoOptions opt) {
  if (opt.every < 1) throw InvalidInput("--every must be at least 1");
  if (opt.frame_batch < 0) throw InvalidInput("--frame-batch must be at least 1 (0: auto)");
  if (opt.top_k < 1) throw InvalidInput("--top-k must be at least 1");
  opt.model.keep = "center";  // unused here: every face of every frame is tracked
  const std::filesystem::path out_dir = opt.out_dir;

  auto loaded = load_model_with_gallery(opt.gallery, opt.model,
                                        opt.arch_option && opt.arch_option->count() > 0);
  const Embedder& embedder = loaded.embedder();
  gallery::Gallery* const with_gallery = loaded.gallery();
  const ModelManifest& manifest = embedder.manifest();
  const MtcnnDetector detector = load_detector(loaded.model.detector);
  const FacePipeline pipeline(detector, embedder, to_mtcnn_options(loaded.model.detector));

  video::VideoTrackingOptions tracking;
  tracking.every = opt.every;
  tracking.frame_batch = opt.frame_batch;
  tracking.tracker.min_iou = opt.min_iou;
  tracking.tracker.min_start_score = opt.min_score;
  tracking.tracker.max_gap_seconds = opt.max_gap;
  tracking.tracker.reid_similarity =
      opt.reid_threshold > -2 ? opt.reid_threshold : manifest.same_person_threshold;
  tracking.tracker.magnitude_is_quality = manifest.magnitude_is_quality;
  const char* quality_source = manifest.magnitude_is_quality ? "magnitude" : "detector score";
  if (!manifest.magnitude_is_quality)
    spdlog::info(
        "{} is not MagFace-trained: the best face of a track is the one with the "
        "highest detector score",
        manifest.name);

  const StopOnSignal stop_on_signal;
  auto& stop_requested = StopOnSignal::flag();
  video::VideoSource source(opt.input, video::VideoSource::kDefaultQueue, &stop_requested);
  const auto& info = source.info();
  if (!info.fps_reported)
    spdlog::info("{}: no frame rate reported; times assume {} frames/s", opt.input, info.fps);
  prepare_out_dir(out_dir, opt.overwrite);
  std::optional<cv::VideoWriter> drawn;
  if (!opt.draw.empty()) drawn.emplace(open_draw_writer(opt.draw, info));

  std::ofstream tracks_file(out_dir / "tracks.jsonl");
  if (!tracks_file) throw InvalidInput((out_dir / "tracks.jsonl").string() + ": cannot write");
  const bool table = isatty(STDOUT_FILENO);
  const double identify_threshold =
      with_gallery ? with_gallery->model().same_person_threshold : 0.0;
  const auto started = std::chrono::steady_clock::now();
  ProgressBar progress(static_cast<std::size_t>(info.announced_frames), "frames");
  std::vector<float> templates;
  int written = 0, too_short = 0;
  const auto on_track = [&](video::Track&& t) {
    if (t.detections < opt.min_frames) {
      ++too_short;
      return;
    }
    char crop_name[32];
    std::snprintf(crop_name, sizeof crop_name, "track-%04d.png", t.id);
    if (!cv::imwrite((out_dir / crop_name).string(), t.best_crop))
      throw InvalidInput((out_dir / crop_name).string() + ": cannot write image");
    const auto tmpl = t.template_vector();
    nlohmann::json rec{{"track", t.id},
                       {"first", face_json(t.first)},
                       {"last", face_json(t.last)},
                       {"detections", t.detections},
                       {"rejoins", t.returns},
                       {"mean_quality", t.mean_quality()},
                       {"best",
                        {{"frame", t.best.frame},
                         {"time", t.best.time},
                         {"quality", t.best.quality},
                         {"magnitude", t.best.magnitude},
                         {"score", t.best.detection.score},
                         {"box", box_json(t.best.detection)},
                         {"crop", crop_name}}},
                       {"quality_source", quality_source},
                       {"template_row", written}};
    if (with_gallery) {
      const auto candidates = with_gallery->search(tmpl, opt.top_k);
      nlohmann::json list = nlohmann::json::array();
      for (const auto& c : candidates)
        list.push_back({{"person", c.person}, {"similarity", c.template_similarity}});
      nlohmann::json identity{{"candidates", list}, {"threshold", identify_threshold}};
      if (!candidates.empty() && candidates[0].template_similarity >= identify_threshold) {
        identity["decision"] = "match";
        identity["person"] = candidates[0].person;
      } else {
        identity["decision"] = "unknown";
      }
      rec["identity"] = identity;
    }
    templates.insert(templates.end(), tmpl.begin(), tmpl.end());
    ++written;
    tracks_file << rec << "\n";
    tracks_file.flush();  // a stream stopped by a kill keeps every closed track
    if (table) {
      progress.clear();
      std::cout << track_line(rec) << "\n";
    } else {
      std::cout << rec << "\n";
    }
    std::cout.flush();
  };

  const auto on_frame = [&](const video::Frame& frame, std::span<const video::FrameBox> boxes) {
    progress.advance();
    if (!drawn) return;
    cv::Mat image = frame.bgr.clone();
    draw_boxes(image, boxes, manifest.magnitude_is_quality);
    drawn->write(image);
  };
  const auto summary = video::track_video(source, pipeline, tracking, on_track, on_frame);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!templates.empty()) {
    const auto rows = static_cast<std::int64_t>(written);
    io::write_npy(out_dir / "templates.npy",
                  torch::from_blob(templates.data(),
                                   {rows, static_cast<std::int64_t>(templates.size() / rows)},
                                   torch::kFloat32));
  }
  if (drawn) drawn->release();
  spdlog::info(
      "{}: {} frames ({} through detection, {} faces) in {:.1f} s ({:.1f} frames/s); {} "
      "track(s) written to {}{}",
      opt.input, summary.frames, summary.detected_frames, summary.faces, seconds,
      seconds > 0 ? summary.frames / seconds : 0.0, written, out_dir.string(),
      too_short
          ? fmt::format(" ({} shorter than --min-frames {} left out)", too_short, opt.min_frames)
          : std::string());
  if (!summary.end_note.empty()) {
    std::cerr << "facemag: " << summary.end_note << "\n";
    return stop_requested ? kExitOk : kExitSomeInputsFailed;
  }
  return kExitOk;
}

}  // namespace

Runner add_video_command(CLI::App& app) {
  auto opt = std::make_shared<VideoOptions>();
  auto* cmd = app.add_subcommand(
      "video", "Track faces through a video; keep each person's best frame by quality");
  cmd->add_option("input", opt->input,
                  "Video file, stream URL (rtsp://, http://...) or camera index")
      ->required();
  cmd->add_option("--out", opt->out_dir,
                  "Folder for tracks.jsonl, templates.npy and each track's best face "
                  "(track-NNNN.png)")
      ->required();
  cmd->add_flag("--overwrite", opt->overwrite, "Replace the output of an earlier run in --out");
  cmd->add_option("--every", opt->every, "Detect faces on every N-th frame")->capture_default_str();
  cmd->add_option("--frame-batch", opt->frame_batch,
                  "Frames detected together (speed and memory, not results; 0: as many as "
                  "fit in 2 megapixels, at most 8)")
      ->capture_default_str();
  cmd->add_option("--max-gap", opt->max_gap,
                  "Seconds a face may be gone and still come back to its track")
      ->capture_default_str();
  cmd->add_option("--min-iou", opt->min_iou,
                  "Box overlap that continues a track from one detection to the next")
      ->capture_default_str();
  cmd->add_option("--min-score", opt->min_score,
                  "Detector probability a face needs to start a track or rejoin one by "
                  "resemblance (less sure faces only continue a track they overlap)")
      ->capture_default_str();
  cmd->add_option("--reid-threshold", opt->reid_threshold,
                  "Cosine to a track's template that takes a face back to it (default: the "
                  "model's same-person threshold)");
  cmd->add_option("--min-frames", opt->min_frames, "Leave out tracks detected on fewer frames")
      ->capture_default_str();
  cmd->add_option("--draw", opt->draw, "Also write an annotated copy (boxes, track ids, quality)");
  cmd->add_option("--gallery", opt->gallery,
                  "Identify each track against this gallery (its model is used)");
  cmd->add_option("--top-k", opt->top_k, "Gallery candidates per track")->capture_default_str();
  add_model_options(*cmd, opt->model, "iresnet100");
  opt->arch_option = cmd->get_option("--arch");
  return [cmd, opt]() -> int {
    if (!cmd->parsed()) return -1;
    return run_video(*opt);
  };
}

}  // namespace facemag::cli
