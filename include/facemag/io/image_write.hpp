// Writing images, the counterpart of io/image.hpp's reading.
#pragma once

#include <opencv2/core/mat.hpp>

#include <filesystem>

namespace facemag::io {

// Writes an image (format by the file's extension, cv::imwrite), creating its folder;
// InvalidInput "<path>: cannot write image" when it cannot.
void write_image(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace facemag::io
