// A gallery as portable files (`facemag gallery export` / `import`, and any other front end).
// The archive named BASE is three files:
//   BASE.npy         N x D float32: row r is the raw embedding of face r (D = the model's
//                    embedding size)
//   BASE.jsonl       one JSON object per face, in the gallery's face order: "row" (into BASE.npy),
//                    "id", "person", "source" (photo path), "image_sha256", "box" [x1, y1, x2, y2],
//                    "landmarks" (5 [x, y], image left eye first), "score", "quality" (the raw
//                    magnitude), "enrolled_at" (UTC, ISO 8601)
//   BASE.model.json  the ModelBinding the embeddings come from
// Exporting a gallery, importing the archive into a new one and exporting that gives the same
// files, bit for bit (face ids aside).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "facemag/gallery/gallery.hpp"

namespace facemag::gallery {

struct ArchiveFiles {
  std::filesystem::path embeddings;  // BASE.npy
  std::filesystem::path faces;       // BASE.jsonl
  std::filesystem::path model;       // BASE.model.json
};
// The files of the archive named `base` (a path without the extensions).
ArchiveFiles archive_files(const std::string& base);

// A binding as a JSON object (keys as the fields of ModelBinding), pretty-printed with two spaces,
// without a final newline.
std::string model_binding_json(const ModelBinding& model);
// The binding of such JSON text (weights_path may be absent). InvalidInput naming `source` for
// text that is not JSON, or a field that is missing or of another type.
ModelBinding parse_model_binding_json(std::string_view text, const std::string& source);

struct ExportSummary {
  std::size_t faces = 0;  // rows written
  ArchiveFiles files;
};

// Writes every face of `gallery` as the archive `base` (replacing files of that name).
// InvalidInput naming the file that cannot be written.
ExportSummary export_gallery(const Gallery& gallery, const std::string& base);

struct Archive {
  ModelBinding model;
  std::vector<NewFace> faces;  // in the archive's order; enrolled_at as recorded
};

// Reads and checks a whole archive. InvalidInput naming the file (and the line of BASE.jsonl) for
// a missing BASE.model.json ("BASE.model.json: no such export"), a record that is not a face
// record, a row that is not in BASE.npy or rows of another size than the model's embeddings.
Archive read_archive(const std::string& base);

struct ImportSummary {
  std::size_t faces = 0;  // in the archive
  int added = 0;          // stored now
  int duplicates = 0;     // already in the gallery (same image SHA-256 and box)
  bool created = false;   // no gallery was at the location: one was created for the archive's model
  std::string location;   // the gallery's location
};

// Adds the faces of the archive `base` to the gallery at `location` in one transaction, creating
// the gallery (bound to the archive's model) when none is there. The archive is read and checked
// whole before the gallery is touched. GalleryError for a gallery bound to another model.
ImportSummary import_gallery(const std::string& base, const std::string& location);

}  // namespace facemag::gallery
