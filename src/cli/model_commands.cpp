// `facemag models list|add|verify|path|remove` (the model store) and `facemag export onnx`.
#include <spdlog/spdlog.h>

#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/export/onnx.hpp"
#include "facemag/io/file.hpp"
#include "facemag/io/image.hpp"
#include "facemag/io/sha256.hpp"
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

std::string megabytes(std::uintmax_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

std::string licence_text(const ModelManifest& m) {
  return is_research_only_licence(m.licence) ? m.licence + " [RESEARCH ONLY]" : m.licence;
}

int run_list(const ModelsOptions& opt) {
  const auto store = ModelStore::from_environment();
  const auto models = store.list();
  const auto default_name = store.default_name();
  if (opt.json) {
    for (const auto& m : models) {
      std::cout << nlohmann::json{{"name", m.name},
                                  {"default", m.name == default_name},
                                  {"architecture", m.description.architecture},
                                  {"size_bytes", m.size_bytes},
                                  {"weights", m.weights.string()},
                                  {"sha256", m.description.sha256},
                                  {"source", m.description.source},
                                  {"licence", m.description.licence},
                                  {"research_only",
                                   is_research_only_licence(m.description.licence)}}
                       .dump()
                << "\n";
    }
    return kExitOk;
  }
  if (models.empty()) {
    std::cerr << "facemag: no models in " << store.root().string()
              << " (facemag models add NAME FILE --arch ARCH)\n";
    return kExitOk;
  }
  for (const auto& m : models) {
    std::cout << m.name << "\t" << m.description.architecture << "\t" << megabytes(m.size_bytes)
              << "\t" << m.description.source << "\t" << licence_text(m.description)
              << (m.name == default_name ? "\tdefault" : "") << "\n";
  }
  return kExitOk;
}

int run_add(const ModelsOptions& opt) {
  if (opt.arch.empty() && opt.manifest.empty())
    throw InvalidInput("models add: give --arch (or --manifest) for " + opt.file);
  ModelManifest manifest =
      opt.manifest.empty() ? builtin_manifest(opt.arch) : load_manifest(opt.manifest);
  if (!opt.arch.empty() && manifest.architecture != opt.arch)
    throw InvalidInput("--arch " + opt.arch + " but " + opt.manifest + " describes " +
                       manifest.architecture);
  if (!opt.source.empty()) manifest.source = opt.source;
  if (!opt.licence.empty()) manifest.licence = opt.licence;
  manifest.name = opt.name;
  manifest.sha256.clear();
  // Loaded once, strictly, before it is stored: a checkpoint of another architecture is refused
  // now, not at its first use.
  load_network(manifest, opt.file);
  const auto store = ModelStore::from_environment();
  const auto model = store.add(opt.name, opt.file, manifest);
  std::cout << "added " << model.name << ": " << model.description.architecture << ", "
            << megabytes(model.size_bytes) << ", sha256 " << model.description.sha256 << "\n";
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
  const auto store = ModelStore::from_environment();
  std::vector<StoredModel> models;
  if (opt.name.empty()) {
    models = store.list();
  } else {
    models.push_back(store.get(opt.name));
  }
  std::size_t bad = 0;
  for (const auto& m : models) {
    try {
      verify_weights_sha256(m.weights, m.description.sha256);
      std::cout << "ok\t" << m.name << "\t" << m.description.sha256 << "\n";
    } catch (const Error& e) {
      std::cout << "FAILED\t" << m.name << "\t" << e.what() << "\n";
      ++bad;
    }
  }
  if (bad) {
    std::cerr << "facemag: " << bad << " of " << models.size() << " model(s) failed verification\n";
    return kExitSomeInputsFailed;
  }
  return kExitOk;
}

int run_path(const ModelsOptions& opt) {
  std::cout << ModelStore::from_environment().get(opt.name).weights.string() << "\n";
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

int run_remove(const ModelsOptions& opt) {
  ModelStore::from_environment().remove(opt.name);
  std::cout << "removed " << opt.name << "\n";
  return kExitOk;
}

// ---- export onnx ----

struct ExportOptions {
  std::string arch = "iresnet100";
  CLI::Option* arch_option = nullptr;  // --arch, to tell a given one from the default
  std::string weights;
  std::string manifest;
  std::string out;
  int opset = kMaxOnnxOpset;
  std::string batch = "dynamic";
  bool with_preprocessing = false;
  bool no_classifier = false;
  bool no_verify = false;
};

int run_export(const ExportOptions& opt) {
  OnnxExportOptions options;
  options.opset = opt.opset;
  options.with_preprocessing = opt.with_preprocessing;
  options.with_classifier = !opt.no_classifier;
  if (opt.batch != "dynamic") {
    try {
      std::size_t used = 0;
      options.batch = std::stoll(opt.batch, &used);
      if (used != opt.batch.size() || options.batch < 1) throw std::invalid_argument(opt.batch);
    } catch (const std::logic_error&) {
      throw InvalidInput("--batch " + opt.batch + ": expected 'dynamic' or a positive number");
    }
  }
  check_onnx_export_options(options);  // before the (slow) load
  const std::filesystem::path out = opt.out;
  const auto folder = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(folder))
    throw InvalidInput(opt.out + ": the folder " + folder.string() + " does not exist");
  ResolvedModel model;
  if (is_mtcnn_network_name(opt.arch)) {
    model.weights = opt.weights;
  } else {
    ModelRequest request;  // the files as every command finds them
    request.architecture = opt.arch;
    request.architecture_given = opt.arch_option && opt.arch_option->count() > 0;
    request.weights = opt.weights;
    request.manifest = opt.manifest;
    model = resolve_model(request);
    if (opt.no_verify)
      spdlog::warn("--no-verify: {} is exported without checking its SHA-256",
                   model.weights.string());
  }
  const std::string bytes = model_to_onnx(opt.arch, model, options, !opt.no_verify);
  io::write_file_atomic(out, bytes);
  std::cerr << "facemag: wrote " << opt.out << " (" << opt.arch << ", opset " << opt.opset << ", "
            << megabytes(bytes.size()) << ", input "
            << (opt.with_preprocessing ? "uint8 BGR N x H x W x 3" : "float32 N x 3 x H x W")
            << ")\n";
  return kExitOk;
}

}  // namespace

struct Int8Options {
  ModelOptions model;  // model.int8_calibration: the file to write
  std::vector<std::string> inputs;
  std::size_t max_faces = 1000;
  double percentile = 99.99;
};

// Aligns up to max_faces faces of the inputs (one per photo, as embed does; unreadable photos and
// photos without a face are reported and skipped), measures the largest magnitude of every value
// of the network over them in float32, and writes the calibration beside the weights.
int run_calibrate_int8(const Int8Options& o) {
  ModelOptions model = o.model;
  model.precision = "reference";  // calibration evaluates the description on LibTorch
  const auto model_files = resolve_model_files(model);
  const Embedder embedder = load_model(model_files, model);
  const FaceAligner aligner = make_face_aligner(model, embedder.manifest());
  std::vector<cv::Mat> faces;
  std::size_t skipped = 0;
  const auto files = io::expand_inputs(o.inputs);
  ProgressBar progress(std::min(files.size(), o.max_faces), "calibrate");
  for (std::size_t start = 0; start < files.size() && faces.size() < o.max_faces; start += 32) {
    std::vector<cv::Mat> images;
    std::vector<std::string> names;
    for (std::size_t i = start; i < std::min(files.size(), start + 32); ++i) {
      try {
        images.push_back(io::read_image_bgr(files[i].path));
        names.push_back(files[i].name.string());
      } catch (const InvalidInput& e) {
        spdlog::warn("skipped {}: {}", files[i].path.string(), e.what());
        ++skipped;
      }
    }
    for (auto& candidates : aligner.align(images, names)) {
      if (candidates.crops.empty()) {
        spdlog::warn("skipped a photo: {}", candidates.error);
        ++skipped;
      } else if (faces.size() < o.max_faces) {
        faces.push_back(candidates.crops.front());
        progress.advance(1);
      }
    }
  }
  if (faces.empty()) throw InvalidInput("calibrate-int8: no face in the inputs");
  const auto calibration = embedder.calibrate_int8(faces, o.percentile);
  const auto& weights = model_files.weights;
  const auto out = model.int8_calibration.empty() ? int8_calibration_path(weights)
                                                  : std::filesystem::path(model.int8_calibration);
  write_int8_calibration(out, embedder.manifest(), calibration);
  std::cout << nlohmann::json{{"calibration", out.string()},
                              {"model", embedder.manifest().name},
                              {"faces", calibration.faces},
                              {"skipped", skipped},
                              {"values", calibration.values.size()}}
                   .dump()
            << std::endl;
  return 0;
}

namespace {

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
          "--opset", exp->opset,
          "ONNX opset " + std::to_string(kMinOnnxOpset) + ".." + std::to_string(kMaxOnnxOpset))
      ->capture_default_str();
  onnx->add_option("--batch", exp->batch, "dynamic, or a fixed batch size")->capture_default_str();
  onnx->add_flag("--with-preprocessing", exp->with_preprocessing,
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
  calibrate->add_option("--max-faces", int8->max_faces, "Use at most this many faces")
      ->capture_default_str();
  calibrate
      ->add_option("--percentile", int8->percentile,
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
    if (path->parsed()) return run_path(*opt);
    if (remove->parsed()) return run_remove(*opt);
    if (defaults->parsed()) return run_default(*opt);
    if (const int code = export_runner(); code != -1) return code;
    return calibrate_runner();
  };
}

}  // namespace facemag::cli
