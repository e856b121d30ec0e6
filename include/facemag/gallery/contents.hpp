// What a gallery holds, counted, and whether it is sound: `gallery list` and `gallery check`, and
// any other front end that reports on a gallery.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "facemag/gallery/gallery.hpp"

namespace facemag::gallery {

// The enrolled people (Gallery::persons) and their faces in all.
struct GalleryContents {
  std::vector<PersonSummary> persons;
  std::size_t faces = 0;
  std::size_t unassigned = 0;  // faces kept apart by `assign` (Gallery::unassigned)
};
GalleryContents contents_of(const Gallery& gallery);

// A gallery checked: the problems Gallery::check found (one line each), what it holds, its
// store's schema version and its index, with the index's recall when asked for.
struct GalleryCheck {
  std::vector<std::string> problems;
  GalleryContents contents;
  int schema_version = 0;
  IndexStatus index;
  std::optional<IndexRecall> recall;

  bool sound() const { return problems.empty(); }
};
// `recall_queries` > 0: also the index's recall@10 against exact search on that many stored faces.
GalleryCheck check_gallery(const Gallery& gallery, int recall_queries = 0);

}  // namespace facemag::gallery
