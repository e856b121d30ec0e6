// Image decoding and input discovery.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facemag/error.hpp"

namespace facemag::io {

// An image whose pixel count exceeds ImageReadOptions::max_pixels (refused before decoding).
class ImageTooLarge : public InvalidInput {
 public:
  using InvalidInput::InvalidInput;
};

struct ImageReadOptions {
  // Images with more pixels than this are refused, before decoding where the header tells the
  // size (JPEG, PNG, BMP, WebP), so that a decompression bomb never allocates its pixels.
  std::int64_t max_pixels = 100'000'000;
};

// Decodes an image file into an 8-bit, 3-channel **BGR** cv::Mat (OpenCV's order), whatever the
// file holds: grayscale is replicated, alpha dropped, 16-bit scaled to 8, and the EXIF
// orientation applied. Throws facemag::InvalidInput naming the file for a missing, empty,
// truncated or undecodable file, ImageTooLarge for one over the pixel limit.
cv::Mat read_image_bgr(const std::filesystem::path& path, const ImageReadOptions& options = {});
// The same for an encoded image in memory; `source` names it in messages.
cv::Mat decode_image_bgr(std::string_view bytes, const std::string& source,
                         const ImageReadOptions& options = {});

// True for file names with an image extension facemag decodes (jpg, jpeg, png, bmp, webp, tif,
// tiff).
bool has_image_extension(const std::filesystem::path& path);

// One input file and the name outputs derived from it should use: its path relative to the
// folder argument it was found in (so that bruce/001.jpg and neil/001.jpg stay apart), or its
// file name when it was named directly.
struct InputFile {
  std::filesystem::path path;
  std::filesystem::path name;

  // The first folder of `name` (the person of a photo in one sub-folder per person, as
  // --by-folder reads them), or nullopt for a file named directly.
  std::optional<std::string> top_folder() const;
};

// Expands command-line inputs into files, in a stable order: a file is taken as it is; a
// directory is searched recursively for image files (sorted by path), following symbolic links to
// folders, each folder once (known by its canonical path: a loop or a second link to a folder adds
// nothing; a folder reached both directly and through a link keeps its direct name; names are
// the paths as reached, through the link); `@list.txt` names one path per
// line (blank lines and lines starting with '#' are skipped; relative paths are relative to
// the list's folder). A path that does not exist is an InvalidInput error.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& inputs);

}  // namespace facemag::io
