// The flags that choose how `cluster` and `eval cluster` build their average-linkage hierarchy
// (facemag::ClusterOptions, eval/knn_cluster.hpp).
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "encoder.hpp"
#include "facemag/eval/knn_cluster.hpp"

namespace facemag::cli {

inline void add_cluster_method_options(CLI::App& cmd, ClusterOptions& options) {
  const std::map<std::string, ClusterMethod> methods{{"auto", ClusterMethod::kAuto},
                                                     {"exact", ClusterMethod::kExact},
                                                     {"graph", ClusterMethod::kGraph}};
  cmd.add_option("--method", options.method,
                 "auto: exact average linkage while its N x N matrix fits --memory-budget, else "
                 "graph (average linkage over a k-nearest-neighbour graph)")
      ->transform(CLI::CheckedTransformer(methods, CLI::ignore_case))
      ->default_str("auto");
  cmd.add_option("--neighbours", options.graph.k, "graph: nearest neighbours per face")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd.add_option_function<double>(
         "--memory-budget",
         [&options](double mb) {
           options.memory_budget_bytes = static_cast<std::size_t>(mb * 1048576.0);
         },
         "auto: MB the exact method's matrix may take (8 N^2 bytes)")
      ->check(CLI::PositiveNumber)
      ->default_str("2048");
}

// A progress bar per clustering stage (ClusterOptions::progress), each replacing the last.
class ClusterStageBars {
 public:
  ClusterProgress callback() {
    return [this](const char* stage, std::size_t done, std::size_t total) {
      if (!bar_ || stage_ != stage || done < shown_) {  // a new stage, or the stages again
        bar_ = std::make_unique<ProgressBar>(total, stage);
        stage_ = stage;
        shown_ = 0;
      }
      bar_->advance(done - shown_);
      shown_ = done;
      if (done == total) bar_.reset();  // its last line, before what the command prints next
    };
  }

 private:
  std::unique_ptr<ProgressBar> bar_;
  std::string stage_;
  std::size_t shown_ = 0;
};

// `facemag calibrate --people DIR...`: `eval cluster --by-folder DIR...` swept from 0.05 to 0.80
// by 0.01, its best-BCubed threshold stored as the model's clustering threshold with --save or
// --manifest-out (eval_cluster_command.cpp).
int run_clustering_calibration(const std::vector<std::string>& people, const ModelOptions& model,
                               bool save, const std::string& manifest_out);

}  // namespace facemag::cli
