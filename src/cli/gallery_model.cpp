#include "gallery_model.hpp"

#include "facemag/gallery/decide.hpp"

namespace facemag::cli {

OpenGallery open_with_model(const std::string& location, const ModelOptions& given, bool arch_given,
                            gallery::IndexKind index) {
  auto g = gallery::Gallery::open(location, std::nullopt, index);
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
                                         bool arch_given) {
  ModelWithGallery out;
  if (gallery.empty()) {
    out.own.emplace(load_model(given));
    out.model = given;
  } else {
    out.opened.emplace(open_with_model(gallery, given, arch_given));
    out.model = out.opened->model;
  }
  return out;
}

}  // namespace facemag::cli
