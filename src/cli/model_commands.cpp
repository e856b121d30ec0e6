// `facemag models list|add|verify|path|remove` (the model store) and `facemag export onnx`.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/calibrate_int8.hpp"
#include "facemag/error.hpp"
#include "facemag/export/onnx.hpp"
#include "facemag/model/network.hpp"
#include "facemag/model/store.hpp"

namespace facemag::cli {
namespace {

// ---- models ----

struct ModelsOptions {
  std::string name;
  std::string file;
  std::string arch;
  std::string manifest;
  std::string source;
  std::string licence;
  bool json = false;
  bool make_default = false;
};

int run_list(const ModelsOptions& opt) {
  const auto store = ModelStore::from_environment();
  const auto models = store.list();
  const auto default_name = store.default_name();
  if (opt.json) {
    for (const auto& m : models) std::cout << to_json(m, m.name == default_name).dump() << "\n";
    return kExitOk;
  }
  if (models.empty()) {
    std::cerr << "facemag: no models in " << store.root().string()
              << " (facemag models add NAME FILE --arch ARCH)\n";
    return kExitOk;
  }
  std::cout << models_text(models, default_name);
  return kExitOk;
}

int run_add(const ModelsOptions& opt) {
  const auto manifest =
      manifest_for_new_model({opt.name, opt.file, opt.arch, opt.manifest, opt.source, opt.licence});
  const auto store = ModelStore::from_environment();
  const auto model = store.add(opt.name, opt.file, manifest);
  std::cout << "added " << model.name << ": " << model.description.architecture << ", "
            << megabytes_text(model.size_bytes) << ", sha256 " << model.description.sha256 << "\n";
  if (opt.make_default) {
    store.set_default(model.name);
    std::cout << model.name << " is the default model\n";
  }
  if (is_research_only_licence(model.description.licence))
    std::cerr << "facemag: note: " << model.name << " is licensed for research only ("
              << model.description.licence << ")\n";
  return kExitOk;
}

int run_verify(const ModelsOptions& opt) {
  const auto checks = ModelStore::from_environment().verify(opt.name);
  std::cout << to_text(checks);
  const auto bad = std::count_if(checks.begin(), checks.end(),
                                 [](const ModelCheck& c) { return !c.error.empty(); });
  if (bad) {
    std::cerr << "facemag: " << bad << " of " << checks.size() << " model(s) failed verification\n";
    return kExitSomeInputsFailed;
  }
  return kExitOk;
}

int run_default(const ModelsOptions& opt) {
  const auto store = ModelStore::from_environment();
  if (!opt.name.empty()) store.set_default(opt.name);
  const auto name = store.default_name();
  if (!name) {
    std::cerr << "facemag: no default model in " << store.root().string()
              << " (facemag models default NAME)\n";
    return kExitSomeInputsFailed;
  }
  std::cout << *name << "\n";
  return kExitOk;
}

// ---- export onnx ----

struct ExportOptions {
  OnnxFileRequest request;  // architecture, verify_sha256 and options.batch set from below
  std::string arch = "iresnet100";
  CLI::Option* arch_option = nullptr;  // --arch, to tell a given one from the default
  std::string weights, manifest, out;
  std::string batch = "dynamic";
  bool no_classifier = false;
  bool no_verify = false;
};

int run_export(const ExportOptions& opt) {
  OnnxFileRequest request = opt.request;
  request.options.batch = parse_onnx_batch(opt.batch);
  request.options.with_classifier = !opt.no_classifier;
  request.architecture = opt.arch;
  request.architecture_given = opt.arch_option && opt.arch_option->count() > 0;
  request.weights = opt.weights;
  request.manifest = opt.manifest;
  request.out = opt.out;
  request.verify_sha256 = !opt.no_verify;
  const std::size_t bytes = export_onnx_file(request);
  std::cerr << "facemag: wrote " << opt.out << " (" << opt.arch << ", opset "
            << request.options.opset << ", " << megabytes_text(bytes) << ", input "
            << (request.options.with_preprocessing ? "uint8 BGR N x H x W x 3"
                                                   : "float32 N x 3 x H x W")
            << ")\n";
  return kExitOk;
}

struct Int8Options {
  ModelOptions model;  // model.int8_calibration: the file to write
  std::vector<std::string> inputs;
  Int8CalibrationOptions calibration;
};

// Calibrates the model on LibTorch (the description's reference) over the inputs' faces.
int run_calibrate_int8(const Int8Options& o) {
  ModelOptions model = o.model;
  model.precision = "reference";  // calibration evaluates the description on LibTorch
  const auto model_files = resolve_model_files(model);
  const Embedder embedder = load_model(model_files, model);
  const FaceAligner aligner = make_face_aligner(model, embedder.manifest());
  std::unique_ptr<ProgressBar> bar;
  Int8CalibrationProgress progress;
  progress.begin = [&](std::size_t total) {
    bar = std::make_unique<ProgressBar>(total, "calibrate");
  };
  progress.face_added = [&] { bar->advance(1); };
  progress.skipped = [](const std::string& path, const std::string& reason) {
    spdlog::warn("skipped {}: {}", path.empty() ? "a photo" : path, reason);
  };
  Int8CalibrationOptions options = o.calibration;
  options.out = model.int8_calibration;
  const auto run =
      calibrate_int8_on_files(embedder, aligner, o.inputs, model_files.weights, options, progress);
  std::cout << to_json(run).dump() << std::endl;
  return 0;
}

// `facemag export onnx`: flags.
Runner add_export_command(CLI::App& app) {
  auto exp = std::make_shared<ExportOptions>();
  auto* export_cmd = app.add_subcommand("export", "Write a model in another format");
  export_cmd->require_subcommand(1);
  auto* onnx = export_cmd->add_subcommand(
      "onnx",
      "ONNX with the manifest in its metadata, checked by ONNX's checker and shape inference");
  std::vector<std::string> archs = builtin_architectures();
  for (auto& name : mtcnn_network_names()) archs.push_back(std::move(name));
  exp->arch_option = onnx->add_option("--arch", exp->arch,
                                      "Network (mtcnn-pnet/rnet/onet: facenet-pytorch's files)")
                         ->check(CLI::IsMember(archs))
                         ->capture_default_str();
  onnx->add_option("--weights", exp->weights, "Checkpoint (default $FACEMAG_HOME/<model>.pth)");
  onnx->add_option("--manifest", exp->manifest,
                   "Model manifest (default: WEIGHTS.manifest.json when it exists)");
  add_store_model_option(*onnx, exp->arch, exp->weights, &exp->manifest);
  onnx->add_option("--out", exp->out, "The .onnx file to write")->required();
  onnx->add_option(
          "--opset", exp->request.options.opset,
          "ONNX opset " + std::to_string(kMinOnnxOpset) + ".." + std::to_string(kMaxOnnxOpset))
      ->capture_default_str();
  onnx->add_option("--batch", exp->batch, "dynamic, or a fixed batch size")->capture_default_str();
  onnx->add_flag("--with-preprocessing", exp->request.options.with_preprocessing,
                 "Input uint8 N x H x W x 3 BGR (OpenCV images); colour order and normalisation "
                 "inside the graph");
  onnx->add_flag("--no-classifier", exp->no_classifier,
                 "inception_resnet_v1: leave out the classifier (only \"features\")");
  onnx->add_flag("--no-verify", exp->no_verify,
                 "Export weights even when their SHA-256 is not the manifest's");
  return [onnx, exp]() -> int { return onnx->parsed() ? run_export(*exp) : -1; };
}

// `facemag calibrate-int8`: flags.
Runner add_calibrate_int8_command(CLI::App& app) {
  auto int8 = std::make_shared<Int8Options>();
  auto* calibrate = app.add_subcommand(
      "calibrate-int8",
      "Measure a model's value ranges on your faces for --precision int8 (writes "
      "WEIGHTS.int8.json, or --int8-calibration FILE); inputs as for embed: aligned crops, "
      "--landmarks or photos (MTCNN); --flip for models used with mirror features");
  add_model_options(*calibrate, int8->model, "iresnet100");
  add_face_choice_options(*calibrate, int8->model);
  calibrate->add_option("inputs", int8->inputs, "Faces or photos (files, folders, @list.txt)")
      ->required();
  calibrate->add_option("--max-faces", int8->calibration.max_faces, "Use at most this many faces")
      ->capture_default_str();
  calibrate
      ->add_option("--percentile", int8->calibration.percentile,
                   "A value's range: this percentile of its magnitudes (100: the largest)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  return
      [calibrate, int8]() -> int { return calibrate->parsed() ? run_calibrate_int8(*int8) : -1; };
}

}  // namespace

// `facemag models ...`, `export onnx` and `calibrate-int8`: flags.
Runner add_model_commands(CLI::App& app) {
  auto opt = std::make_shared<ModelsOptions>();
  auto* models = app.add_subcommand(
      "models",
      "The model store ($FACEMAG_HOME/models, default ~/.facemag/models): named weights with a "
      "verified SHA-256");
  models->require_subcommand(1);
  auto* list = models->add_subcommand("list", "Name, architecture, size, source and licence");
  list->add_flag("--json", opt->json, "One JSON object per model");
  auto* add = models->add_subcommand(
      "add", "Copy a checkpoint into the store with its manifest and SHA-256 (checked by loading)");
  add->add_option("name", opt->name, "Name to use with --model")->required();
  add->add_option("file", opt->file, "Checkpoint")->required()->check(CLI::ExistingFile);
  add->add_option("--arch", opt->arch, "Architecture")
      ->check(CLI::IsMember(builtin_architectures()));
  add->add_option("--manifest", opt->manifest, "Start from this manifest (e.g. a calibrated one)");
  add->add_option("--source", opt->source, "Where the weights come from");
  add->add_option("--licence", opt->licence, "Their licence (research-only ones are marked)");
  add->add_flag("--default", opt->make_default,
                "Make it the model commands use when given no --weights or --model");
  auto* defaults = models->add_subcommand(
      "default", "Print the default model, or make NAME the default (used without --weights)");
  defaults->add_option("name", opt->name, "Model");
  auto* verify = models->add_subcommand("verify", "Recompute SHA-256s and compare (all, or NAME)");
  verify->add_option("name", opt->name, "One model");
  auto* path = models->add_subcommand("path", "Print a model's weights file");
  path->add_option("name", opt->name, "Model")->required();
  auto* remove = models->add_subcommand("remove", "Delete a model from the store");
  remove->add_option("name", opt->name, "Model")->required();

  const Runner export_runner = add_export_command(app);
  const Runner calibrate_runner = add_calibrate_int8_command(app);
  return [=]() -> int {
    if (list->parsed()) return run_list(*opt);
    if (add->parsed()) return run_add(*opt);
    if (verify->parsed()) return run_verify(*opt);
    if (path->parsed()) {
      std::cout << ModelStore::from_environment().get(opt->name).weights.string() << "\n";
      return kExitOk;
    }
    if (remove->parsed()) {
      ModelStore::from_environment().remove(opt->name);
      std::cout << "removed " << opt->name << "\n";
      return kExitOk;
    }
    if (defaults->parsed()) return run_default(*opt);
    if (const int code = export_runner(); code != -1) return code;
    return calibrate_runner();
  };
}

}  // namespace facemag::cli
