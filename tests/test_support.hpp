// Helpers for tests that read the reference data in ../shared.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace facemag::test {

inline std::filesystem::path shared_dir() { return FACEMAG_SHARED_DIR; }

// Largest difference of two N x D feature matrices, relative to the largest row norm of `expected`.
inline double relative_difference(const torch::Tensor& actual, const torch::Tensor& expected) {
  return ((actual - expected).abs().max() / expected.norm(2, 1).max()).item<double>();
}
inline std::filesystem::path golden_dir() { return shared_dir() / "golden"; }

// Skips the calling test (with the reason) when a reference file is genuinely absent.
#define FACEMAG_REQUIRE_FILE(file)                                                       \
  do {                                                                                   \
    if (!std::filesystem::exists(file)) {                                                \
      GTEST_SKIP() << "reference file absent: " << std::filesystem::path(file).string(); \
    }                                                                                    \
  } while (0)

inline nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// A fresh, empty temporary folder for one test, removed at destruction.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("facemag-" + std::string(info->test_suite_name()) + "-" + info->name() + "-" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One JSON value per non-empty line (JSON Lines output).
inline std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// Runs the facemag CLI with `args` (a shell command line tail); stderr is captured via a file.
struct RunResult {
  int exit_code;
  std::string out;
  std::string err;
};

// `env`: variable assignments for the command ("NAME=value ...").
inline RunResult run_cli(const std::string& args, const TempDir& tmp, const std::string& env = "") {
  const auto err_path = tmp / "stderr.txt";
  const std::string cmd =
      env + " " + std::string(FACEMAG_CLI_PATH) + " " + args + " 2>" + err_path.string();
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out, read_file(err_path)};
}

}  // namespace facemag::test
