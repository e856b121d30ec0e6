// `facemag detect` (faces, scores, landmarks as JSON Lines; --draw annotated copies) and
// `facemag align` (aligned crops written as PNG).
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/align/align.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/pipeline.hpp"
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
  std::string template_name = "arcface-112x112";
  std::string keep = "all";
  std::string landmarks;
  bool facenet = false;
  int image_size = 160;
  int margin = 0;
  int threads = 0;
};

nlohmann::json to_json(const Detection& d) {
  nlohmann::json marks = nlohmann::json::array();
  for (const auto& p : d.landmarks.points) marks.push_back({p.x, p.y});
  return {{"box", box_json(d)}, {"score", d.score}, {"landmarks", marks}};
}

void draw(cv::Mat& image, const std::vector<Detection>& faces) {
  const int thickness = std::max(1, std::min(image.cols, image.rows) / 300);
  for (const auto& f : faces) {
    cv::rectangle(image, cv::Point2f(f.box.x1, f.box.y1), cv::Point2f(f.box.x2, f.box.y2),
                  {0, 255, 0}, thickness);
    for (const auto& p : f.landmarks.points)
      cv::circle(image, cv::Point2f(p.x, p.y), 2 * thickness, {0, 0, 255}, -1);
    char label[16];
    std::snprintf(label, sizeof label, "%.3f", f.score);
    cv::putText(image, label, cv::Point2f(f.box.x1, std::max(12.0f, f.box.y1 - 4)),
                cv::FONT_HERSHEY_SIMPLEX, 0.5 * thickness, {0, 255, 0}, thickness);
  }
}

// Writes an image, creating its folder; an unwritable output is an error for the whole run.
void write_image(const std::filesystem::path& path, const cv::Mat& image) {
  std::filesystem::create_directories(path.parent_path());
  if (!cv::imwrite(path.string(), image))
    throw InvalidInput(path.string() + ": cannot write image");
}

// Runs `per_image` on every input, reporting and counting the ones that fail.
template <class F>
int for_each_image(const std::vector<io::InputFile>& files, const char* label, F per_image) {
  std::size_t failures = 0;
  ProgressBar progress(files.size(), label);
  for (const auto& file : files) {
    try {
      per_image(file, io::read_image_bgr(file.path));
    } catch (const InvalidInput& e) {
      report_skipped(file.path.string(), e.what());
      ++failures;
    }
    progress.advance();
  }
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
    nlohmann::json record{
        {"path", file.path.string()}, {"width", image.cols}, {"height", image.rows}};
    record["faces"] = nlohmann::json::array();
    for (const auto& f : faces) record["faces"].push_back(to_json(f));
    out.stream() << record << std::endl;
    if (!opt.draw_dir.empty()) {
      draw(image, faces);
      write_image(std::filesystem::path(opt.draw_dir) / file.name, image);
    }
  });
}

int run_align(const AlignCliOptions& opt) {
  configure_runtime(opt.threads);
  const auto files = input_files(opt.inputs);
  const auto landmarks = read_landmarks_option(opt.landmarks);
  std::optional<MtcnnDetector> detector;
  if (!landmarks) detector = load_detector(opt.detector);
  const MtcnnOptions options = to_mtcnn_options(opt.detector);
  const KeepFaces keep = keep_option_value(opt.keep);
  if (keep == KeepFaces::kBest)
    throw InvalidInput("--keep best needs an embedding model; align has none");
  const AlignmentTemplate& tmpl = alignment_template(opt.template_name);
  return for_each_image(files, "align", [&](const io::InputFile& file, const cv::Mat& image) {
    std::vector<Detection> faces;
    if (landmarks) {
      const Landmarks5* marks = landmarks->find(file.path);
      if (!marks) throw InvalidInput("no landmarks in " + landmarks->source().string());
      faces = {detection_from_landmarks(*marks)};
    } else {
      const auto found = detector->detect(image, options);
      for (const auto i : chosen_faces(found, image.cols, image.rows, keep))
        faces.push_back(found[i]);
    }
    for (std::size_t k = 0; k < faces.size(); ++k) {
      const cv::Mat crop = opt.facenet
                               ? margin_crop(image, faces[k].box, opt.image_size, opt.margin)
                               : align_face(image, faces[k].landmarks, tmpl).image;
      auto name = std::filesystem::path(opt.out_dir) / file.name;
      name.replace_filename(name.stem().string() + "_face" + std::to_string(k) + ".png");
      write_image(name, crop);
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
      ->add_option("--template", align_opt->template_name,
                   "5-point template: arcface-112x112 (MagFace, iResNet) or sphereface-96x112 "
                   "(MobileFaceNet)")
      ->check(CLI::IsMember({"arcface-112x112", "sphereface-96x112"}))
      ->capture_default_str();
  add_keep_all_option(*align, align_opt->keep);
  add_landmarks_option(*align, align_opt->landmarks);
  align->add_flag("--facenet", align_opt->facenet,
                  "facenet-pytorch margin crops instead of 5-point alignment");
  align->add_option("--image-size", align_opt->image_size, "Size of --facenet crops")
      ->capture_default_str();
  align->add_option("--margin", align_opt->margin, "Margin of --facenet crops, in output pixels")
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
