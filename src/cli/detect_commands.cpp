// `facemag detect` (faces, scores, landmarks as JSON Lines; --draw annotated copies) and
// `facemag align` (aligned crops written as PNG).
#include <nlohmann/json.hpp>

#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/detect/draw.hpp"
#include "facemag/detect/json.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image_write.hpp"
#include "facemag/photo_chunks.hpp"
#include "facemag/photo_crops.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {
namespace {

struct DetectCliOptions {
  std::vector<std::string> inputs;
  DetectorOptions detector;
  std::string out;
  std::string draw_dir;
  int threads = 0;
};

struct AlignCliOptions {
  std::vector<std::string> inputs;
  DetectorOptions detector;
  std::string out_dir;
  std::string keep = "all";
  std::string landmarks;
  PhotoCropOptions crop;  // --template, --facenet, --image-size, --margin
  int threads = 0;
};

// Reads every input, reporting and counting the ones that fail (per_image may throw too).
int for_each_image(const std::vector<io::InputFile>& files, const char* label,
                   const std::function<void(const io::InputFile&, cv::Mat)>& per_image) {
  ProgressBar progress(files.size(), label);
  const auto failures =
      for_each_photo(files, per_image, report_skipped_file, [&] { progress.advance(); });
  return finish_batch(failures, files.size());
}

int run_detect(const DetectCliOptions& opt) {
  configure_runtime(opt.threads);
  const auto files = input_files(opt.inputs);
  const MtcnnDetector detector = load_detector(opt.detector);
  const MtcnnOptions options = to_mtcnn_options(opt.detector);
  OutputStream out(opt.out);
  return for_each_image(files, "detect", [&](const io::InputFile& file, cv::Mat image) {
    const auto faces = detector.detect(image, options);
    out.stream() << photo_detections_json(file.path.string(), image.cols, image.rows, faces)
                 << std::endl;
    if (!opt.draw_dir.empty()) {
      draw_detections(image, faces);
      io::write_image(std::filesystem::path(opt.draw_dir) / file.name, image);
    }
  });
}

int run_align(const AlignCliOptions& opt) {
  configure_runtime(opt.threads);
  const auto files = input_files(opt.inputs);
  auto landmarks = read_landmarks_option(opt.landmarks);
  std::optional<MtcnnDetector> detector;
  if (!landmarks) detector = load_detector(opt.detector);
  PhotoCropOptions options = opt.crop;
  options.keep = keep_option_value(opt.keep);
  options.detection = to_mtcnn_options(opt.detector);
  if (options.keep == KeepFaces::kBest)
    throw InvalidInput("--keep best needs an embedding model; align has none");
  const PhotoCropper cropper(detector ? &*detector : nullptr, std::move(landmarks), options);
  return for_each_image(files, "align", [&](const io::InputFile& file, const cv::Mat& image) {
    const auto faces = cropper.faces(image, file.path);
    for (std::size_t k = 0; k < faces.size(); ++k) {
      auto name = std::filesystem::path(opt.out_dir) / file.name;
      name.replace_filename(name.stem().string() + "_face" + std::to_string(k) + ".png");
      io::write_image(name, cropper.crop(image, faces[k]));
      std::cout << nlohmann::json{{"path", file.path.string()},
                                  {"face", k},
                                  {"crop", name.string()}}
                << "\n";
    }
  });
}

}  // namespace

Runner add_detect_commands(CLI::App& app) {
  auto detect_opt = std::make_shared<DetectCliOptions>();
  auto align_opt = std::make_shared<AlignCliOptions>();
  auto* detect =
      app.add_subcommand("detect", "Find faces (box, probability, 5 landmarks) with MTCNN");
  detect->add_option("inputs", detect_opt->inputs, "Images, folders (recursive) or @list.txt")
      ->required();
  add_detector_options(*detect, detect_opt->detector);
  detect->add_option("--out", detect_opt->out, "Write JSON Lines here instead of stdout");
  detect->add_option("--draw", detect_opt->draw_dir,
                     "Write copies with boxes and landmarks drawn into this folder");
  detect->add_option("--threads", detect_opt->threads, "CPU threads (0 = all cores)")
      ->capture_default_str();

  auto* align = app.add_subcommand(
      "align", "Detect faces and write aligned crops (ArcFace 112x112, or --facenet)");
  align->add_option("inputs", align_opt->inputs, "Images, folders (recursive) or @list.txt")
      ->required();
  add_detector_options(*align, align_opt->detector);
  align->add_option("--out", align_opt->out_dir, "Folder for the crops (<name>_face<k>.png)")
      ->required();
  align
      ->add_option("--template", align_opt->crop.alignment_template,
                   "5-point template: arcface-112x112 (MagFace, iResNet) or sphereface-96x112 "
                   "(MobileFaceNet)")
      ->check(CLI::IsMember({"arcface-112x112", "sphereface-96x112"}))
      ->capture_default_str();
  add_keep_all_option(*align, align_opt->keep);
  add_landmarks_option(*align, align_opt->landmarks);
  align->add_flag("--facenet", align_opt->crop.facenet_margin,
                  "facenet-pytorch margin crops instead of 5-point alignment");
  align->add_option("--image-size", align_opt->crop.image_size, "Size of --facenet crops")
      ->capture_default_str();
  align
      ->add_option("--margin", align_opt->crop.margin,
                   "Margin of --facenet crops, in output pixels")
      ->capture_default_str();
  align->add_option("--threads", align_opt->threads, "CPU threads (0 = all cores)")
      ->capture_default_str();

  return [detect, align, detect_opt, align_opt]() -> int {
    if (detect->parsed()) return run_detect(*detect_opt);
    if (align->parsed()) return run_align(*align_opt);
    return -1;
  };
}

}  // namespace facemag::cli
