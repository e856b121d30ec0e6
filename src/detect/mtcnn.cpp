// MTCNN as facenet-pytorch's detect_face: the tensor arithmetic is done with the same LibTorch
// operations in the same order, so that floating-point results (and ties) agree with the
// reference; the suppression loops are written out as torchvision's CPU kernel and
// facenet-pytorch's numpy "Min" NMS do them.
#include "facemag/detect/mtcnn.hpp"

#include <torch/torch.h>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <tuple>
#include <utility>

#include "../nn/kernels.hpp"
#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/mtcnn_nets.hpp"

namespace facemag {

struct MtcnnDetector::Nets {
  nn::PNet pnet;
  nn::RNet rnet;
  nn::ONet onet;
};

namespace {

using torch::indexing::Slice;

// torchvision.ops.nms (CPU kernel): kept indices in descending score order; a box is suppressed
// when its IoU with a kept box exceeds `threshold` (compared in double, as there).
std::vector<std::int64_t> nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                              double threshold) {
  const std::int64_t n = boxes.size(0);
  if (n == 0) return {};
  const auto order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
  const auto b = boxes.contiguous();
  const auto areas =
      ((b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1))).contiguous();
  const auto bx = b.accessor<float, 2>();
  const auto area = areas.accessor<float, 1>();
  const auto ord = order.accessor<std::int64_t, 1>();
  std::vector<char> suppressed(static_cast<std::size_t>(n), 0);
  std::vector<std::int64_t> keep;
  for (std::int64_t oi = 0; oi < n; ++oi) {
    const std::int64_t i = ord[oi];
    if (suppressed[i]) continue;
    keep.push_back(i);
    for (std::int64_t oj = oi + 1; oj < n; ++oj) {
      const std::int64_t j = ord[oj];
      if (suppressed[j]) continue;
      const float w = std::max(0.0f, std::min(bx[i][2], bx[j][2]) - std::max(bx[i][0], bx[j][0]));
      const float h = std::max(0.0f, std::min(bx[i][3], bx[j][3]) - std::max(bx[i][1], bx[j][1]));
      const float inter = w * h;
      const float overlap = inter / (area[i] + area[j] - inter);
      if (static_cast<double>(overlap) > threshold) suppressed[j] = 1;
    }
  }
  return keep;
}

torch::Tensor as_index(const std::vector<std::int64_t>& v) {
  return torch::tensor(v, torch::kInt64);
}

// torchvision.ops.batched_nms: NMS within each group. Like torchvision 0.14 it offsets the
// groups apart for up to 1000 boxes and runs one NMS per group above that.
torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& groups, double threshold) {
  if (boxes.numel() == 0) return torch::empty({0}, torch::kInt64);
  if (boxes.numel() <= 4000) {
    const auto offsets = groups.to(boxes.scalar_type()) * (boxes.max() + 1);
    return as_index(nms(boxes + offsets.unsqueeze(1), scores, threshold));
  }
  auto keep_mask = torch::zeros_like(scores, torch::kBool);
  for (const auto& id : std::get<0>(torch::_unique(groups)).unbind()) {
    const auto members = torch::where(groups == id)[0];
    keep_mask.index_put_({members.index({as_index(
                             nms(boxes.index({members}), scores.index({members}), threshold))})},
                         true);
  }
  const auto kept = torch::where(keep_mask)[0];
  return kept.index({std::get<1>(scores.index({kept}).sort(/*dim=*/0, /*descending=*/true))});
}

// facenet-pytorch's nms_numpy with method "Min" (the final O-Net step): overlap is the
// intersection over the smaller box, with +1 pixel areas, compared in float32.
torch::Tensor nms_min(const torch::Tensor& boxes, const torch::Tensor& scores, float threshold) {
  const std::int64_t n = boxes.size(0);
  const auto b = boxes.contiguous();
  const auto bx = b.accessor<float, 2>();
  const auto s = scores.contiguous();
  const float* score = s.data_ptr<float>();
  std::vector<float> area(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    area[i] = (bx[i][2] - bx[i][0] + 1) * (bx[i][3] - bx[i][1] + 1);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto c) { return score[a] < score[c]; });
  std::vector<std::int64_t> pick;
  while (!order.empty()) {
    const std::int64_t i = order.back();
    order.pop_back();
    pick.push_back(i);
    std::vector<std::int64_t> rest;
    for (const auto j : order) {
      const float w =
          std::max(0.0f, std::min(bx[i][2], bx[j][2]) - std::max(bx[i][0], bx[j][0]) + 1);
      const float h =
          std::max(0.0f, std::min(bx[i][3], bx[j][3]) - std::max(bx[i][1], bx[j][1]) + 1);
      const float overlap = (w * h) / std::min(area[i], area[j]);
      if (overlap <= threshold) rest.push_back(j);
    }
    order.swap(rest);
  }
  return as_index(pick);
}

// Makes boxes square around their centre (rerec).
torch::Tensor make_square(torch::Tensor boxes) {
  const auto h = boxes.select(1, 3) - boxes.select(1, 1);
  const auto w = boxes.select(1, 2) - boxes.select(1, 0);
  const auto l = torch::max(w, h);
  boxes.select(1, 0).copy_(boxes.select(1, 0) + w * 0.5 - l * 0.5);
  boxes.select(1, 1).copy_(boxes.select(1, 1) + h * 0.5 - l * 0.5);
  boxes.index_put_({Slice(), Slice(2, 4)}, boxes.index({Slice(), Slice(0, 2)}) + l.unsqueeze(1));
  return boxes;
}

// Applies R-Net/O-Net box regression (bbreg), in place.
torch::Tensor regress(torch::Tensor boxes, const torch::Tensor& reg) {
  const auto w = boxes.select(1, 2) - boxes.select(1, 0) + 1;
  const auto h = boxes.select(1, 3) - boxes.select(1, 1) + 1;
  const auto b1 = boxes.select(1, 0) + reg.select(1, 0) * w;
  const auto b2 = boxes.select(1, 1) + reg.select(1, 1) * h;
  const auto b3 = boxes.select(1, 2) + reg.select(1, 2) * w;
  const auto b4 = boxes.select(1, 3) + reg.select(1, 3) * h;
  boxes.index_put_({Slice(), Slice(0, 4)}, torch::stack({b1, b2, b3, b4}, 1));
  return boxes;
}

// Bins of adaptive average pooling: [floor(i*in/out), ceil((i+1)*in/out)), as LibTorch's.
std::vector<std::pair<std::int64_t, std::int64_t>> pool_bins(std::int64_t in, std::int64_t out) {
  std::vector<std::pair<std::int64_t, std::int64_t>> bins(static_cast<std::size_t>(out));
  for (std::int64_t i = 0; i < out; ++i) bins[i] = {i * in / out, ((i + 1) * in + out - 1) / out};
  return bins;
}

// Summed-area table of an 8-bit RGB image: table[(y * (w + 1) + x) * 3 + c] is the sum of
// channel c over rows [0, y) and columns [0, x). Integer sums are exact, so every box sum
// taken from it equals the one LibTorch's pooling kernel accumulates in float (< 2^24).
class SummedArea {
 public:
  SummedArea() = default;
  explicit SummedArea(const cv::Mat& rgb) : w_(rgb.cols), h_(rgb.rows) {
    table_.assign(static_cast<std::size_t>((h_ + 1) * (w_ + 1) * 3), 0);
    for (std::int64_t y = 0; y < h_; ++y) {
      const auto* px = rgb.ptr<std::uint8_t>(static_cast<int>(y));
      std::uint64_t row[3] = {0, 0, 0};
      std::uint64_t* dst = &table_[((y + 1) * (w_ + 1) + 1) * 3];
      const std::uint64_t* above = &table_[(y * (w_ + 1) + 1) * 3];
      for (std::int64_t x = 0; x < w_; ++x) {
        for (int c = 0; c < 3; ++c) {
          row[c] += px[3 * x + c];
          dst[3 * x + c] = above[3 * x + c] + row[c];
        }
      }
    }
  }

  // Row y of the table: (w + 1) x 3 running sums.
  const std::uint64_t* row(std::int64_t y) const { return &table_[y * (w_ + 1) * 3]; }

 private:
  std::int64_t w_ = 0, h_ = 0;
  std::vector<std::uint64_t> table_;
};

// Sums over table rows [y0, y1) of `count` consecutive table entries (3 channels per column):
// column[i] = bottom[i] - top[i], where top and bottom point into table rows y0 and y1. The
// difference of two of its columns is then a window sum.
FACEMAG_VECTOR_CLONES void band_sums(const std::uint64_t* __restrict top,
                                     const std::uint64_t* __restrict bottom,
                                     std::int64_t* __restrict column, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i)
    column[i] = static_cast<std::int64_t>(bottom[i] - top[i]);
}

// One output row of area_resample, `count` values: value m is the window sum
// column[hi[m]] - column[lo[m]] divided by kh then kw[m] and normalised, in float as LibTorch.
FACEMAG_VECTOR_CLONES void resample_row(const std::int64_t* __restrict column,
                                        const std::int32_t* __restrict lo,
                                        const std::int32_t* __restrict hi,
                                        const float* __restrict kw, float kh, float* __restrict out,
                                        std::int64_t count) {
  for (std::int64_t m = 0; m < count; ++m) {
    const float mean = static_cast<float>(column[hi[m]] - column[lo[m]]) / kh / kw[m];
    out[m] = (mean - 127.5f) * 0.0078125f;
  }
}

// facenet-pytorch's imresample (interpolate mode="area", i.e. adaptive_avg_pool2d) of a region
// of the image, followed by its (x - 127.5) * 0.0078125 normalisation, into output rows
// [row_begin, row_end) of an oh x ow x 3 float slot (channels-last, the layout oneDNN runs the
// networks in). Bit-identical to LibTorch: exact sums, then sum / kh / kw in float. Sequential:
// callers parallelise over crops or rows, since one parallel region per small crop costs more in
// thread hand-offs than the crop itself.
void area_resample(const SummedArea& image, const cv::Rect& roi, float* out, std::int64_t oh,
                   std::int64_t ow, std::int64_t row_begin, std::int64_t row_end) {
  const auto rows = pool_bins(roi.height, oh), cols = pool_bins(roi.width, ow);
  const std::size_t count = static_cast<std::size_t>(ow) * 3;
  // Output value m (column m / 3, channel m % 3) spans band columns lo[m] to hi[m].
  std::vector<std::int32_t> lo(count), hi(count);
  std::vector<float> kw(count);
  for (std::size_t m = 0; m < count; ++m) {
    const auto& [first, last] = cols[m / 3];
    lo[m] = static_cast<std::int32_t>(first * 3 + m % 3);
    hi[m] = static_cast<std::int32_t>(last * 3 + m % 3);
    kw[m] = static_cast<float>(last - first);
  }
  const std::int64_t band = (static_cast<std::int64_t>(roi.width) + 1) * 3;
  std::vector<std::int64_t> column(static_cast<std::size_t>(band));
  for (std::int64_t i = row_begin; i < row_end; ++i) {
    band_sums(image.row(roi.y + rows[i].first) + roi.x * 3,
              image.row(roi.y + rows[i].second) + roi.x * 3, column.data(), band);
    resample_row(column.data(), lo.data(), hi.data(), kw.data(),
                 static_cast<float>(rows[i].second - rows[i].first),
                 out + i * static_cast<std::int64_t>(count), static_cast<std::int64_t>(count));
  }
}

// The image region each box crops: clipped to the image, 1-based like the reference's pad().
// Boxes whose clipped region is empty are left out of `kept`.
void crop_regions(const torch::Tensor& boxes, std::int64_t h, std::int64_t w,
                  std::vector<std::int64_t>& kept, std::vector<cv::Rect>& regions) {
  const auto b = boxes.accessor<float, 2>();
  for (std::int64_t k = 0; k < boxes.size(0); ++k) {
    // trunc() then int32, as the reference
    const auto x = std::max<std::int64_t>(static_cast<std::int32_t>(b[k][0]), 1);
    const auto y = std::max<std::int64_t>(static_cast<std::int32_t>(b[k][1]), 1);
    const auto ex = std::min<std::int64_t>(static_cast<std::int32_t>(b[k][2]), w);
    const auto ey = std::min<std::int64_t>(static_cast<std::int32_t>(b[k][3]), h);
    if (ey > y - 1 && ex > x - 1) {
      kept.push_back(k);
      regions.emplace_back(static_cast<int>(x - 1), static_cast<int>(y - 1),
                           static_cast<int>(ex - x + 1), static_cast<int>(ey - y + 1));
    }
  }
}

// f(i) for i in [0, count), spread over the threads. LibTorch operators inside run
// sequentially; InferenceMode is thread-local, so each worker sets it again.
template <class F>
void for_each_image(std::size_t count, F f) {
  at::parallel_for(0, static_cast<std::int64_t>(count), 1,
                   [&](std::int64_t begin, std::int64_t end) {
                     c10::InferenceMode guard;
                     for (std::int64_t i = begin; i < end; ++i) f(static_cast<std::size_t>(i));
                   });
}

}  // namespace

MtcnnDetector MtcnnDetector::load(const std::filesystem::path& weights_dir) {
  auto nets = std::make_shared<Nets>();
  nn::load_mtcnn_weights(*nets->pnet, weights_dir / "pnet.pt");
  nn::load_mtcnn_weights(*nets->rnet, weights_dir / "rnet.pt");
  nn::load_mtcnn_weights(*nets->onet, weights_dir / "onet.pt");
  return MtcnnDetector(nets);
}

namespace {

void check_inputs(const std::vector<cv::Mat>& images, const MtcnnOptions& options) {
  for (const auto& bgr : images) {
    if (bgr.empty() || bgr.type() != CV_8UC3)
      throw InvalidInput("MTCNN expects a non-empty 8-bit 3-channel BGR image");
  }
  if (options.min_face_size < 1 || options.factor <= 0 || options.factor >= 1)
    throw InvalidInput("MTCNN options: min_face_size must be >= 1 and factor in (0, 1)");
}

// P-Net proposals of image `image` at one scale (facenet-pytorch's generateBoundingBox), one
// row x1 y1 x2 y2 score dx1 dy1 dx2 dy2 per cell whose face probability is >= threshold, in
// row-major cell order (as nonzero() lists them); undefined when none. The corners are
// floor((2 * cell + 1) / scale) and floor((2 * cell + 12) / scale) in float32, with the scale
// rounded to float32, as the reference's tensor arithmetic computes them.
torch::Tensor pnet_proposals(const torch::Tensor& reg, const torch::Tensor& probs,
                             std::int64_t image, double scale, float threshold) {
  const auto p = probs.accessor<float, 4>()[image][1];
  const auto r = reg.accessor<float, 4>()[image];
  const auto s = static_cast<float>(scale);
  std::vector<float> rows;
  for (std::int64_t y = 0; y < p.size(0); ++y) {
    for (std::int64_t x = 0; x < p.size(1); ++x) {
      const float face = p[y][x];
      if (!(face >= threshold)) continue;
      const auto cx = static_cast<float>(x), cy = static_cast<float>(y);
      rows.insert(rows.end(), {std::floor((2 * cx + 1) / s), std::floor((2 * cy + 1) / s),
                               std::floor((2 * cx + 12) / s), std::floor((2 * cy + 12) / s), face,
                               r[0][y][x], r[1][y][x], r[2][y][x], r[3][y][x]});
    }
  }
  if (rows.empty()) return {};
  return torch::from_blob(rows.data(), {static_cast<std::int64_t>(rows.size() / 9), 9},
                          torch::kFloat32)
      .clone();
}

// Stage 1 after the pyramid: NMS within each scale, across scales, P-Net regression, squaring.
torch::Tensor merge_proposals(const std::vector<torch::Tensor>& proposals,
                              const std::vector<torch::Tensor>& groups) {
  auto boxes = torch::cat(proposals, 0);
  const auto group = torch::cat(groups, 0);
  auto pick = batched_nms(boxes.index({Slice(), Slice(0, 4)}), boxes.select(1, 4), group, 0.5);
  boxes = boxes.index({pick});
  pick = batched_nms(boxes.index({Slice(), Slice(0, 4)}), boxes.select(1, 4),
                     torch::zeros({boxes.size(0)}, torch::kInt64), 0.7);
  boxes = boxes.index({pick});
  const auto regw = boxes.select(1, 2) - boxes.select(1, 0);
  const auto regh = boxes.select(1, 3) - boxes.select(1, 1);
  boxes = torch::stack({boxes.select(1, 0) + boxes.select(1, 5) * regw,
                        boxes.select(1, 1) + boxes.select(1, 6) * regh,
                        boxes.select(1, 2) + boxes.select(1, 7) * regw,
                        boxes.select(1, 3) + boxes.select(1, 8) * regh, boxes.select(1, 4)},
                       1);
  return make_square(boxes);
}

// The boxes whose face probability exceeds `threshold`, as x1 y1 x2 y2 score, and the mask
// that selected them (for the network's other outputs).
std::pair<torch::Tensor, torch::Tensor> above_threshold(const torch::Tensor& boxes,
                                                        const torch::Tensor& probs,
                                                        float threshold) {
  const auto score = probs.select(1, 1);
  const auto pass = score > threshold;
  return {
      torch::cat(
          {boxes.index({pass}).index({Slice(), Slice(0, 4)}), score.index({pass}).unsqueeze(1)}, 1),
      pass};
}

// Stage 2 after R-Net: threshold, NMS, regression, squaring.
torch::Tensor refine(const torch::Tensor& boxes_in, const torch::Tensor& reg,
                     const torch::Tensor& probs, float threshold) {
  const auto [boxes, pass] = above_threshold(boxes_in, probs, threshold);
  const auto mv = reg.index({pass});
  const auto pick = batched_nms(boxes.index({Slice(), Slice(0, 4)}), boxes.select(1, 4),
                                torch::zeros({boxes.size(0)}, torch::kInt64), 0.7);
  return make_square(regress(boxes.index({pick}), mv.index({pick})));
}

// Stage 3 after O-Net: threshold, landmarks, regression, "Min" NMS, largest face first.
std::vector<Detection> finish(const torch::Tensor& boxes_in, const torch::Tensor& reg,
                              const torch::Tensor& marks, const torch::Tensor& probs,
                              float threshold) {
  auto [boxes, pass] = above_threshold(boxes_in, probs, threshold);
  const auto points = marks.index({pass});
  const auto mv = reg.index({pass});
  const auto w_i = (boxes.select(1, 2) - boxes.select(1, 0) + 1).unsqueeze(1);
  const auto h_i = (boxes.select(1, 3) - boxes.select(1, 1) + 1).unsqueeze(1);
  const auto points_x =
      w_i * points.index({Slice(), Slice(0, 5)}) + boxes.select(1, 0).unsqueeze(1) - 1;
  const auto points_y =
      h_i * points.index({Slice(), Slice(5, 10)}) + boxes.select(1, 1).unsqueeze(1) - 1;
  boxes = regress(boxes, mv);
  const auto pick = nms_min(boxes.index({Slice(), Slice(0, 4)}), boxes.select(1, 4), 0.7f);

  const auto b = boxes.index({pick}).contiguous();
  const auto px = points_x.index({pick}).contiguous();
  const auto py = points_y.index({pick}).contiguous();
  std::vector<Detection> faces(static_cast<std::size_t>(b.size(0)));
  const auto ba = b.accessor<float, 2>();
  const auto pxa = px.accessor<float, 2>();
  const auto pya = py.accessor<float, 2>();
  for (std::size_t k = 0; k < faces.size(); ++k) {
    faces[k].box = {ba[k][0], ba[k][1], ba[k][2], ba[k][3]};
    faces[k].score = ba[k][4];
    for (int p = 0; p < 5; ++p) faces[k].landmarks[p] = {pxa[k][p], pya[k][p]};
  }
  // select_largest=True: largest box first (np.argsort(area)[::-1]).
  std::vector<std::size_t> order(faces.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](auto a, auto c) { return faces[a].box.area() < faces[c].box.area(); });
  std::vector<Detection> sorted;
  for (auto it = order.rbegin(); it != order.rend(); ++it) sorted.push_back(faces[*it]);
  return sorted;
}

// Where each image's rows start in a batch holding sizes[i] rows of image i.
std::vector<std::int64_t> start_offsets(const std::vector<std::int64_t>& sizes) {
  std::vector<std::int64_t> offsets(sizes.size(), 0);
  std::exclusive_scan(sizes.begin(), sizes.end(), offsets.begin(), std::int64_t{0});
  return offsets;
}

// Output I of every chunk, concatenated.
template <std::size_t I, class Outputs>
torch::Tensor concat_output(const std::vector<Outputs>& parts) {
  std::vector<torch::Tensor> pieces;
  for (const auto& p : parts) pieces.push_back(std::get<I>(p));
  return torch::cat(pieces, 0);
}
template <class Outputs, std::size_t... I>
Outputs concat_outputs(const std::vector<Outputs>& parts, std::index_sequence<I...>) {
  return Outputs(concat_output<I>(parts)...);
}

// R-Net/O-Net over many crops (channels-last, as crop_all writes them) in chunks of 256,
// which keeps the activations in cache (one pass over 3000 crops is 3x slower and needs 170 MB
// more).
template <class Net>
auto forward_in_chunks(Net& net, const torch::Tensor& crops) {
  constexpr std::int64_t kChunk = 256;
  using Outputs = decltype(net.forward(crops));
  std::vector<Outputs> parts;
  for (std::int64_t start = 0; start < crops.size(0); start += kChunk) {
    const auto n = std::min(kChunk, crops.size(0) - start);
    parts.push_back(
        net.forward(crops.narrow(0, start, n).contiguous(torch::MemoryFormat::ChannelsLast)));
  }
  return concat_outputs(parts, std::make_index_sequence<std::tuple_size_v<Outputs>>{});
}

// Scale pyramid, in Python's double arithmetic.
std::vector<double> pyramid_scales(std::int64_t h, std::int64_t w, const MtcnnOptions& options) {
  std::vector<double> scales;
  const double m = 12.0 / options.min_face_size;
  double minl = static_cast<double>(std::min(h, w)) * m;
  for (double scale = m; minl >= 12; scale *= options.factor, minl *= options.factor)
    scales.push_back(scale);
  return scales;
}

// Stage 1: P-Net over the pyramid, one pass per scale for all images; each image's merged
// proposals (undefined where it has none).
std::vector<torch::Tensor> pnet_stage(nn::PNetImpl& pnet, const std::vector<SummedArea>& images,
                                      std::int64_t h, std::int64_t w, const MtcnnOptions& options) {
  const std::size_t count = images.size();
  const auto scales = pyramid_scales(h, w, options);
  std::vector<std::vector<torch::Tensor>> proposals(count), groups(count);
  for (std::size_t si = 0; si < scales.size(); ++si) {
    const double scale = scales[si];
    const auto hs = static_cast<std::int64_t>(static_cast<double>(h) * scale + 1);
    const auto ws = static_cast<std::int64_t>(static_cast<double>(w) * scale + 1);
    auto input =
        torch::empty({static_cast<std::int64_t>(count), 3, hs, ws},
                     torch::TensorOptions().memory_format(torch::MemoryFormat::ChannelsLast));
    float* pixels = input.data_ptr<float>();
    const cv::Rect whole(0, 0, static_cast<int>(w), static_cast<int>(h));
    // One parallel region over the rows of all images of this scale.
    at::parallel_for(0, static_cast<std::int64_t>(count) * hs, 8,
                     [&](std::int64_t begin, std::int64_t end) {
                       for (std::int64_t row = begin; row < end;) {
                         const std::int64_t i = row / hs, first = row % hs;
                         const std::int64_t last = std::min(hs, first + (end - row));
                         area_resample(images[static_cast<std::size_t>(i)], whole,
                                       pixels + i * 3 * hs * ws, hs, ws, first, last);
                         row += last - first;
                       }
                     });
    const auto [reg, probs] = pnet.forward(input);
    for (std::size_t i = 0; i < count; ++i) {
      const auto found =
          pnet_proposals(reg, probs, static_cast<std::int64_t>(i), scale, options.thresholds[0]);
      if (!found.defined()) continue;
      proposals[i].push_back(found);
      groups[i].push_back(
          torch::full({found.size(0)}, static_cast<std::int64_t>(si), torch::kInt64));
    }
  }
  std::vector<torch::Tensor> boxes(count);
  for_each_image(count, [&](std::size_t i) {
    if (!proposals[i].empty()) boxes[i] = merge_proposals(proposals[i], groups[i]);
  });
  return boxes;
}

// Crops of every image's boxes in one size x size batch; `sizes` says how many belong to each
// image. Boxes wholly outside their image are dropped from `boxes`.
torch::Tensor crop_boxes(const std::vector<SummedArea>& images, std::vector<torch::Tensor>& boxes,
                         std::int64_t h, std::int64_t w, std::int64_t size,
                         std::vector<std::int64_t>& sizes) {
  const std::size_t count = images.size();
  sizes.assign(count, 0);
  std::vector<std::pair<std::size_t, cv::Rect>> regions;  // image, region
  for (std::size_t i = 0; i < count; ++i) {
    if (!boxes[i].defined() || boxes[i].size(0) == 0) continue;
    std::vector<std::int64_t> kept;
    std::vector<cv::Rect> rects;
    crop_regions(boxes[i], h, w, kept, rects);
    if (kept.empty()) {
      boxes[i] = torch::Tensor();
    } else if (static_cast<std::int64_t>(kept.size()) < boxes[i].size(0)) {
      boxes[i] = boxes[i].index({as_index(kept)});
    }
    sizes[i] = static_cast<std::int64_t>(kept.size());
    for (const auto& r : rects) regions.emplace_back(i, r);
  }
  auto crops =
      torch::empty({static_cast<std::int64_t>(regions.size()), 3, size, size},
                   torch::TensorOptions().memory_format(torch::MemoryFormat::ChannelsLast));
  float* out = crops.data_ptr<float>();
  at::parallel_for(
      0, static_cast<std::int64_t>(regions.size()), 16, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t n = begin; n < end; ++n) {
          const auto& [image, region] = regions[static_cast<std::size_t>(n)];
          area_resample(images[image], region, out + n * 3 * size * size, size, size, 0, size);
        }
      });
  return crops;
}

}  // namespace

// Images of one size go through each network together, as facenet-pytorch batches them: one
// P-Net pass per pyramid scale for all images, one R-Net and one O-Net pass over the crops of
// all images. Everything between the networks is per image, as in the single-image case.
std::vector<std::vector<Detection>> MtcnnDetector::detect_same_size(
    const std::vector<cv::Mat>& bgr_images, const MtcnnOptions& options) const {
  c10::InferenceMode guard;
  auto& pnet = const_cast<nn::PNetImpl&>(*nets_->pnet);  // forward does not mutate in eval mode
  auto& rnet = const_cast<nn::RNetImpl&>(*nets_->rnet);
  auto& onet = const_cast<nn::ONetImpl&>(*nets_->onet);
  const std::size_t count = bgr_images.size();
  const std::int64_t h = bgr_images[0].rows, w = bgr_images[0].cols;
  std::vector<SummedArea> images(count);
  for_each_image(count, [&](std::size_t i) {
    cv::Mat rgb;
    cv::cvtColor(bgr_images[i], rgb, cv::COLOR_BGR2RGB);
    images[i] = SummedArea(rgb);
  });
  std::vector<std::vector<Detection>> results(count);
  auto boxes = pnet_stage(pnet, images, h, w, options);

  // Stage 2: R-Net on 24x24 crops.
  std::vector<std::int64_t> sizes;
  if (const auto crops = crop_boxes(images, boxes, h, w, 24, sizes); crops.size(0) > 0) {
    const auto [reg, probs] = forward_in_chunks(rnet, crops);
    const auto offsets = start_offsets(sizes);
    for_each_image(count, [&](std::size_t i) {
      if (sizes[i] == 0) return;
      boxes[i] = refine(boxes[i], reg.narrow(0, offsets[i], sizes[i]),
                        probs.narrow(0, offsets[i], sizes[i]), options.thresholds[1]);
    });
  } else {
    return results;
  }

  // Stage 3: O-Net on 48x48 crops, with landmarks.
  if (const auto crops = crop_boxes(images, boxes, h, w, 48, sizes); crops.size(0) > 0) {
    const auto [reg, marks, probs] = forward_in_chunks(onet, crops);
    const auto offsets = start_offsets(sizes);
    for_each_image(count, [&](std::size_t i) {
      if (sizes[i] == 0) return;
      results[i] = finish(boxes[i], reg.narrow(0, offsets[i], sizes[i]),
                          marks.narrow(0, offsets[i], sizes[i]),
                          probs.narrow(0, offsets[i], sizes[i]), options.thresholds[2]);
    });
  }
  return results;
}

std::vector<Detection> MtcnnDetector::detect(const cv::Mat& bgr,
                                             const MtcnnOptions& options) const {
  check_inputs({bgr}, options);
  return detect_same_size({bgr}, options)[0];
}

std::vector<std::vector<Detection>> MtcnnDetector::detect_batch(
    const std::vector<cv::Mat>& bgr_images, const MtcnnOptions& options) const {
  check_inputs(bgr_images, options);
  // Images of one size share network passes, up to this many pixels per pass (memory).
  constexpr std::int64_t kPixelsPerPass = 4'000'000;
  std::vector<std::vector<Detection>> results(bgr_images.size());
  std::map<std::pair<int, int>, std::vector<std::size_t>> by_size;
  for (std::size_t i = 0; i < bgr_images.size(); ++i)
    by_size[{bgr_images[i].rows, bgr_images[i].cols}].push_back(i);
  for (const auto& [size, members] : by_size) {
    const auto per_pass = std::max<std::int64_t>(
        1, kPixelsPerPass / (static_cast<std::int64_t>(size.first) * size.second));
    for (std::size_t start = 0; start < members.size(); start += per_pass) {
      const std::size_t end = std::min(members.size(), start + static_cast<std::size_t>(per_pass));
      std::vector<cv::Mat> group;
      for (std::size_t k = start; k < end; ++k) group.push_back(bgr_images[members[k]]);
      auto found = detect_same_size(group, options);
      for (std::size_t k = start; k < end; ++k) results[members[k]] = std::move(found[k - start]);
    }
  }
  return results;
}

}  // namespace facemag
