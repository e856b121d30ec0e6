// The model store: named models kept as $FACEMAG_HOME/models/NAME/ (the weights file and
// manifest.json), each manifest holding the SHA-256 of its weights, so that a broken download or a
// changed file is refused instead of silently giving other features.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

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

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

}  // namespace facemag
