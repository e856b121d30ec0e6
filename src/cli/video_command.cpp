// `facemag video`: faces tracked through a video file, stream or camera; per track its span, its
// best face by quality (PNG), its quality-weighted template, and with --gallery who it is.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>
#include <span>
#include <string>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/stop_signal.hpp"
#include "facemag/video/video_job.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

// The job's options where CLI11 binds them as they are (paths as strings: CLI11 2.1 takes a
// std::filesystem::path for a container), and what only the command line has.
struct VideoOptions {
  video::VideoJobOptions job;
  std::string input;
  std::string out_dir;
  double reid_threshold = -2;  // default: the model's same-person threshold
  double overlap_gate = -2;    // default: half the model's same-person threshold
  bool no_cuts = false;
  std::string draw;
  std::string gallery;
  ModelOptions model;
  CLI::Option* arch_option = nullptr;
};

video::VideoJobOptions job_options(const VideoOptions& opt) {
  video::VideoJobOptions job = opt.job;
  job.out_dir = opt.out_dir;
  if (opt.reid_threshold > -2) job.reid_similarity = opt.reid_threshold;
  if (opt.overlap_gate > -2) job.overlap_gate = opt.overlap_gate;
  job.cuts.enabled = !opt.no_cuts;
  job.draw = opt.draw;
  job.stop = &StopOnSignal::flag();
  return job;
}

int run_video(VideoOptions opt) {
  if (opt.job.every < 1) throw InvalidInput("--every must be at least 1");
  if (opt.job.frame_batch < 0) throw InvalidInput("--frame-batch must be at least 1 (0: auto)");
  if (opt.job.top_k < 1) throw InvalidInput("--top-k must be at least 1");
  opt.model.keep = "center";  // unused here: every face of every frame is tracked
  auto loaded = load_model_with_gallery(opt.gallery, opt.model,
                                        opt.arch_option && opt.arch_option->count() > 0);
  const MtcnnDetector detector = load_detector(loaded.model.detector);
  const FacePipeline pipeline(detector, loaded.embedder(), to_mtcnn_options(loaded.model.detector));

  const StopOnSignal stop_on_signal;
  video::VideoJob job(opt.input, pipeline, loaded.gallery(), job_options(opt));
  const bool table = isatty(STDOUT_FILENO);
  ProgressBar progress(static_cast<std::size_t>(job.info().announced_frames), "frames");
  const auto summary = job.run(
      [&](const video::VideoTrackRecord& record) {
        if (table) {
          progress.clear();
          std::cout << video::to_text_line(record) << "\n";
        } else {
          std::cout << video::to_json_line(record) << "\n";
        }
        std::cout.flush();
      },
      [&](const video::Frame&, std::span<const video::FrameBox>) { progress.advance(); });
  spdlog::info("{}", video::describe(summary, opt.input, opt.out_dir, opt.job.min_frames));
  if (!summary.run.end_note.empty()) {
    std::cerr << "facemag: " << summary.run.end_note << "\n";
    return StopOnSignal::requested() ? kExitOk : kExitSomeInputsFailed;
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
  cmd->add_flag("--overwrite", opt->job.overwrite, "Replace the output of an earlier run in --out");
  cmd->add_option("--every", opt->job.every, "Detect faces on every N-th frame")
      ->capture_default_str();
  cmd->add_option("--frame-batch", opt->job.frame_batch,
                  "Frames detected together (speed and memory, not results; 0: as many as "
                  "fit in 2 megapixels, at most 8)")
      ->capture_default_str();
  cmd->add_option("--max-gap", opt->job.max_gap_seconds,
                  "Seconds a face may be gone and still come back to its track")
      ->capture_default_str();
  cmd->add_option("--min-iou", opt->job.min_iou,
                  "Box overlap that continues a track from one detection to the next")
      ->capture_default_str();
  cmd->add_option("--min-score", opt->job.min_start_score,
                  "Detector probability a face needs to start a track or rejoin one by "
                  "resemblance (less sure faces only continue a track they overlap)")
      ->capture_default_str();
  cmd->add_option("--reid-threshold", opt->reid_threshold,
                  "Cosine to a track's template that takes a face back to it (default: the "
                  "model's same-person threshold)");
  cmd->add_option("--overlap-gate", opt->overlap_gate,
                  "Cosine to a track's template or last face that an overlapping face needs to "
                  "continue the track (below: someone else; default: half the model's "
                  "same-person threshold; -1: overlap alone decides)");
  cmd->add_flag("--no-cuts", opt->no_cuts,
                "Do not look for shot cuts (by default a cut ends continuing tracks by overlap: "
                "faces after it rejoin tracks only by resemblance)");
  cmd->add_option("--min-frames", opt->job.min_frames, "Leave out tracks detected on fewer frames")
      ->capture_default_str();
  cmd->add_option("--draw", opt->draw, "Also write an annotated copy (boxes, track ids, quality)");
  cmd->add_option("--gallery", opt->gallery,
                  "Identify each track against this gallery (its model is used)");
  cmd->add_option("--top-k", opt->job.top_k, "Gallery candidates per track")->capture_default_str();
  add_model_options(*cmd, opt->model, "iresnet100");
  opt->arch_option = cmd->get_option("--arch");
  return [cmd, opt]() -> int {
    if (!cmd->parsed()) return -1;
    return run_video(*opt);
  };
}

}  // namespace facemag::cli
