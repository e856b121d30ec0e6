// Helpers shared by the CLI subcommands.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json_fwd.hpp>

#include "facemag/detect/mtcnn.hpp"
#include "facemag/io/image.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/stop_signal.hpp"

namespace facemag::cli {

// Exit codes of every subcommand.
constexpr int kExitOk = 0;
constexpr int kExitSomeInputsFailed = 1;  // the others were processed and written
constexpr int kExitError = 2;             // nothing useful was done

// A progress bar on stderr when it is a terminal; silent in pipes and files.
class ProgressBar {
 public:
  ProgressBar(std::size_t total, std::string label);
  ~ProgressBar();
  void advance(std::size_t n = 1);
  // Wipes the bar from the terminal line, so that a line printed next starts clean; the next
  // advance() draws it again.
  void clear();

 private:
  void draw(bool final);
  std::size_t total_;
  std::size_t done_ = 0;
  std::string label_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// Where records go: a file (created, truncated) or stdout.
class OutputStream {
 public:
  explicit OutputStream(const std::string& path);
  std::ostream& stream() { return file_ ? *file_ : *stdout_; }

 private:
  std::unique_ptr<std::ofstream> file_;
  std::ostream* stdout_;
};

// The files named by command-line inputs (see io::expand_inputs); none at all is an error.
std::vector<io::InputFile> input_files(const std::vector<std::string>& inputs);

// --shard K/N|auto|auto/N (facemag::parse_shard): this job's part of a photo archive.
void add_shard_option(CLI::App& cmd, std::string& shard);
// input_files(), then only the shard's files when `shard` is not empty (says which on stderr).
std::vector<io::InputFile> input_files(const std::vector<std::string>& inputs,
                                       const std::string& shard);

// The exit code after a batch: reports how many inputs failed (if any) on stderr.
int finish_batch(std::size_t failures, std::size_t total);

// Reports one input that was skipped, on stderr, as one line.
void report_skipped(const std::string& path, const std::string& reason);
// The same for a photo the library skipped (an UnreadablePhotoSink).
void report_skipped_file(const io::InputFile& file, const std::string& reason);

// Options of the MTCNN detector as every photo command takes them.
struct DetectorOptions {
  std::string weights_dir;  // --mtcnn (default: facemag::mtcnn_folder())
  MtcnnOptions mtcnn;       // --min-face-size and --factor, with the library's defaults
  std::vector<float> thresholds{0.6f, 0.7f, 0.7f};  // --thresholds (CLI11 reads no std::array)
};
void add_detector_options(CLI::App& cmd, DetectorOptions& opt);
MtcnnOptions to_mtcnn_options(const DetectorOptions& opt);
MtcnnDetector load_detector(const DetectorOptions& opt);

// --model NAME: a model of the store (facemag_home()/models/NAME). Once the command line is parsed
// it sets `weights`, `arch` and (when given) `manifest` and `resolved` from resolve_model(), so
// everything downstream loads it like --weights (verifying its SHA-256) without resolving it
// again; excludes the options named `weights_option` and --manifest. An --arch given explicitly
// that differs from the stored model's is an error.
void add_store_model_option(CLI::App& cmd, std::string& arch, std::string& weights,
                            std::string* manifest, const std::string& weights_option = "--weights",
                            std::optional<ResolvedModel>* resolved = nullptr);

}  // namespace facemag::cli
