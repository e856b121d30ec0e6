#include "gallery_model.hpp"

#include "facemag/gallery/decide.hpp"

namespace facemag::cli {

void add_gallery_index_options(CLI::App& command, GalleryIndexOptions& index) {
  command
      .add_option("--index", index.kind,
                  "auto (exact up to " + std::to_string(gallery::kExactUpTo) +
                      " people, hnsw above), exact, hnsw or ivf")
      ->check(CLI::IsMember({"auto", "exact", "hnsw", "ivf"}))
      ->capture_default_str();
  command.add_option("--index-file", index.file,
                     "Where an hnsw index is saved and read back at the next start (default: "
                     "DB.index next to a SQLite gallery; none for PostgreSQL)");
}

gallery::Gallery open_indexed(const std::string& location, const GalleryIndexOptions& index) {
  return gallery::Gallery::open(location, std::nullopt, gallery::parse_index_kind(index.kind),
                                index.file);
}

OpenGallery open_with_model(const std::string& location, const ModelOptions& given, bool arch_given,
                            const GalleryIndexOptions& index) {
  auto g = open_indexed(location, index);
  // The user's model, or the gallery's own.
  auto asked = model_request(given);
  asked.architecture_given = arch_given;
  const auto chosen = gallery::gallery_model_request(asked, g.model());
  ModelOptions opt = given;
  opt.weights = chosen.weights.string();
  opt.arch = chosen.architecture;
  opt.flip = chosen.concat_flipped;
  if (opt.weights.empty())
    throw InvalidInput(location +
                       ": the gallery does not say where its weights are: give --weights");
  const auto files = resolve_model_files(opt);
  Embedder embedder = load_model(files, opt);
  g.require_model(gallery::binding_of(embedder, files.weights));
  return {std::move(g), std::move(embedder), opt};
}

ModelWithGallery load_model_with_gallery(const std::string& gallery, const ModelOptions& given,
                                         bool arch_given, const GalleryIndexOptions& index) {
  ModelWithGallery out;
  if (gallery.empty()) {
    out.own.emplace(load_model(given));
    out.model = given;
  } else {
    out.opened.emplace(open_with_model(gallery, given, arch_given, index));
    out.model = out.opened->model;
  }
  return out;
}

}  // namespace facemag::cli
