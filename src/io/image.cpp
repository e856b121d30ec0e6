#include "facemag/io/image.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <fstream>

#include "facemag/error.hpp"

namespace facemag::io {
namespace {

std::string read_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InvalidInput(path.string() + ": no such file");
  if (std::filesystem::is_directory(path, ec))
    throw InvalidInput(path.string() + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InvalidInput(path.string() + ": cannot open for reading");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool is_jpeg(const std::string& b) {
  return b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xFF &&
         static_cast<unsigned char>(b[1]) == 0xD8 && static_cast<unsigned char>(b[2]) == 0xFF;
}

// libjpeg only warns about a missing end-of-image marker and returns grey rows; treat it as
// the truncation it is. Trailing padding after the marker is allowed.
bool jpeg_has_end_marker(const std::string& b) {
  std::size_t end = b.size();
  while (end > 2 && (b[end - 1] == '\0' || b[end - 1] == '\n' || b[end - 1] == '\r')) --end;
  return end >= 2 && static_cast<unsigned char>(b[end - 2]) == 0xFF &&
         static_cast<unsigned char>(b[end - 1]) == 0xD9;
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
  const std::string bytes = read_bytes(path);
  if (bytes.empty()) throw InvalidInput(path.string() + ": empty file (0 bytes), not an image");
  if (is_jpeg(bytes) && !jpeg_has_end_marker(bytes)) {
    throw InvalidInput(path.string() + ": truncated JPEG (no end-of-image marker)");
  }
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat img;
  try {
    img = cv::imdecode(raw, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw InvalidInput(path.string() + ": cannot decode image: " + e.err);
  }
  if (img.empty()) throw InvalidInput(path.string() + ": not a decodable image");
  if (static_cast<std::int64_t>(img.rows) * img.cols > options.max_pixels) {
    throw InvalidInput(path.string() + ": " + std::to_string(img.cols) + "x" +
                       std::to_string(img.rows) + " pixels exceed the limit of " +
                       std::to_string(options.max_pixels));
  }
  if (img.depth() == CV_16U) img.convertTo(img, CV_8U, 1.0 / 257.0);
  if (img.depth() != CV_8U) img.convertTo(img, CV_8U);
  if (img.channels() == 1) cv::cvtColor(img, img, cv::COLOR_GRAY2BGR);
  if (img.channels() == 4) cv::cvtColor(img, img, cv::COLOR_BGRA2BGR);
  return img;
}

std::vector<std::filesystem::path> expand_inputs(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  for (const auto& input : inputs) {
    if (!input.empty() && input[0] == '@') {
      const fs::path list = input.substr(1);
      std::ifstream in(list);
      if (!in) throw InvalidInput(list.string() + ": cannot open list file");
      std::string line;
      while (std::getline(in, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        fs::path p = line;
        out.push_back(p.is_relative() ? list.parent_path() / p : p);
      }
      continue;
    }
    const fs::path p = input;
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(
               p, fs::directory_options::skip_permission_denied, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec) && has_image_extension(it->path())) found.push_back(it->path());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else {
      throw InvalidInput(input + ": no such file or directory");
    }
  }
  return out;
}

}  // namespace facemag::io
