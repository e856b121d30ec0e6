#include "facemag/model/store.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/model/network.hpp"
#include "facemag/model/resolve.hpp"

namespace facemag {

namespace {

constexpr const char* kManifestFile = "manifest.json";
// Hidden, as the store's own bookkeeping: model names cannot start with '.', list() skips it.
constexpr const char* kDefaultFile = ".default";

void check_name(const std::string& name) {
  const bool plain =
      !name.empty() && name.front() != '.' && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (!plain)
    throw InvalidInput("model name '" + name +
                       "': use letters, digits, '.', '_' and '-' (not starting with '.')");
}

std::string lowercase(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The weights file of a model folder: the one file that is not the manifest.
std::filesystem::path weights_in(const std::filesystem::path& folder) {
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.is_regular_file() && entry.path().filename() != kManifestFile) return entry.path();
  }
  throw InvalidInput(folder.string() + ": no weights file in this model folder");
}

StoredModel read_model(const std::filesystem::path& folder) {
  StoredModel model;
  model.name = folder.filename().string();
  model.manifest = folder / kManifestFile;
  model.description = load_manifest(model.manifest);
  model.weights = weights_in(folder);
  model.size_bytes = std::filesystem::file_size(model.weights);
  return model;
}

}  // namespace

void verify_weights_sha256(const std::filesystem::path& weights, const std::string& expected) {
  require_weights_sha256(weights, expected, io::sha256_file(weights));
}

void require_weights_sha256(const std::filesystem::path& weights, const std::string& expected,
                            const std::string& actual) {
  if (lowercase(expected) != actual) {
    throw ModelLoadError(weights.string() + ": SHA-256 " + actual + " is not the manifest's " +
                         expected + " (a changed or damaged file; --no-verify loads it anyway)");
  }
}

bool is_research_only_licence(const std::string& licence) {
  const auto text = lowercase(licence);
  for (const char* marker : {"non-commercial", "noncommercial", "non commercial", "research only",
                             "research-only", "research purposes", "cc-by-nc", "cc by-nc"}) {
    if (text.find(marker) != std::string::npos) return true;
  }
  return false;
}

ModelStore::ModelStore(std::filesystem::path root) : root_(std::move(root)) {}

ModelStore ModelStore::from_environment() { return ModelStore(facemag_home() / "models"); }

std::vector<StoredModel> ModelStore::list() const {
  std::vector<StoredModel> models;
  std::error_code ec;
  if (!std::filesystem::is_directory(root_, ec)) return models;
  for (const auto& entry : std::filesystem::directory_iterator(root_)) {
    const auto name = entry.path().filename().string();
    if (!entry.is_directory() || name.front() == '.') continue;  // .adding-* in progress
    try {
      models.push_back(read_model(entry.path()));
    } catch (const Error&) {
      // Not a model folder: left alone.
    }
  }
  std::sort(models.begin(), models.end(),
            [](const StoredModel& a, const StoredModel& b) { return a.name < b.name; });
  return models;
}

bool ModelStore::contains(const std::string& name) const {
  std::error_code ec;
  return std::filesystem::exists(root_ / name / kManifestFile, ec);
}

StoredModel ModelStore::get(const std::string& name) const {
  check_name(name);
  if (!contains(name)) {
    std::string known;
    for (const auto& m : list()) known += (known.empty() ? "" : ", ") + m.name;
    throw InvalidInput("no model '" + name + "' in " + root_.string() +
                       (known.empty() ? " (the store is empty: facemag models add NAME FILE)"
                                      : " (it has: " + known + ")"));
  }
  return read_model(root_ / name);
}

StoredModel ModelStore::add(const std::string& name, const std::filesystem::path& weights,
                            ModelManifest manifest) const {
  check_name(name);
  if (contains(name))
    throw InvalidInput("a model '" + name + "' is already in " + root_.string() +
                       " (facemag models remove " + name + " first)");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(weights, ec))
    throw InvalidInput(weights.string() + ": no such file");
  std::filesystem::create_directories(root_);
  // Built in a hidden folder and renamed into place: a kill leaves no half-added model.
  const auto building = root_ / (".adding-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(building, ec);
  try {
    std::filesystem::create_directory(building);
    auto copy = building / ("weights" + weights.extension().string());
    std::filesystem::copy_file(weights, copy);
    manifest.sha256 = io::sha256_file(copy);
    if (manifest.name.empty()) manifest.name = name;
    save_manifest(building / kManifestFile, manifest);
    std::filesystem::rename(building, root_ / name);
  } catch (...) {
    std::filesystem::remove_all(building, ec);
    throw;
  }
  return read_model(root_ / name);
}

void ModelStore::remove(const std::string& name) const {
  const auto model = get(name);  // checks the name and that it exists
  // Renamed away first: the model disappears at once even if deleting its files is interrupted.
  const auto doomed = root_ / (".removing-" + name + "-" + std::to_string(::getpid()));
  // The default goes first: an interrupted removal leaves no default naming a missing model.
  if (default_name() == name) std::filesystem::remove(root_ / kDefaultFile);
  std::filesystem::rename(root_ / name, doomed);
  std::filesystem::remove_all(doomed);
}

std::optional<std::string> ModelStore::default_name() const {
  std::error_code ec;
  if (!std::filesystem::exists(root_ / kDefaultFile, ec)) return std::nullopt;
  std::string name = io::read_file_bytes(root_ / kDefaultFile);
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  if (name.empty()) return std::nullopt;
  return name;
}

void ModelStore::set_default(const std::string& name) const {
  get(name);  // checks the name and that it exists
  io::write_file_atomic(root_ / kDefaultFile, name + "\n");
}

std::string licence_label(const ModelManifest& manifest) {
  return is_research_only_licence(manifest.licence) ? manifest.licence + " [RESEARCH ONLY]"
                                                    : manifest.licence;
}

std::string megabytes_text(std::uintmax_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

std::string models_text(const std::vector<StoredModel>& models,
                        const std::optional<std::string>& default_name) {
  std::string out;
  for (const auto& m : models) {
    out += m.name + "\t" + m.description.architecture + "\t" + megabytes_text(m.size_bytes) + "\t" +
           m.description.source + "\t" + licence_label(m.description) +
           (m.name == default_name ? "\tdefault" : "") + "\n";
  }
  return out;
}

std::string to_text(const std::vector<ModelCheck>& checks) {
  std::string out;
  for (const auto& [m, error] : checks)
    out += (error.empty() ? "ok\t" + m.name + "\t" + m.description.sha256
                          : "FAILED\t" + m.name + "\t" + error) +
           "\n";
  return out;
}

nlohmann::json to_json(const StoredModel& model, bool is_default) {
  return {{"name", model.name},
          {"default", is_default},
          {"architecture", model.description.architecture},
          {"size_bytes", model.size_bytes},
          {"weights", model.weights.string()},
          {"sha256", model.description.sha256},
          {"source", model.description.source},
          {"licence", model.description.licence},
          {"research_only", is_research_only_licence(model.description.licence)}};
}

ModelManifest manifest_for_new_model(const NewModel& model) {
  const std::string file = model.file.string();
  const std::string manifest_file = model.manifest.string();
  if (model.architecture.empty() && model.manifest.empty())
    throw InvalidInput("models add: give --arch (or --manifest) for " + file);
  ModelManifest manifest =
      model.manifest.empty() ? builtin_manifest(model.architecture) : load_manifest(model.manifest);
  if (!model.architecture.empty() && manifest.architecture != model.architecture)
    throw InvalidInput("--arch " + model.architecture + " but " + manifest_file + " describes " +
                       manifest.architecture);
  if (!model.source.empty()) manifest.source = model.source;
  if (!model.licence.empty()) manifest.licence = model.licence;
  manifest.name = model.name;
  manifest.sha256.clear();
  load_network(manifest, model.file);
  return manifest;
}

std::vector<ModelCheck> ModelStore::verify(const std::string& name) const {
  std::vector<ModelCheck> checks;
  if (name.empty()) {
    for (auto& model : list()) checks.push_back({std::move(model), {}});
  } else {
    checks.push_back({get(name), {}});
  }
  for (auto& check : checks) {
    try {
      verify_weights_sha256(check.model.weights, check.model.description.sha256);
    } catch (const Error& e) {
      check.error = e.what();
    }
  }
  return checks;
}

}  // namespace facemag
