// `facemag inspect` (what a checkpoint holds) and `facemag formula-weights` (a checkpoint of
// deterministic, untrained weights for trying the tools and benchmarking without downloads).
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "commands.hpp"
#include "common.hpp"
#include "facemag/embed/checkpoint_tools.hpp"
#include "facemag/model/manifest.hpp"

namespace facemag::cli {
namespace {

struct InspectOptions {
  std::string file;
};

struct FormulaOptions {
  std::string arch = "iresnet18";
  int classes = 0;  // inception_resnet_v1 classifier head
  std::string out;
};

int run_inspect(const InspectOptions& opt) {
  const io::Checkpoint c = io::load_checkpoint(opt.file);
  std::cout << checkpoint_summary(c, opt.file) << "\n";
  std::int64_t parameters = 0;
  for (const auto& [name, t] : io::find_state_dict(c)) {
    std::cout << tensor_record(name, t) << "\n";
    parameters += t.numel();
  }
  std::cerr << "facemag: " << parameters << " values in the state dict\n";
  return kExitOk;
}

int run_formula(const FormulaOptions& opt) {
  write_formula_weights(opt.arch, opt.classes, opt.out);
  std::cerr << "facemag: wrote " << opt.out << " (" << opt.arch
            << " with deterministic formula weights: untrained, for trying the tools only)\n";
  return kExitOk;
}

}  // namespace

Runner add_checkpoint_commands(CLI::App& app) {
  auto inspect_opt = std::make_shared<InspectOptions>();
  auto formula_opt = std::make_shared<FormulaOptions>();
  auto* inspect = app.add_subcommand(
      "inspect", "List what a PyTorch checkpoint holds (entries, tensors, shapes)");
  inspect->add_option("file", inspect_opt->file, "Checkpoint (.pth/.pt, zip or legacy format)")
      ->required();
  auto* formula = app.add_subcommand(
      "formula-weights",
      "Write a checkpoint of deterministic untrained weights (testing, benchmarks)");
  formula->add_option("--arch", formula_opt->arch, "Architecture")
      ->check(CLI::IsMember(builtin_architectures()))
      ->capture_default_str();
  formula
      ->add_option("--classes", formula_opt->classes,
                   "Classifier classes (inception_resnet_v1; 0 = none)")
      ->capture_default_str();
  formula->add_option("--out", formula_opt->out, "Output .pth file")->required();
  return [inspect, formula, inspect_opt, formula_opt]() -> int {
    if (inspect->parsed()) return run_inspect(*inspect_opt);
    if (formula->parsed()) return run_formula(*formula_opt);
    return -1;
  };
}

}  // namespace facemag::cli
