// The model store: named models kept as $FACEMAG_HOME/models/NAME/ (the weights file and
// manifest.json), each manifest holding the SHA-256 of its weights, so that a broken download or a
// changed file is refused instead of silently giving other features.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "facemag/model/manifest.hpp"

namespace facemag {

struct StoredModel {
  std::string name;
  std::filesystem::path weights;   // the copy inside the store
  std::filesystem::path manifest;  // NAME/manifest.json
  ModelManifest description;
  std::uintmax_t size_bytes = 0;  // of the weights
};

// ModelLoadError naming the file and both hashes when the file's SHA-256 is not `expected`
// (lowercase hex). The file is streamed, never held in memory.
void verify_weights_sha256(const std::filesystem::path& weights, const std::string& expected);
// The same check of a hash already computed (`actual`, lowercase hex).
void require_weights_sha256(const std::filesystem::path& weights, const std::string& expected,
                            const std::string& actual);

// True for licences that forbid commercial use ("non-commercial", "research only", CC BY-NC...):
// `models list` marks them.
bool is_research_only_licence(const std::string& licence);

// The licence as `models list` shows it: marked " [RESEARCH ONLY]" when it forbids commercial use.
std::string licence_label(const ModelManifest& manifest);

// A stored model's record (`models list --json`): name, default, architecture, size_bytes,
// weights, sha256, source, licence, research_only.
nlohmann::json to_json(const StoredModel& model, bool is_default);

// A size as `models list` and `export onnx` show it: "12.3 MB" (10^6 bytes, one decimal).
std::string megabytes_text(std::uintmax_t bytes);

// `models list`'s table, one tab-separated line per model: name, architecture, size, source,
// licence_label, and "default" for `default_name`'s.
std::string models_text(const std::vector<StoredModel>& models,
                        const std::optional<std::string>& default_name);

// What `models add` is given: a checkpoint and what describes it.
struct NewModel {
  std::string name;
  std::filesystem::path file;
  std::string architecture;        // a built-in architecture; may be empty with `manifest`
  std::filesystem::path manifest;  // start from this manifest (e.g. a calibrated one)
  std::string source;              // empty: the manifest's
  std::string licence;             // empty: the manifest's
};

// The manifest a new model is stored with (ModelStore::add): the given or built-in one, renamed,
// with `source`/`licence` applied and no sha256 yet. The checkpoint is loaded once, strictly, so
// that one of another architecture is refused now, not at its first use. InvalidInput when
// neither an architecture nor a manifest is given, or when they disagree.
ModelManifest manifest_for_new_model(const NewModel& model);

// One model's hash check (`models verify`): `error` empty when its weights are as recorded.
struct ModelCheck {
  StoredModel model;
  std::string error;
};

// `models verify`'s lines, one per check: "ok\tNAME\tSHA256" or "FAILED\tNAME\tERROR".
std::string to_text(const std::vector<ModelCheck>& checks);

class ModelStore {
 public:
  explicit ModelStore(std::filesystem::path root);
  // facemag_home()/models ($FACEMAG_HOME/models, else ~/.facemag/models).
  static ModelStore from_environment();

  // Every model, by name. A folder without a readable manifest is skipped.
  std::vector<StoredModel> list() const;
  // InvalidInput naming the store and the models it has when `name` is not one of them.
  StoredModel get(const std::string& name) const;
  bool contains(const std::string& name) const;
  // Copies `weights` into the store under `name` with `manifest` (its sha256 set to the copy's),
  // all or nothing: the model appears complete or not at all. InvalidInput when the name is taken
  // or not a plain name ([A-Za-z0-9._-], not starting with '.').
  StoredModel add(const std::string& name, const std::filesystem::path& weights,
                  ModelManifest manifest) const;
  // InvalidInput for an unknown name. Removing the default model leaves the store without one.
  void remove(const std::string& name) const;

  // The model used when a command names none (the file .default beside the models), if any.
  std::optional<std::string> default_name() const;
  // Makes a stored model the default; InvalidInput for an unknown name.
  void set_default(const std::string& name) const;

  // Recomputes the SHA-256 of every model's weights (or only `name`'s; InvalidInput for an
  // unknown one) and compares it with its manifest's.
  std::vector<ModelCheck> verify(const std::string& name = {}) const;

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

}  // namespace facemag
