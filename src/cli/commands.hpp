// Subcommand registration: each adds itself to the CLI11 app and runs when selected.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace facemag::cli {

// Runs a selected subcommand and returns the process exit code.
using Runner = std::function<int()>;

// `facemag embed` and `facemag quality`.
Runner add_embed_commands(CLI::App& app);
// `facemag detect` and `facemag align`.
Runner add_detect_commands(CLI::App& app);
// `facemag cluster`.
Runner add_cluster_command(CLI::App& app);
// `facemag bench`.
Runner add_bench_command(CLI::App& app);
// `facemag inspect` and `facemag formula-weights`.
Runner add_checkpoint_commands(CLI::App& app);
// `facemag eval pairs|erc`, `facemag calibrate`, `facemag verify`.
Runner add_eval_commands(CLI::App& app);
// `facemag eval ijb|ijb-identify`, under the `eval` subcommand.
Runner add_ijb_commands(CLI::App& eval);
// `facemag eval cluster`, under the `eval` subcommand.
Runner add_eval_cluster_command(CLI::App& eval);
// `facemag eval identify`, under the `eval` subcommand.
Runner add_eval_identify_command(CLI::App& eval);
// `facemag gallery ...`.
Runner add_gallery_commands(CLI::App& app);
// `facemag report`.
Runner add_report_command(CLI::App& app);
// `facemag video`.
Runner add_video_command(CLI::App& app);
// `facemag serve`.
Runner add_serve_command(CLI::App& app);
// `facemag models ...` (the model store) and `facemag export onnx`.
Runner add_model_commands(CLI::App& app);
// `facemag train`.
Runner add_train_command(CLI::App& app);

}  // namespace facemag::cli
