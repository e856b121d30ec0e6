// facemag: face detection, alignment, embeddings and quality from the command line.
#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.hpp"
#include "common.hpp"
#include "facemag/error.hpp"

int main(int argc, char** argv) {
  using namespace facemag::cli;
  spdlog::set_default_logger(spdlog::stderr_color_mt("facemag"));
  spdlog::set_pattern("facemag: %v");

  CLI::App app{"facemag: face recognition and MagFace quality, natively"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "More messages on stderr");
  std::vector<Runner> runners{
      add_embed_commands(app), add_detect_commands(app),     add_cluster_command(app),
      add_bench_command(app),  add_checkpoint_commands(app), add_eval_commands(app),
      add_report_command(app), add_gallery_commands(app),    add_video_command(app),
      add_serve_command(app),  add_train_command(app),       add_model_commands(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitError;
  } catch (const facemag::Error& e) {  // e.g. --model naming no stored model
    std::cerr << "facemag: error: " << e.what() << "\n";
    return kExitError;
  }
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  try {
    for (auto& run : runners) {
      if (const int code = run(); code >= 0) return code;
    }
    return kExitError;
  } catch (const facemag::Error& e) {
    std::cerr << "facemag: error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "facemag: error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "facemag: error: " << e.what() << "\n";
  }
  return kExitError;
}
