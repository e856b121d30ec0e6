#include "facemag/io/image.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <optional>
#include <set>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"

namespace facemag::io {
namespace {

bool is_jpeg(std::string_view b) {
  return b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xFF &&
         static_cast<unsigned char>(b[1]) == 0xD8 && static_cast<unsigned char>(b[2]) == 0xFF;
}

// libjpeg only warns about a missing end-of-image marker and returns grey rows; treat it as
// the truncation it is. Trailing padding after the marker is allowed.
bool jpeg_has_end_marker(std::string_view b) {
  std::size_t end = b.size();
  while (end > 2 && (b[end - 1] == '\0' || b[end - 1] == '\n' || b[end - 1] == '\r')) --end;
  return end >= 2 && static_cast<unsigned char>(b[end - 2]) == 0xFF &&
         static_cast<unsigned char>(b[end - 1]) == 0xD9;
}

// Width and height from the header of the formats decompression bombs usually come in.
std::optional<std::pair<std::int64_t, std::int64_t>> header_size(std::string_view b) {
  auto u8 = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(b[i]));
  };
  auto be16 = [&](std::size_t i) { return (u8(i) << 8) | u8(i + 1); };
  auto be32 = [&](std::size_t i) { return (be16(i) << 16) | be16(i + 2); };
  auto le32 = [&](std::size_t i) {
    return u8(i) | (u8(i + 1) << 8) | (u8(i + 2) << 16) | (u8(i + 3) << 24);
  };
  if (b.size() >= 24 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0) return {{be32(16), be32(20)}};
  if (b.size() >= 26 && b.compare(0, 2, "BM") == 0) {
    return {{static_cast<std::int32_t>(le32(18)), std::abs(static_cast<std::int32_t>(le32(22)))}};
  }
  if (b.size() >= 30 && b.compare(0, 4, "RIFF") == 0 && b.compare(8, 4, "WEBP") == 0) {
    if (b.compare(12, 4, "VP8X") == 0)
      return {{1 + (le32(24) & 0xFFFFFF), 1 + (le32(27) & 0xFFFFFF)}};
    if (b.compare(12, 4, "VP8 ") == 0) return {{be16(26) & 0x3FFF, be16(28) & 0x3FFF}};
  }
  if (is_jpeg(b)) {  // walk the markers to the first start-of-frame
    std::size_t i = 2;
    while (i + 9 < b.size() && u8(i) == 0xFF) {
      const std::uint32_t marker = u8(i + 1);
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
        return {{be16(i + 7), be16(i + 5)}};
      }
      i += 2 + be16(i + 2);
    }
  }
  return std::nullopt;
}

}  // namespace

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const char* kExts[] = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"};
  return std::any_of(std::begin(kExts), std::end(kExts), [&](const char* e) { return ext == e; });
}

cv::Mat read_image_bgr(const std::filesystem::path& path, const ImageReadOptions& options) {
  return decode_image_bgr(read_file_bytes(path), path.string(), options);
}

cv::Mat decode_image_bgr(std::string_view bytes, const std::string& source,
                         const ImageReadOptions& options) {
  const std::filesystem::path path(source);  // names the image in messages
  if (bytes.empty()) throw InvalidInput(path.string() + ": empty file (0 bytes), not an image");
  const auto too_large = [&](std::int64_t w, std::int64_t h) {
    return ImageTooLarge(path.string() + ": " + std::to_string(w) + "x" + std::to_string(h) +
                         " pixels exceed the limit of " + std::to_string(options.max_pixels) +
                         " (a decompression bomb?)");
  };
  if (const auto size = header_size(bytes);
      size && size->first * size->second > options.max_pixels) {
    throw too_large(size->first, size->second);
  }
  if (is_jpeg(bytes) && !jpeg_has_end_marker(bytes)) {
    throw InvalidInput(path.string() + ": truncated JPEG (no end-of-image marker)");
  }
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat img;
  try {
    // ANYDEPTH|ANYCOLOR keeps 16-bit and grayscale as they are and, unlike IMREAD_UNCHANGED,
    // applies the EXIF orientation.
    img = cv::imdecode(raw, cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR);
  } catch (const cv::Exception& e) {
    throw InvalidInput(path.string() + ": cannot decode image: " + e.err);
  }
  if (img.empty()) throw InvalidInput(path.string() + ": not a decodable image");
  if (static_cast<std::int64_t>(img.rows) * img.cols > options.max_pixels)
    throw too_large(img.cols, img.rows);
  if (img.depth() == CV_16U) img.convertTo(img, CV_8U, 1.0 / 257.0);
  if (img.depth() != CV_8U) img.convertTo(img, CV_8U);
  if (img.channels() == 1) cv::cvtColor(img, img, cv::COLOR_GRAY2BGR);
  if (img.channels() == 4) cv::cvtColor(img, img, cv::COLOR_BGRA2BGR);
  return img;
}

std::optional<std::string> InputFile::top_folder() const {
  const auto parent = name.parent_path();
  if (parent.empty()) return std::nullopt;
  return parent.begin()->string();
}

namespace {

// The image files under `root`, found through symbolic links to folders too: each folder is
// searched once, known by its canonical path, so that a link back up the tree (a loop) or a second
// link to a folder adds nothing. The folders of the real tree come first, then the folders
// reached through links, in the order the links were found (each level sorted): a folder reached
// both ways keeps its real name, and of two links to one folder the first found wins. Paths are
// as reached (through the link), so the names users see are the link's.
std::vector<std::filesystem::path> image_files_under(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  std::vector<fs::path> found;
  std::set<fs::path> visited;     // canonical paths of the folders searched
  std::deque<fs::path> linked{};  // folders reached through a link, not yet searched
  const auto search = [&](const fs::path& top) {
    std::vector<fs::path> folders{top};
    while (!folders.empty()) {
      const fs::path folder = folders.back();
      folders.pop_back();
      std::error_code ec;
      const auto canonical = fs::canonical(folder, ec);
      if (ec || !visited.insert(canonical).second) continue;
      std::vector<fs::directory_entry> entries;
      for (auto it =
               fs::directory_iterator(folder, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::directory_iterator(); it.increment(ec))
        entries.push_back(*it);
      std::sort(entries.begin(), entries.end());
      std::vector<fs::path> subfolders;
      for (const auto& entry : entries) {
        if (entry.is_directory(ec)) {
          (entry.is_symlink(ec) ? linked.push_back(entry.path())
                                : subfolders.push_back(entry.path()));
        } else if (entry.is_regular_file(ec) && has_image_extension(entry.path())) {
          found.push_back(entry.path());
        }
      }
      folders.insert(folders.end(), subfolders.rbegin(), subfolders.rend());  // first on top
    }
  };
  search(root);
  while (!linked.empty()) {
    const auto next = linked.front();
    linked.pop_front();
    search(next);
  }
  return found;
}

}  // namespace

std::vector<InputFile> expand_inputs(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<InputFile> out;
  for (const auto& input : inputs) {
    if (!input.empty() && input[0] == '@') {
      const fs::path list = input.substr(1);
      std::ifstream in(list);
      if (!in) throw InvalidInput(list.string() + ": cannot open list file");
      std::string line;
      while (std::getline(in, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        const fs::path p = line;
        out.push_back({p.is_relative() ? list.parent_path() / p : p, p.relative_path()});
      }
      continue;
    }
    const fs::path p = input;
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      auto found = image_files_under(p);
      std::sort(found.begin(), found.end());
      for (auto& f : found) out.push_back({f, f.lexically_relative(p)});
    } else if (fs::exists(p, ec)) {
      out.push_back({p, p.filename()});
    } else {
      throw InvalidInput(input + ": no such file or directory");
    }
  }
  return out;
}

}  // namespace facemag::io
