#include "facemag/video/video_job.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "facemag/embed/face_quality.hpp"
#include "facemag/error.hpp"
#include "facemag/gallery/json.hpp"
#include "facemag/io/npy.hpp"

namespace facemag::video {
namespace {

namespace fs = std::filesystem;

// The whole folder is ours to write in; only an earlier run's files may be replaced, and only when
// asked to.
void prepare_out_dir(const fs::path& dir, bool overwrite) {
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

// MJPG in .avi, MPEG-4 in .mp4/.m4v/.mov/.mkv.
cv::VideoWriter open_draw_writer(const std::string& path, const VideoInfo& info) {
  auto ext = fs::path(path).extension().string();
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

void draw_boxes(cv::Mat& image, std::span<const FrameBox> boxes, bool magnitude_quality) {
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

nlohmann::json face_json(const TrackedFace& f) {
  return {{"frame", f.frame}, {"time", f.time}, {"shot", f.shot}};
}

VideoTrackingOptions tracking_options(const VideoJobOptions& options,
                                      const ModelManifest& manifest) {
  VideoTrackingOptions tracking;
  tracking.every = options.every;
  tracking.frame_batch = options.frame_batch;
  tracking.tracker.min_iou = options.min_iou;
  tracking.tracker.min_start_score = options.min_start_score;
  tracking.tracker.max_gap_seconds = options.max_gap_seconds;
  tracking.tracker.reid_similarity =
      options.reid_similarity.value_or(manifest.same_person_threshold);
  tracking.tracker.overlap_gate = options.overlap_gate.value_or(overlap_gate_of(manifest));
  tracking.cuts = options.cuts;
  return tracking;
}

}  // namespace

double overlap_gate_of(const ModelManifest& manifest) { return manifest.same_person_threshold / 2; }

std::string to_json_line(const VideoTrackRecord& record) {
  const Track& t = record.track;
  const Detection& d = t.best.detection;
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
                       {"score", d.score},
                       {"box", {d.box.x1, d.box.y1, d.box.x2, d.box.y2}},
                       {"crop", record.crop}}},
                     {"quality_source", record.quality_source},
                     {"template_row", record.template_row}};
  // Each candidate's name and cosine to their template, the threshold and the decision.
  if (record.identity)
    rec["identity"] = gallery::to_json(
        *record.identity, {.face_ids = false, .threshold = true, .candidate_details = false});
  return rec.dump();
}

struct VideoJob::State {
  const FacePipeline& pipeline;
  const gallery::Gallery* gallery;
  VideoJobOptions options;
  VideoTrackingOptions tracking;
  gallery::DecisionRules rules;
  std::unique_ptr<VideoSource> source;
  std::optional<cv::VideoWriter> drawn;
  std::ofstream tracks_file;
  std::vector<float> templates;  // written tracks x dimension
  VideoJobSummary summary;
  bool ran = false;

  void write_track(Track&& track, const std::function<void(const VideoTrackRecord&)>& on_track);
  void write_templates();
};

VideoJob::VideoJob(const std::string& input, const FacePipeline& pipeline,
                   const gallery::Gallery* gallery, const VideoJobOptions& options)
    : state_(new State{pipeline, gallery, options, {}, {}, {}, {}, {}, {}, {}, false}) {
  if (options.every < 1) throw InvalidInput("every must be at least 1");
  if (options.frame_batch < 0) throw InvalidInput("frame_batch must be at least 0 (0: auto)");
  if (options.top_k < 1) throw InvalidInput("top_k must be at least 1");
  if (options.overlap_gate && !(*options.overlap_gate >= -1 && *options.overlap_gate <= 1))
    throw InvalidInput("overlap gate: expected a cosine in [-1, 1], got " +
                       std::to_string(*options.overlap_gate));
  auto& s = *state_;
  const ModelManifest& manifest = pipeline.manifest();
  s.tracking = tracking_options(options, manifest);
  if (!manifest.magnitude_is_quality)
    spdlog::info(
        "{} is not MagFace-trained: a face's quality is its embedding's magnitude times the "
        "crop's sharpness factor",
        manifest.name);
  s.source = std::make_unique<VideoSource>(input, VideoSource::kDefaultQueue, options.stop);
  const auto& info = s.source->info();
  if (!info.fps_reported)
    spdlog::info("{}: no frame rate reported; times assume {} frames/s", input, info.fps);
  prepare_out_dir(options.out_dir, options.overwrite);
  if (!options.draw.empty()) s.drawn.emplace(open_draw_writer(options.draw.string(), info));
  const auto tracks_path = options.out_dir / "tracks.jsonl";
  s.tracks_file.open(tracks_path);
  if (!s.tracks_file) throw InvalidInput(tracks_path.string() + ": cannot write");
  if (gallery) s.rules = gallery::decision_rules(gallery->model());
}

VideoJob::~VideoJob() = default;

const VideoInfo& VideoJob::info() const { return state_->source->info(); }

void VideoJob::State::write_track(Track&& track,
                                  const std::function<void(const VideoTrackRecord&)>& on_track) {
  if (track.detections < options.min_frames) {
    ++summary.too_short;
    return;
  }
  VideoTrackRecord record;
  char crop_name[32];
  std::snprintf(crop_name, sizeof crop_name, "track-%04d.png", track.id);
  record.crop = crop_name;
  const auto crop_path = options.out_dir / record.crop;
  if (!cv::imwrite(crop_path.string(), track.best_crop))
    throw InvalidInput(crop_path.string() + ": cannot write image");
  record.template_vector = track.template_vector();
  record.template_row = summary.written;
  record.quality_source = quality_source(pipeline.manifest());
  if (gallery) {
    // The track is as good as its best face: below the gate even there, no identity is claimed.
    record.identity = gallery::identify(*gallery, record.template_vector, track.best.quality,
                                        options.top_k, rules);
  }
  record.track = std::move(track);
  templates.insert(templates.end(), record.template_vector.begin(), record.template_vector.end());
  ++summary.written;
  tracks_file << to_json_line(record) << "\n";
  tracks_file.flush();  // a stream stopped by a kill keeps every closed track
  if (on_track) on_track(record);
}

void VideoJob::State::write_templates() {
  if (templates.empty()) return;
  const auto rows = static_cast<std::int64_t>(summary.written);
  io::write_npy(
      options.out_dir / "templates.npy",
      torch::from_blob(templates.data(), {rows, static_cast<std::int64_t>(templates.size()) / rows},
                       torch::kFloat32));
}

VideoJobSummary VideoJob::run(
    const std::function<void(const VideoTrackRecord&)>& on_track,
    const std::function<void(const Frame&, std::span<const FrameBox>)>& on_frame) {
  auto& s = *state_;
  if (s.ran) throw InvalidInput("a video job runs once");
  s.ran = true;
  const auto started = std::chrono::steady_clock::now();
  const bool magnitude_quality = s.pipeline.manifest().magnitude_is_quality;
  const auto frame = [&](const Frame& f, std::span<const FrameBox> boxes) {
    if (on_frame) on_frame(f, boxes);
    if (!s.drawn) return;
    cv::Mat image = f.bgr.clone();
    draw_boxes(image, boxes, magnitude_quality);
    s.drawn->write(image);
  };
  s.summary.run = track_video(
      *s.source, s.pipeline, s.tracking, [&](Track&& t) { s.write_track(std::move(t), on_track); },
      frame);
  s.summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  s.write_templates();
  if (s.drawn) s.drawn->release();
  return s.summary;
}

std::string to_text_line(const VideoTrackRecord& record) {
  const auto& t = record.track;
  char buf[256];
  std::snprintf(
      buf, sizeof buf, "track %3d  %8.2f s - %8.2f s  %5d frames  best at %.2f s (q %.3f)", t.id,
      t.first.time, t.last.time, t.detections, t.best.time, static_cast<double>(t.best.quality));
  std::string out = buf;
  if (record.identity)
    out += "  -> " + gallery::decision_name(record.identity->decision) +
           (record.identity->person ? " " + *record.identity->person : "");
  return out;
}

std::string describe(const VideoJobSummary& summary, const std::string& input,
                     const std::string& out_dir, int min_frames) {
  const auto& run = summary.run;
  const double seconds = summary.seconds;
  return fmt::format(
      "{}: {} frames ({} through detection, {} faces, {} shot cut(s)) in {:.1f} s ({:.1f} "
      "frames/s); {} track(s) written to {}{}",
      input, run.frames, run.detected_frames, run.faces, run.cuts.size(), seconds,
      seconds > 0 ? run.frames / seconds : 0.0, summary.written, out_dir,
      summary.too_short ? fmt::format(" ({} shorter than --min-frames {} left out)",
                                      summary.too_short, min_frames)
                        : std::string());
}

}  // namespace facemag::video
