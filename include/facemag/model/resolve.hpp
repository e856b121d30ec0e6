// The one place that turns what a user asked for (`--arch/--weights/--manifest`, `--model NAME`,
// nothing at all, or a gallery's binding) into a model's files: the weights, the manifest that
// describes them, and where their int8 calibration is kept.
//
// Files facemag keeps for a user live under facemag_home(): $FACEMAG_HOME when set, else
// ~/.facemag (the install step registers the bundled models there):
//   models/NAME/           the model store (see ModelStore), models/.default naming its default
//   mtcnn/                 the detector's pnet.pt, rnet.pt, onet.pt
//   <model name>.pth       weights found by their manifest name (older layout, still read)
#pragma once

#include <filesystem>
#include <string>

#include "facemag/model/manifest.hpp"

namespace facemag {

// $FACEMAG_HOME, else $HOME/.facemag; InvalidInput when neither variable is set.
std::filesystem::path facemag_home();

// The MTCNN detector's folder (pnet.pt, rnet.pt, onet.pt): `given` (--mtcnn) when not empty, else
// facemag_home()/mtcnn, where the install step puts the bundled one.
std::filesystem::path mtcnn_folder(const std::filesystem::path& given = {});

// Where `facemag calibrate --save` writes a model's manifest: WEIGHTS.manifest.json.
std::filesystem::path manifest_path_for(const std::filesystem::path& weights);
// Where a checkpoint's int8 calibration is looked for by default: WEIGHTS.int8.json.
std::filesystem::path int8_calibration_path(const std::filesystem::path& weights);

// What a user asked for. Every field may be empty.
struct ModelRequest {
  std::string architecture;         // --arch (see architecture_given)
  bool architecture_given = false;  // false: `architecture` is only a command's default
  std::filesystem::path weights;    // --weights
  std::string store_name;           // --model NAME
  std::filesystem::path manifest;   // --manifest
  bool concat_flipped = false;      // --flip: embed the mirror image too
  bool prewhiten = false;           // facenet-pytorch's per-face standardisation
};

// A model's files, found.
struct ResolvedModel {
  std::filesystem::path weights;
  // The manifest: --manifest, else the store's, else WEIGHTS.manifest.json (a calibration), else
  // the built-in one of the architecture; with --flip / prewhiten applied. Its sha256 (when set)
  // is what loading verifies.
  ModelManifest manifest;
  std::filesystem::path manifest_file;  // empty: the built-in manifest
  std::string origin;                   // how the weights were found, for messages
};

// Resolves a request; InvalidInput naming what was looked for when nothing is found.
//   1. --model NAME: the store's weights and manifest (an --arch given must be the model's);
//   2. --weights FILE;
//   3. neither: the store's default model (models/.default) when it is of the architecture asked
//      for (--manifest's, else a given --arch; any when neither); else facemag_home()/<name>.pth,
//      <name> the built-in manifest name of that architecture (--arch's default when none was
//      given; mobilefacenet when the request names no architecture at all).
ResolvedModel resolve_model(const ModelRequest& request);

// `manifest` with what `request` asks of the embedding applied (--flip: concat_flipped,
// prewhiten): resolve_model's last step, for a manifest found without it.
ModelManifest with_embedding_options(ModelManifest manifest, const ModelRequest& request);

// The manifest of a model whose embeddings are already computed (commands that take features,
// where the weights may be absent): resolve_model's when the request names weights or a store
// model; else --manifest's, or the built-in one of the architecture (mobilefacenet when none),
// with_embedding_options applied.
ModelManifest resolve_manifest(const ModelRequest& request);

}  // namespace facemag
