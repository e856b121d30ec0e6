// Charts for evaluation and analysis reports, drawn with OpenCV (8-bit BGR images, white
// background, anti-aliased text). Each function returns the finished picture; write it with
// write_png or embed png_bytes in a page.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace facemag::plot {

// The i-th colour of a 10-colour categorical palette (Tableau 10), BGR.
cv::Scalar category_color(std::size_t index);

struct Axes {
  std::string title, x_label, y_label;
  cv::Size size{900, 520};
};

struct Series {
  std::string label;
  std::vector<double> x, y;  // NaN y values break the line
  cv::Scalar color;
  bool dashed = false;
};
cv::Mat line_chart(const std::vector<Series>& series, const Axes& axes);

struct PointGroup {
  std::string label;
  std::vector<cv::Point2d> points;
};
// One colour per group, with a legend.
cv::Mat scatter_chart(const std::vector<PointGroup>& groups, const Axes& axes);

// Stacked histogram of values, one colour per group, `bins` equal bins over the value range.
struct ValueGroup {
  std::string label;
  std::vector<double> values;
};
cv::Mat histogram_chart(const std::vector<ValueGroup>& groups, int bins, const Axes& axes);

// A square matrix as a colour map (viridis from `low` to `high`), each cell's value printed
// when the cells are large enough, rows and columns labelled; `group_starts` draws separator
// lines before those indices.
struct MatrixChart {
  std::string title;
  std::size_t n = 0;
  std::vector<double> values;  // n x n, row-major
  std::vector<std::string> labels;
  std::vector<std::size_t> group_starts;
  double low = 0, high = 1;
  int decimals = 2;
};
cv::Mat matrix_chart(const MatrixChart& chart);

// Images in a grid, each with lines of caption under it.
struct Tile {
  cv::Mat image;  // BGR; scaled to the tile size
  std::vector<std::string> caption;
  cv::Scalar frame_color{255, 255, 255};
};
cv::Mat tile_grid(const std::vector<Tile>& tiles, int columns, const std::string& title,
                  cv::Size tile_size = {112, 112});

std::string png_bytes(const cv::Mat& image);
// InvalidInput naming the path when it cannot be written.
void write_png(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace facemag::plot
