#include "facemag/gallery/contents.hpp"

namespace facemag::gallery {

GalleryContents contents_of(const Gallery& gallery) {
  GalleryContents out;
  out.persons = gallery.persons();
  for (const auto& p : out.persons) out.faces += static_cast<std::size_t>(p.faces);
  out.unassigned = gallery.unassigned_count();
  return out;
}

GalleryCheck check_gallery(const Gallery& gallery, int recall_queries) {
  GalleryCheck out;
  out.problems = gallery.check();
  out.contents = contents_of(gallery);
  out.schema_version = gallery.schema_version();
  out.index = gallery.index_status();
  if (recall_queries > 0) out.recall = gallery.index_recall(recall_queries);
  return out;
}

}  // namespace facemag::gallery
