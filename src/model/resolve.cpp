#include "facemag/model/resolve.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <optional>

#include "facemag/error.hpp"
#include "facemag/model/store.hpp"

namespace facemag {

std::filesystem::path facemag_home() {
  if (const char* home = std::getenv("FACEMAG_HOME"); home && *home) return home;
  if (const char* user = std::getenv("HOME"); user && *user)
    return std::filesystem::path(user) / ".facemag";
  throw InvalidInput("neither FACEMAG_HOME nor HOME is set: facemag has no folder for its models");
}

std::filesystem::path mtcnn_folder(const std::filesystem::path& given) {
  return given.empty() ? facemag_home() / "mtcnn" : given;
}

std::filesystem::path manifest_path_for(const std::filesystem::path& weights) {
  return weights.string() + ".manifest.json";
}

std::filesystem::path int8_calibration_path(const std::filesystem::path& weights) {
  return weights.string() + ".int8.json";
}

namespace {

ResolvedModel from_store(const ModelStore& store, const std::string& name,
                         const ModelRequest& request) {
  const StoredModel model = store.get(name);
  const auto& stored_arch = model.description.architecture;
  if (request.architecture_given && request.architecture != stored_arch)
    throw InvalidInput("--arch " + request.architecture + " but the model '" + name + "' is " +
                       stored_arch);
  ResolvedModel out;
  out.weights = model.weights;
  out.manifest_file = request.manifest.empty() ? model.manifest : request.manifest;
  out.origin = "model '" + name + "' of " + store.root().string();
  return out;
}

// Rule 3: no --model and no --weights.
ResolvedModel unnamed(const ModelRequest& request) {
  const auto home = facemag_home();
  const ModelStore store(home / "models");
  // The architecture asked for: --manifest's, else a given --arch; none: any.
  std::optional<std::string> wanted;
  if (!request.manifest.empty()) {
    wanted = load_manifest(request.manifest).architecture;
  } else if (request.architecture_given) {
    wanted = request.architecture;
  }
  if (const auto name = store.default_name(); name && store.contains(*name)) {
    const auto arch = store.get(*name).description.architecture;
    if (!wanted || *wanted == arch) {
      ModelRequest from_default = request;
      from_default.architecture_given = false;  // checked above, against the manifest's too
      auto out = from_store(store, *name, from_default);
      out.origin = "the default model '" + *name + "' of " + store.root().string();
      return out;
    }
  }
  const std::string arch = wanted                         ? *wanted
                           : request.architecture.empty() ? "mobilefacenet"
                                                          : request.architecture;
  const auto candidate = home / (builtin_manifest(arch).name + ".pth");
  if (std::filesystem::exists(candidate)) return {candidate, {}, {}, candidate.string()};
  throw InvalidInput("no --weights or --model given, no default model in " + store.root().string() +
                     " for " + arch + ", and " + candidate.string() +
                     " does not exist (facemag models add NAME FILE --default registers one)");
}

}  // namespace

ResolvedModel resolve_model(const ModelRequest& request) {
  ResolvedModel out;
  if (!request.store_name.empty()) {
    out = from_store(ModelStore::from_environment(), request.store_name, request);
  } else if (!request.weights.empty()) {
    out.weights = request.weights;
    out.manifest_file = request.manifest;
    out.origin = request.weights.string();
  } else {
    out = unnamed(request);
    if (!request.manifest.empty()) out.manifest_file = request.manifest;
  }
  if (out.manifest_file.empty() && std::filesystem::exists(manifest_path_for(out.weights))) {
    out.manifest_file = manifest_path_for(out.weights);
    spdlog::info("using the calibrated manifest {}", out.manifest_file.string());
  }
  if (!out.manifest_file.empty()) {
    out.manifest = load_manifest(out.manifest_file);
    if (request.architecture_given && out.manifest.architecture != request.architecture &&
        !request.manifest.empty())
      spdlog::info("the manifest describes {}: using it instead of --arch {}",
                   out.manifest.architecture, request.architecture);
  } else {
    out.manifest =
        builtin_manifest(request.architecture.empty() ? "mobilefacenet" : request.architecture);
  }
  out.manifest = with_embedding_options(std::move(out.manifest), request);
  return out;
}

ModelManifest with_embedding_options(ModelManifest manifest, const ModelRequest& request) {
  if (request.concat_flipped) manifest.concat_flipped = true;
  if (request.prewhiten) manifest.prewhiten = true;
  return manifest;
}

ModelManifest resolve_manifest(const ModelRequest& request) {
  if (!request.weights.empty() || !request.store_name.empty())
    return resolve_model(request).manifest;
  const std::string arch = request.architecture.empty() ? "mobilefacenet" : request.architecture;
  return with_embedding_options(
      request.manifest.empty() ? builtin_manifest(arch) : load_manifest(request.manifest), request);
}

}  // namespace facemag
