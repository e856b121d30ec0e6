#include "facemag/io/image_write.hpp"

#include <opencv2/imgcodecs.hpp>

#include "facemag/error.hpp"

namespace facemag::io {

void write_image(const std::filesystem::path& path, const cv::Mat& image) {
  std::filesystem::create_directories(path.parent_path());
  if (!cv::imwrite(path.string(), image))
    throw InvalidInput(path.string() + ": cannot write image");
}

}  // namespace facemag::io
