#include "facemag/eval/plot.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>

#include "facemag/error.hpp"

namespace facemag::plot {
namespace {

const cv::Scalar kBlack(0, 0, 0), kGrey(200, 200, 200), kWhite(255, 255, 255);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

enum class Align { kLeft, kCenter, kRight };

// Text with its baseline at `at.y`, aligned horizontally around `at.x`.
void text(cv::Mat& img, const std::string& s, cv::Point at, double scale = 0.45,
          const cv::Scalar& color = kBlack, Align align = Align::kLeft, int thickness = 1) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(s, kFont, scale, thickness, &baseline);
  if (align == Align::kCenter) at.x -= size.width / 2;
  if (align == Align::kRight) at.x -= size.width;
  cv::putText(img, s, at, kFont, scale, color, thickness, cv::LINE_AA);
}

// Vertical text (bottom to top) centred on `center`.
void vertical_text(cv::Mat& img, const std::string& s, cv::Point center, double scale = 0.5) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(s, kFont, scale, 1, &baseline);
  cv::Mat strip(size.height + baseline + 4, size.width + 4, CV_8UC3, kWhite);
  cv::putText(strip, s, {2, size.height + 2}, kFont, scale, kBlack, 1, cv::LINE_AA);
  cv::rotate(strip, strip, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::Rect roi(center.x - strip.cols / 2, center.y - strip.rows / 2, strip.cols, strip.rows);
  roi &= cv::Rect(0, 0, img.cols, img.rows);
  strip(cv::Rect(0, 0, roi.width, roi.height)).copyTo(img(roi));
}

std::string format_number(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(decimals, 0, 6), v);
  return buf;
}

// Round tick positions (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target, double* step_out) {
  const double span = std::max(hi - lo, 1e-12);
  const double raw = span / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * power;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  *step_out = step;
  return ticks;
}

// A chart's plotting area: data ranges, the pixel mapping, and the frame with ticks and labels.
struct Frame {
  cv::Mat img;
  cv::Rect area;
  double x0, x1, y0, y1;

  Frame(const Axes& axes, double xmin, double xmax, double ymin, double ymax) {
    // A range that is empty or only rounding noise wide (the second PCA axis of two faces) gets
    // one unit around it, so that it has ticks.
    const auto widen = [](double& lo, double& hi) {
      if (!(hi - lo > 1e-9 * std::max(1.0, std::max(std::abs(lo), std::abs(hi))))) {
        const double mid = std::isfinite(lo + hi) ? (lo + hi) / 2 : 0.0;
        lo = mid - 0.5;
        hi = mid + 0.5;
      }
    };
    widen(xmin, xmax);
    widen(ymin, ymax);
    img = cv::Mat(axes.size, CV_8UC3, kWhite);
    area = cv::Rect(80, 50, axes.size.width - 110, axes.size.height - 110);
    double xs = 0, ys = 0;
    const auto xt = nice_ticks(xmin, xmax, 8, &xs);
    const auto yt = nice_ticks(ymin, ymax, 6, &ys);
    x0 = std::min(xmin, xt.front());
    x1 = std::max(xmax, xt.back());
    y0 = std::min(ymin, yt.front());
    y1 = std::max(ymax, yt.back());
    for (double t : xt) {
      const int px = x(t);
      cv::line(img, {px, area.y}, {px, area.br().y}, kGrey, 1);
      text(img, format_number(t, xs), {px, area.br().y + 20}, 0.45, kBlack, Align::kCenter);
    }
    for (double t : yt) {
      const int py = y(t);
      cv::line(img, {area.x, py}, {area.br().x, py}, kGrey, 1);
      text(img, format_number(t, ys), {area.x - 8, py + 5}, 0.45, kBlack, Align::kRight);
    }
    cv::rectangle(img, area, kBlack, 1);
    text(img, axes.title, {axes.size.width / 2, 30}, 0.65, kBlack, Align::kCenter, 2);
    text(img, axes.x_label, {area.x + area.width / 2, axes.size.height - 15}, 0.5, kBlack,
         Align::kCenter);
    vertical_text(img, axes.y_label, {22, area.y + area.height / 2});
  }
  int x(double v) const { return area.x + int(std::lround((v - x0) / (x1 - x0) * area.width)); }
  int y(double v) const {
    return area.br().y - int(std::lround((v - y0) / (y1 - y0) * area.height));
  }

  // Legend entries top-right inside the plotting area.
  void legend(const std::vector<std::pair<std::string, cv::Scalar>>& entries) {
    int width = 0;
    for (const auto& [label, color] : entries) {
      int baseline = 0;
      width = std::max(width, cv::getTextSize(label, kFont, 0.45, 1, &baseline).width);
    }
    const cv::Rect box(area.br().x - width - 50, area.y + 8, width + 42,
                       static_cast<int>(entries.size()) * 20 + 8);
    cv::rectangle(img, box, kWhite, cv::FILLED);
    cv::rectangle(img, box, kGrey, 1);
    int row = box.y + 18;
    for (const auto& [label, color] : entries) {
      cv::rectangle(img, cv::Rect(box.x + 8, row - 10, 18, 10), color, cv::FILLED);
      text(img, label, {box.x + 32, row});
      row += 20;
    }
  }
};

void minmax(const std::vector<double>& v, double& lo, double& hi) {
  for (double x : v) {
    if (std::isfinite(x)) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
  }
}

}  // namespace

cv::Scalar category_color(std::size_t index) {
  static const cv::Scalar kPalette[] = {
      {180, 119, 31}, {14, 127, 255},  {44, 160, 44},   {40, 39, 214},  {189, 103, 148},
      {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};
  return kPalette[index % 10];
}

cv::Mat line_chart(const std::vector<Series>& series, const Axes& axes) {
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const auto& s : series) {
    minmax(s.x, xlo, xhi);
    minmax(s.y, ylo, yhi);
  }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  Frame f(axes, xlo, xhi, std::min(ylo, 0.0), yhi);
  std::vector<std::pair<std::string, cv::Scalar>> entries;
  for (const auto& s : series) {
    std::optional<cv::Point> last;
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) {
        last.reset();
        continue;
      }
      const cv::Point p(f.x(s.x[i]), f.y(s.y[i]));
      if (last) {
        if (s.dashed) {
          const double len = cv::norm(p - *last);
          for (double t = 0; t < len; t += 12) {
            const double e = std::min(len, t + 6);
            cv::line(f.img, *last + (p - *last) * (t / len), *last + (p - *last) * (e / len),
                     s.color, 2, cv::LINE_AA);
          }
        } else {
          cv::line(f.img, *last, p, s.color, 2, cv::LINE_AA);
        }
      }
      cv::circle(f.img, p, 3, s.color, cv::FILLED, cv::LINE_AA);
      last = p;
    }
    entries.emplace_back(s.label, s.color);
  }
  f.legend(entries);
  return f.img;
}

cv::Mat scatter_chart(const std::vector<PointGroup>& groups, const Axes& axes) {
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const auto& g : groups) {
    for (const auto& p : g.points) {
      xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x);
      ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
    }
  }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  const double mx = 0.05 * (xhi - xlo), my = 0.05 * (yhi - ylo);
  Frame f(axes, xlo - mx, xhi + mx, ylo - my, yhi + my);
  std::vector<std::pair<std::string, cv::Scalar>> entries;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto color = category_color(g);
    for (const auto& p : groups[g].points) {
      cv::circle(f.img, {f.x(p.x), f.y(p.y)}, 6, color, cv::FILLED, cv::LINE_AA);
      cv::circle(f.img, {f.x(p.x), f.y(p.y)}, 6, kBlack, 1, cv::LINE_AA);
    }
    entries.emplace_back(groups[g].label + " (" + std::to_string(groups[g].points.size()) + ")",
                         color);
  }
  f.legend(entries);
  return f.img;
}

cv::Mat histogram_chart(const std::vector<ValueGroup>& groups, int bins, const Axes& axes) {
  bins = std::max(bins, 1);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& g : groups) minmax(g.values, lo, hi);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi <= lo) hi = lo + 1;
  const double width = (hi - lo) / bins;
  std::vector<std::vector<int>> counts(groups.size(), std::vector<int>(bins, 0));
  std::vector<int> totals(bins, 0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (double v : groups[g].values) {
      if (!std::isfinite(v)) continue;
      const int b = std::min(bins - 1, static_cast<int>((v - lo) / width));
      ++counts[g][b];
      ++totals[b];
    }
  }
  Frame f(axes, lo, hi, 0, std::max(1, *std::max_element(totals.begin(), totals.end())));
  std::vector<std::pair<std::string, cv::Scalar>> entries;
  std::vector<int> stacked(bins, 0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto color = category_color(g);
    for (int b = 0; b < bins; ++b) {
      if (counts[g][b] == 0) continue;
      const cv::Point top_left(f.x(lo + b * width) + 1, f.y(stacked[b] + counts[g][b]));
      const cv::Point bottom_right(f.x(lo + (b + 1) * width) - 1, f.y(stacked[b]));
      cv::rectangle(f.img, cv::Rect(top_left, bottom_right), color, cv::FILLED);
      stacked[b] += counts[g][b];
    }
    entries.emplace_back(groups[g].label, color);
  }
  f.legend(entries);
  return f.img;
}

cv::Mat matrix_chart(const MatrixChart& chart) {
  const int n = static_cast<int>(chart.n);
  const int cell = std::clamp(1400 / std::max(n, 1), 8, 48);
  const int left = 170, top = 60, bar = 90;
  cv::Mat img(top + n * cell + 30, left + n * cell + bar, CV_8UC3, kWhite);
  text(img, chart.title, {img.cols / 2, 32}, 0.65, kBlack, Align::kCenter, 2);
  const double span = chart.high > chart.low ? chart.high - chart.low : 1.0;
  const auto level = [&](double v) {
    return static_cast<std::uint8_t>(std::clamp((v - chart.low) / span, 0.0, 1.0) * 255.0 + 0.5);
  };
  cv::Mat levels(n, n, CV_8UC1);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) levels.at<std::uint8_t>(r, c) = level(chart.values[r * n + c]);
  }
  cv::Mat colored;
  cv::applyColorMap(levels, colored, cv::COLORMAP_VIRIDIS);
  cv::Mat cells;
  cv::resize(colored, cells, {n * cell, n * cell}, 0, 0, cv::INTER_NEAREST);
  cells.copyTo(img(cv::Rect(left, top, n * cell, n * cell)));
  // Values in the cells, dark text on light cells and light on dark.
  const double font = cell >= 40 ? 0.38 : cell >= 28 ? 0.3 : 0.0;
  for (int r = 0; r < n && font > 0; ++r) {
    for (int c = 0; c < n; ++c) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%.*f", chart.decimals, chart.values[r * n + c]);
      std::string s = buf;
      if (s.rfind("0.", 0) == 0) s = s.substr(1);  // ".44": fits small cells
      if (s.rfind("-0.", 0) == 0) s = "-" + s.substr(2);
      text(img, s, {left + c * cell + cell / 2, top + r * cell + cell / 2 + 4}, font,
           level(chart.values[r * n + c]) > 150 ? kBlack : kWhite, Align::kCenter);
    }
  }
  const double label_font = cell >= 16 ? 0.4 : 0.3;
  for (int r = 0; r < n && cell >= 12; ++r) {
    if (static_cast<std::size_t>(r) < chart.labels.size())
      text(img, chart.labels[r], {left - 6, top + r * cell + cell / 2 + 4}, label_font, kBlack,
           Align::kRight);
    text(img, std::to_string(r + 1), {left + r * cell + cell / 2, top - 6}, label_font, kBlack,
         Align::kCenter);
  }
  for (auto start : chart.group_starts) {
    if (start == 0 || start >= chart.n) continue;
    const int p = static_cast<int>(start) * cell;
    cv::line(img, {left + p, top}, {left + p, top + n * cell}, kWhite, 2);
    cv::line(img, {left, top + p}, {left + n * cell, top + p}, kWhite, 2);
  }
  // Colour bar.
  const int bx = left + n * cell + 20, bh = n * cell;
  cv::Mat ramp(bh, 1, CV_8UC1);
  for (int i = 0; i < bh; ++i)
    ramp.at<std::uint8_t>(i, 0) = static_cast<std::uint8_t>(255 - (255 * i) / std::max(bh - 1, 1));
  cv::Mat ramp_colored;
  cv::applyColorMap(ramp, ramp_colored, cv::COLORMAP_VIRIDIS);
  cv::resize(ramp_colored, ramp_colored, {20, bh}, 0, 0, cv::INTER_NEAREST);
  ramp_colored.copyTo(img(cv::Rect(bx, top, 20, bh)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", chart.high);
  text(img, buf, {bx + 24, top + 10}, 0.4);
  std::snprintf(buf, sizeof buf, "%.2f", chart.low);
  text(img, buf, {bx + 24, top + bh}, 0.4);
  return img;
}

cv::Mat tile_grid(const std::vector<Tile>& tiles, int columns, const std::string& title,
                  cv::Size tile_size) {
  columns = std::max(1, columns);
  std::size_t lines = 0;
  for (const auto& t : tiles) lines = std::max(lines, t.caption.size());
  const int pad = 8, caption_h = static_cast<int>(lines) * 16 + 4;
  const int cell_w = tile_size.width + 2 * pad, cell_h = tile_size.height + caption_h + 2 * pad;
  const int rows = (static_cast<int>(tiles.size()) + columns - 1) / columns;
  cv::Mat img(50 + std::max(rows, 1) * cell_h, std::max(columns * cell_w, 400), CV_8UC3, kWhite);
  text(img, title, {img.cols / 2, 32}, 0.65, kBlack, Align::kCenter, 2);
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const int x = static_cast<int>(i % columns) * cell_w + pad;
    const int y = 50 + static_cast<int>(i / columns) * cell_h + pad;
    cv::Mat face;
    cv::resize(tiles[i].image, face, tile_size, 0, 0, cv::INTER_AREA);
    face.copyTo(img(cv::Rect(x, y, tile_size.width, tile_size.height)));
    cv::rectangle(img, cv::Rect(x - 3, y - 3, tile_size.width + 6, tile_size.height + 6),
                  tiles[i].frame_color, 3);
    for (std::size_t l = 0; l < tiles[i].caption.size(); ++l) {
      text(img, tiles[i].caption[l],
           {x + tile_size.width / 2, y + tile_size.height + 18 + static_cast<int>(l) * 16},
           l == 0 ? 0.5 : 0.38, kBlack, Align::kCenter, l == 0 ? 2 : 1);
    }
  }
  return img;
}

std::string png_bytes(const cv::Mat& image) {
  std::vector<std::uint8_t> buf;
  cv::imencode(".png", image, buf);
  return std::string(buf.begin(), buf.end());
}

void write_png(const std::filesystem::path& path, const cv::Mat& image) {
  std::ofstream out(path, std::ios::binary);
  const std::string bytes = png_bytes(image);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw InvalidInput(path.string() + ": cannot write");
}

}  // namespace facemag::plot
