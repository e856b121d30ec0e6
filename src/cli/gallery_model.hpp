// A gallery opened together with the model its embeddings come from, for every command that
// searches or fills one (`gallery ...`, `eval identify`, `video --gallery`).
#pragma once

#include <optional>
#include <string>

#include "encoder.hpp"
#include "facemag/gallery/gallery.hpp"

namespace facemag::cli {

// How a command's gallery index is chosen (--index, --index-file).
struct GalleryIndexOptions {
  std::string kind = "auto";  // gallery::parse_index_kind
  std::string file;  // a saved hnsw index ("": next to a SQLite gallery, none on PostgreSQL)
};
void add_gallery_index_options(CLI::App& command, GalleryIndexOptions& index);
// The gallery at `location` with the index the options ask for.
gallery::Gallery open_indexed(const std::string& location, const GalleryIndexOptions& index);

struct OpenGallery {
  gallery::Gallery gallery;
  Embedder embedder;
  ModelOptions model;  // the options that loaded `embedder`
};

// Opens the gallery at `location` and loads its model: the user's --weights / --arch when given
// (`arch_given`: --arch was on the command line), else the weights, architecture and mirror
// features the gallery was created with (gallery::gallery_model_request). GalleryError when the
// model is not the gallery's.
OpenGallery open_with_model(const std::string& location, const ModelOptions& given, bool arch_given,
                            const GalleryIndexOptions& index = {});

// The model a command runs with an optional gallery (`video --gallery`, `serve --gallery`): the
// gallery's, opened with it, when `gallery` is given; else the one the options name.
struct ModelWithGallery {
  std::optional<OpenGallery> opened;  // set when a gallery was given
  std::optional<Embedder> own;        // set otherwise
  ModelOptions model;                 // the options that loaded the model
  const Embedder& embedder() const { return opened ? opened->embedder : *own; }
  gallery::Gallery* gallery() { return opened ? &opened->gallery : nullptr; }
};
ModelWithGallery load_model_with_gallery(const std::string& gallery, const ModelOptions& given,
                                         bool arch_given, const GalleryIndexOptions& index = {});

}  // namespace facemag::cli
