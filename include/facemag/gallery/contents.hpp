// What a gallery holds, counted, and whether it is sound: `gallery list` and `gallery check`, and
// any other front end that reports on a gallery.
#pragma once

#include <cstddef>
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

// A gallery checked: the problems Gallery::check found (one line each), what it holds and its
// store's schema version.
struct GalleryCheck {
  std::vector<std::string> problems;
  GalleryContents contents;
  int schema_version = 0;

  bool sound() const { return problems.empty(); }
};
GalleryCheck check_gallery(const Gallery& gallery);

}  // namespace facemag::gallery
