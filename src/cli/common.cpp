#include "common.hpp"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "facemag/error.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/shard.hpp"

namespace facemag::cli {

ProgressBar::ProgressBar(std::size_t total, std::string label)
    : total_(total), label_(std::move(label)), enabled_(isatty(STDERR_FILENO) && total > 1) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() {
  if (enabled_) draw(true);
}

void ProgressBar::advance(std::size_t n) {
  done_ += n;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ > std::chrono::milliseconds(100) || done_ == total_) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::clear() {
  if (!enabled_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void ProgressBar::draw(bool final) {
  constexpr int kWidth = 30;
  const double fraction = total_ ? static_cast<double>(done_) / total_ : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
  std::fprintf(stderr, "\r%s [%s] %zu/%zu  %.1f/s", label_.c_str(), bar.c_str(), done_, total_,
               seconds > 0 ? done_ / seconds : 0.0);
  if (final) std::fputc('\n', stderr);
  std::fflush(stderr);
}

OutputStream::OutputStream(const std::string& path) : stdout_(&std::cout) {
  if (!path.empty() && path != "-") {
    file_ = std::make_unique<std::ofstream>(path);
    if (!*file_) throw InvalidInput(path + ": cannot open for writing");
  }
}

std::vector<io::InputFile> input_files(const std::vector<std::string>& inputs) {
  auto files = io::expand_inputs(inputs);
  if (files.empty()) throw InvalidInput("no image files found in the given inputs");
  return files;
}

void add_shard_option(CLI::App& cmd, std::string& shard) {
  cmd.add_option("--shard", shard,
                 "Only this job's part of the inputs: K/N (1 <= K <= N), auto (a Slurm job "
                 "array's task) or auto/N (also a Kubernetes Indexed Job's index); each file falls "
                 "in one shard by a hash of its name");
}

std::vector<io::InputFile> input_files(const std::vector<std::string>& inputs,
                                       const std::string& shard) {
  auto files = input_files(inputs);
  if (shard.empty()) return files;
  const auto part = parse_shard(shard);
  const auto all = files.size();
  files = shard_files(files, part);
  std::fprintf(stderr, "shard %zu of %zu: %zu of %zu input(s)\n", part.index + 1, part.count,
               files.size(), all);
  return files;
}

int finish_batch(std::size_t failures, std::size_t total) {
  if (failures == 0) return kExitOk;
  std::cerr << "facemag: " << failures << " of " << total << " input(s) failed\n";
  return kExitSomeInputsFailed;
}

void report_skipped(const std::string& path, const std::string& reason) {
  // Messages of facemag errors already start with the path.
  if (reason.rfind(path, 0) == 0) {
    std::cerr << "facemag: skipped " << reason << "\n";
  } else {
    std::cerr << "facemag: skipped " << path << ": " << reason << "\n";
  }
}

void report_skipped_file(const io::InputFile& file, const std::string& reason) {
  report_skipped(file.path.string(), reason);
}

void add_detector_options(CLI::App& cmd, DetectorOptions& opt) {
  cmd.add_option("--mtcnn", opt.weights_dir,
                 "Folder with pnet.pt, rnet.pt, onet.pt (default $FACEMAG_HOME/mtcnn)");
  cmd.add_option("--min-face-size", opt.mtcnn.min_face_size, "Smallest face to find, in pixels")
      ->capture_default_str();
  cmd.add_option("--thresholds", opt.thresholds, "P-Net, R-Net, O-Net probability thresholds")
      ->delimiter(',')
      ->expected(3)
      ->capture_default_str();
  cmd.add_option("--factor", opt.mtcnn.factor, "Image pyramid scale step")->capture_default_str();
}

MtcnnOptions to_mtcnn_options(const DetectorOptions& opt) {
  MtcnnOptions m = opt.mtcnn;
  for (int i = 0; i < 3; ++i) m.thresholds[i] = opt.thresholds.at(i);
  return m;
}

MtcnnDetector load_detector(const DetectorOptions& opt) {
  return MtcnnDetector::load(mtcnn_folder(opt.weights_dir));
}

void add_store_model_option(CLI::App& cmd, std::string& arch, std::string& weights,
                            std::string* manifest, const std::string& weights_option,
                            std::optional<ResolvedModel>* resolved) {
  auto name = std::make_shared<std::string>();
  auto* option = cmd.add_option("--model", *name,
                                "A model of the store ($FACEMAG_HOME/models, see `facemag models`) "
                                "instead of --arch/" +
                                    weights_option);
  if (auto* w = cmd.get_option_no_throw(weights_option)) option->excludes(w);
  if (auto* m = cmd.get_option_no_throw("--manifest")) option->excludes(m);
  CLI::Option* arch_option = cmd.get_option_no_throw("--arch");
  cmd.parse_complete_callback([name, &arch, &weights, manifest, arch_option, resolved] {
    if (name->empty()) return;
    ModelRequest request;
    request.architecture = arch;
    request.architecture_given = arch_option && arch_option->count() > 0;
    request.store_name = *name;
    auto model = resolve_model(request);
    arch = model.manifest.architecture;
    weights = model.weights.string();
    if (manifest) *manifest = model.manifest_file.string();
    if (resolved) *resolved = std::move(model);
  });
}

}  // namespace facemag::cli
