// Compiled only where CMake found oneDNN (FACEMAG_HAVE_ONEDNN).
#if FACEMAG_HAVE_ONEDNN
#include "winograd.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <string>

#include "../kernels.hpp"
#include "facemag/error.hpp"
#include "onednn_plan.hpp"

namespace facemag::nn::winograd {
namespace {

// Tiles per product: ~800 (F(2x2)) or ~400 (F(4x4)) keeps the products efficient and the
// transformed chunk small (~14k point-tiles either way: ~29 MB at 256 channels in and out).
constexpr std::int64_t tiles_per_product(std::int64_t side) { return side == 2 ? 784 : 392; }
using Lanes = FloatVec<kLanes>;

// side x side output tiles over the H x W output of a 3x3 convolution (the last row or column of
// tiles partly outside where side does not divide the size), whose input is in_height() x
// in_width() (padding 1: the same size; padding 0: 2 more each way).
struct Tiling {
  std::int64_t height, width, side = 2, padding = 1;
  std::int64_t rows() const { return (height + side - 1) / side; }
  std::int64_t cols() const { return (width + side - 1) / side; }
  std::int64_t per_image() const { return rows() * cols(); }
  std::int64_t plane_floats() const { return height * width * kLanes; }
  std::int64_t in_height() const { return height + 2 - 2 * padding; }
  std::int64_t in_width() const { return width + 2 - 2 * padding; }
  std::int64_t in_plane_floats() const { return in_height() * in_width() * kLanes; }
};

// The tiling of x's convolution with `padding`.
Tiling tiling_of(const Blocked& x, Tile tile, std::int64_t padding) {
  return {x.height + 2 * padding - 2, x.width + 2 * padding - 2, static_cast<std::int64_t>(tile),
          padding};
}

// A block's values at pixel (y, x) of its input plane, zeros outside.
[[gnu::always_inline]] inline Lanes pixel_or_zero(const float* plane, const Tiling& tiling,
                                                  std::int64_t y, std::int64_t x) {
  return y < 0 || y >= tiling.in_height() || x < 0 || x >= tiling.in_width()
             ? Lanes{}
             : load_floats<kLanes>(plane + (y * tiling.in_width() + x) * kLanes);
}

// Transformed values are stored [point][tile][channel]: one row-major tiles x channels matrix per
// point. A transform handles one row of tiles of one channel block of one image: `tiles` points at
// the row's first tile and the block's first channel, `channels` is the distance between tiles
// and `point_stride` between points.

// B^T d B of each 4x4 input tile d (the tile's outputs' 3x3 neighbourhoods, zeros outside).
FACEMAG_VECTOR_CLONES void transform_input_row(const float* __restrict plane, Tiling tiling,
                                               std::int64_t row, float* __restrict tiles,
                                               std::int64_t channels, std::int64_t point_stride) {
  for (std::int64_t col = 0; col < tiling.cols(); ++col, tiles += channels) {
    Lanes d[4][4];
    for (std::int64_t i = 0; i < 4; ++i)
      for (std::int64_t j = 0; j < 4; ++j)
        d[i][j] = pixel_or_zero(plane, tiling, 2 * row - tiling.padding + i,
                                2 * col - tiling.padding + j);
    Lanes r[4][4];  // B^T d
    for (std::int64_t j = 0; j < 4; ++j) {
      r[0][j] = d[0][j] - d[2][j];
      r[1][j] = d[1][j] + d[2][j];
      r[2][j] = d[2][j] - d[1][j];
      r[3][j] = d[1][j] - d[3][j];
    }
    for (std::int64_t i = 0; i < 4; ++i) {  // (B^T d) B
      float* out = tiles + 4 * i * point_stride;
      store_floats<kLanes>(out, r[i][0] - r[i][2]);
      store_floats<kLanes>(out + point_stride, r[i][1] + r[i][2]);
      store_floats<kLanes>(out + 2 * point_stride, r[i][2] - r[i][1]);
      store_floats<kLanes>(out + 3 * point_stride, r[i][1] - r[i][3]);
    }
  }
}

// One block's epilogue: its lanes of the bias and slopes.
struct BlockEpilogue {
  bool bias, accumulate, relu, prelu;
  Lanes bias_lanes, slope_lanes;

  BlockEpilogue(const OutputEpilogue& e, std::int64_t block)
      : bias(e.bias != nullptr), accumulate(e.accumulate), relu(e.relu), prelu(e.prelu != nullptr) {
    if (bias) bias_lanes = load_floats<kLanes>(e.bias + block * kLanes);
    if (prelu) slope_lanes = load_floats<kLanes>(e.prelu + block * kLanes);
  }
  // In oneDNN's order: bias, the residual sum, ReLU, PReLU.
  [[gnu::always_inline]] void store(float* out, Lanes v) const {
    if (bias) v += bias_lanes;
    if (accumulate) v += load_floats<kLanes>(out);
    if (relu) v = max_floats<kLanes>(v, Lanes{});
    if (prelu) v = prelu_floats<kLanes>(v, slope_lanes);
    store_floats<kLanes>(out, v);
  }
};

// A^T m A of each transformed product m: the 2x2 outputs, those inside the image stored.
FACEMAG_VECTOR_CLONES void transform_output_row(const float* __restrict tiles,
                                                std::int64_t channels, std::int64_t point_stride,
                                                Tiling tiling, std::int64_t row,
                                                const BlockEpilogue& epilogue,
                                                float* __restrict plane) {
  for (std::int64_t col = 0; col < tiling.cols(); ++col, tiles += channels) {
    Lanes m[4][4];
    for (std::int64_t p = 0; p < kPoints; ++p)
      m[p / 4][p % 4] = load_floats<kLanes>(tiles + p * point_stride);
    for (std::int64_t i = 0; i < 2; ++i) {
      const std::int64_t y = 2 * row + i, x = 2 * col;
      if (y >= tiling.height) break;
      Lanes r[4];  // row i of A^T m
      for (std::int64_t j = 0; j < 4; ++j)
        r[j] = i == 0 ? m[0][j] + m[1][j] + m[2][j] : m[1][j] - m[2][j] - m[3][j];
      float* out = plane + (y * tiling.width + x) * kLanes;
      epilogue.store(out, r[0] + r[1] + r[2]);
      if (x + 1 < tiling.width) epilogue.store(out + kLanes, r[1] - r[2] - r[3]);
    }
  }
}

// F(4x4, 3x3) (Lavin and Gray's interpolation points 0, 1, -1, 2, -2 and infinity): each 4x4
// output tile from a 6x6 input tile, 36 multiplications per pair of channels instead of 144. The
// transforms multiply only by powers of two (the 5s of B^T are written 4 + 1), so a fused
// multiply-add rounds as a multiply and an add do and every clone computes the same values.

// B^T d B of each 6x6 input tile d.
FACEMAG_VECTOR_CLONES void transform_input_row_4x4(const float* __restrict plane, Tiling tiling,
                                                   std::int64_t row, float* __restrict tiles,
                                                   std::int64_t channels,
                                                   std::int64_t point_stride) {
  const auto b_transpose = [](const Lanes d[6], Lanes r[6]) {
    r[0] = 4.0f * (d[0] - d[2]) + (d[4] - d[2]);
    r[1] = (d[3] + d[4]) - 4.0f * (d[1] + d[2]);
    r[2] = 4.0f * (d[1] - d[2]) + (d[4] - d[3]);
    r[3] = 2.0f * (d[3] - d[1]) + (d[4] - d[2]);
    r[4] = 2.0f * (d[1] - d[3]) + (d[4] - d[2]);
    r[5] = 4.0f * (d[1] - d[3]) + (d[5] - d[3]);
  };
  for (std::int64_t col = 0; col < tiling.cols(); ++col, tiles += channels) {
    Lanes r[6][6];  // B^T d, column by column
    for (std::int64_t j = 0; j < 6; ++j) {
      Lanes d[6];
      for (std::int64_t i = 0; i < 6; ++i)
        d[i] = pixel_or_zero(plane, tiling, 4 * row - tiling.padding + i,
                             4 * col - tiling.padding + j);
      Lanes column[6];
      b_transpose(d, column);
      for (std::int64_t i = 0; i < 6; ++i) r[i][j] = column[i];
    }
    for (std::int64_t i = 0; i < 6; ++i) {  // (B^T d) B
      Lanes v[6];
      b_transpose(r[i], v);
      for (std::int64_t j = 0; j < 6; ++j)
        store_floats<kLanes>(tiles + (6 * i + j) * point_stride, v[j]);
    }
  }
}

// A^T m A of each transformed product m: the 4x4 outputs, those inside the image stored.
FACEMAG_VECTOR_CLONES void transform_output_row_4x4(const float* __restrict tiles,
                                                    std::int64_t channels,
                                                    std::int64_t point_stride, Tiling tiling,
                                                    std::int64_t row, const BlockEpilogue& epilogue,
                                                    float* __restrict plane) {
  const auto a_transpose = [](const Lanes m[6], Lanes o[4]) {
    const Lanes sum12 = m[1] + m[2], difference12 = m[1] - m[2];
    const Lanes sum34 = m[3] + m[4], difference34 = m[3] - m[4];
    o[0] = m[0] + sum12 + sum34;
    o[1] = difference12 + 2.0f * difference34;
    o[2] = sum12 + 4.0f * sum34;
    o[3] = difference12 + 8.0f * difference34 + m[5];
  };
  const std::int64_t rows = std::min<std::int64_t>(4, tiling.height - 4 * row);
  for (std::int64_t col = 0; col < tiling.cols(); ++col, tiles += channels) {
    Lanes r[4][6];  // A^T m
    for (std::int64_t j = 0; j < 6; ++j) {
      Lanes m[6], o[4];
      for (std::int64_t i = 0; i < 6; ++i)
        m[i] = load_floats<kLanes>(tiles + (6 * i + j) * point_stride);
      a_transpose(m, o);
      for (std::int64_t i = 0; i < 4; ++i) r[i][j] = o[i];
    }
    const std::int64_t x = 4 * col, cols = std::min<std::int64_t>(4, tiling.width - x);
    for (std::int64_t i = 0; i < rows; ++i) {  // (A^T m) A
      Lanes o[4];
      a_transpose(r[i], o);
      float* out = plane + ((4 * row + i) * tiling.width + x) * kLanes;
      for (std::int64_t j = 0; j < cols; ++j) epilogue.store(out + j * kLanes, o[j]);
    }
  }
}

// A g A^T of each 2x2 tile g of the output's gradient (zeros outside): the gradient of the
// transformed products.
FACEMAG_VECTOR_CLONES void transform_output_gradient_row(const float* __restrict plane,
                                                         Tiling tiling, std::int64_t row,
                                                         float* __restrict tiles,
                                                         std::int64_t channels,
                                                         std::int64_t point_stride) {
  for (std::int64_t col = 0; col < tiling.cols(); ++col, tiles += channels) {
    Lanes g[2][2];
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 2; ++j)
        g[i][j] = pixel_or_zero(plane, tiling, 2 * row + i, 2 * col + j);
    const Lanes r[4][2] = {{g[0][0], g[0][1]},  // A g
                           {g[0][0] + g[1][0], g[0][1] + g[1][1]},
                           {g[0][0] - g[1][0], g[0][1] - g[1][1]},
                           {-g[1][0], -g[1][1]}};
    for (std::int64_t i = 0; i < 4; ++i) {  // (A g) A^T
      float* out = tiles + 4 * i * point_stride;
      store_floats<kLanes>(out, r[i][0]);
      store_floats<kLanes>(out + point_stride, r[i][0] + r[i][1]);
      store_floats<kLanes>(out + 2 * point_stride, r[i][0] - r[i][1]);
      store_floats<kLanes>(out + 3 * point_stride, -r[i][1]);
    }
  }
}

// OIHW weight gradient from the transformed one ([point][in][out]): G^T d G of each pair.
torch::Tensor weight_gradient_of(const torch::Tensor& transformed, std::int64_t outs,
                                 std::int64_t ins) {
  auto dw = torch::empty({outs, ins, 3, 3}, torch::kFloat32);
  const float* u = transformed.data_ptr<float>();
  float* w = dw.data_ptr<float>();
  at::parallel_for(0, outs, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t o = begin; o < end; ++o)
      for (std::int64_t i = 0; i < ins; ++i) {
        float d[4][4];
        for (int p = 0; p < kPoints; ++p) d[p / 4][p % 4] = u[p * ins * outs + i * outs + o];
        float r[3][4];  // G^T d
        for (int x = 0; x < 4; ++x) {
          const float half_sum = (d[1][x] + d[2][x]) * 0.5f;
          r[0][x] = d[0][x] + half_sum;
          r[1][x] = (d[1][x] - d[2][x]) * 0.5f;
          r[2][x] = half_sum + d[3][x];
        }
        float* k = w + (o * ins + i) * 9;
        for (int y = 0; y < 3; ++y) {  // (G^T d) G
          const float half_sum = (r[y][1] + r[y][2]) * 0.5f;
          k[3 * y] = r[y][0] + half_sum;
          k[3 * y + 1] = (r[y][1] - r[y][2]) * 0.5f;
          k[3 * y + 2] = half_sum + r[y][3];
        }
      }
  });
  return dw;
}

void multiply(char transpose_a, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
              const float* b, float beta, float* c) {
  const auto status =
      dnnl::sgemm(transpose_a, 'N', m, n, k, 1.0f, a, transpose_a == 'N' ? k : m, b, n, beta, c, n);
  if (status != dnnl::status::success)
    throw Error("Winograd convolution: oneDNN's sgemm failed for a " + std::to_string(m) + " x " +
                std::to_string(k) + " by " + std::to_string(k) + " x " + std::to_string(n) +
                " product");
}

std::int64_t images_per_product(const Tiling& tiling, std::int64_t batch) {
  const std::int64_t per_product = tiles_per_product(tiling.side);
  return std::clamp((per_product + tiling.per_image() - 1) / tiling.per_image(), std::int64_t{1},
                    batch);
}

// Calls transform(image, block, tile row) for every row of tiles of the chunk's images, in
// parallel, the blocks of a row one after the other: the transformed tiles keep a tile's channels
// together, so consecutive blocks fill the same cache lines (a block is half a line) while they are
// still in cache.
template <class Transform>
void for_each_tile_row(std::int64_t images, std::int64_t blocks, const Tiling& tiling,
                       Transform transform) {
  at::parallel_for(
      0, images * tiling.rows() * blocks, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r = begin; r < end; ++r)
          transform(r / (tiling.rows() * blocks), r % blocks, r / blocks % tiling.rows());
      });
}

// Goes through the batch of x a chunk of images at a time: transforms the chunk's input tiles into
// v ([point][tile][x's channels]), then calls visit(first image, images, tiles, v, w) with w room
// for [point][tile][outs]. v and w lie in `workspace`.
template <class Visit>
void for_each_chunk(const Blocked& x, std::int64_t outs, const Tiling& tiling, float* workspace,
                    Visit visit) {
  const auto tile = static_cast<Tile>(tiling.side);
  const std::int64_t ins = x.channels, blocks = ins / kLanes, point_count = points(tile);
  const std::int64_t chunk = images_per_product(tiling, x.batch);
  float* v = workspace;
  float* w = workspace + point_count * chunk * tiling.per_image() * ins;
  for (std::int64_t first = 0; first < x.batch; first += chunk) {
    const std::int64_t images = std::min(chunk, x.batch - first),
                       tiles = images * tiling.per_image();
    const float* chunk_data = x.data + first * blocks * tiling.in_plane_floats();
    for_each_tile_row(images, blocks, tiling, [&](auto image, auto block, auto row) {
      const float* plane = chunk_data + (image * blocks + block) * tiling.in_plane_floats();
      float* row_tiles =
          v + (image * tiling.per_image() + row * tiling.cols()) * ins + block * kLanes;
      if (tile == Tile::k4x4)
        transform_input_row_4x4(plane, tiling, row, row_tiles, ins, tiles * ins);
      else
        transform_input_row(plane, tiling, row, row_tiles, ins, tiles * ins);
    });
    visit(first, images, tiles, static_cast<const float*>(v), w);
  }
}

void require_blocks(const Blocked& x, std::int64_t outs) {
  if (x.channels % kLanes != 0 || outs % kLanes != 0)
    throw InvalidInput("Winograd convolution: channels must come in blocks of 8, got " +
                       std::to_string(x.channels) + " in, " + std::to_string(outs) + " out");
}

}  // namespace

bool applies(std::int64_t ins, std::int64_t outs, std::int64_t kernel, std::int64_t stride,
             std::int64_t padding) {
  return kernel == 3 && stride == 1 && padding == 1 && ins >= 128 && outs >= 128 &&
         onednn::cpu_has(dnnl_cpu_isa_avx2);
}

std::optional<Tile> forward_tile(std::int64_t ins, std::int64_t outs, std::int64_t kernel,
                                 std::int64_t stride, std::int64_t padding) {
  if (kernel != 3 || stride != 1 || (padding != 0 && padding != 1) || ins < 32 || outs < 32 ||
      ins % kLanes != 0 || outs % kLanes != 0 || !onednn::cpu_has(dnnl_cpu_isa_avx2))
    return std::nullopt;
  if (ins * outs <= 128 * 128) return Tile::k4x4;
  if (ins * outs <= 256 * 256) return Tile::k2x2;
  return std::nullopt;
}

torch::Tensor transform_weights(const torch::Tensor& weight, bool for_data_gradient) {
  auto transformed = torch::empty({kPoints, weight.size(0) * weight.size(1)}, torch::kFloat32);
  transform_weights(weight, for_data_gradient, transformed.data_ptr<float>());
  return transformed.view({kPoints, for_data_gradient ? weight.size(0) : weight.size(1),
                           for_data_gradient ? weight.size(1) : weight.size(0)});
}

namespace {

void require_3x3(const torch::Tensor& weight) {
  if (weight.dim() != 4 || weight.size(2) != 3 || weight.size(3) != 3 ||
      weight.scalar_type() != torch::kFloat32)
    throw InvalidInput("Winograd convolution: weights must be float32 O x I x 3 x 3, got " +
                       std::string(c10::str(weight.sizes())) + " " +
                       c10::toString(weight.scalar_type()));
}

// G k G^T for F(4x4, 3x3), in double and rounded once: its entries (1/4, 1/6, 1/12, 1/24) are not
// exact in binary.
void transform_weights_4x4(const torch::Tensor& weight, float* u) {
  static constexpr double g[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  const auto k = weight.accessor<float, 4>();
  const std::int64_t outs = weight.size(0), ins = weight.size(1);
  at::parallel_for(0, outs, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t o = begin; o < end; ++o)
      for (std::int64_t i = 0; i < ins; ++i) {
        double r[6][3] = {};  // G k
        for (int p = 0; p < 6; ++p)
          for (int x = 0; x < 3; ++x)
            for (int y = 0; y < 3; ++y) r[p][x] += g[p][y] * k[o][i][y][x];
        for (int p = 0; p < 6; ++p)
          for (int q = 0; q < 6; ++q) {  // (G k) G^T
            double value = 0;
            for (int x = 0; x < 3; ++x) value += r[p][x] * g[q][x];
            u[(6 * p + q) * ins * outs + i * outs + o] = static_cast<float>(value);
          }
      }
  });
}

}  // namespace

void transform_weights(const torch::Tensor& weight, Tile tile, float* out) {
  require_3x3(weight);
  if (tile == Tile::k4x4)
    transform_weights_4x4(weight, out);
  else
    transform_weights(weight, false, out);
}

void transform_weights(const torch::Tensor& weight, bool for_data_gradient, float* u) {
  require_3x3(weight);
  const auto k = weight.accessor<float, 4>();
  const std::int64_t outs = weight.size(0), ins = weight.size(1);
  at::parallel_for(0, outs, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t o = begin; o < end; ++o)
      for (std::int64_t i = 0; i < ins; ++i) {
        float g[3][3];
        for (int y = 0; y < 3; ++y)
          for (int x = 0; x < 3; ++x)
            g[y][x] = for_data_gradient ? k[o][i][2 - y][2 - x] : k[o][i][y][x];
        float r[4][3];  // G k
        for (int x = 0; x < 3; ++x) {
          r[0][x] = g[0][x];
          r[1][x] = (g[0][x] + g[1][x] + g[2][x]) * 0.5f;
          r[2][x] = (g[0][x] - g[1][x] + g[2][x]) * 0.5f;
          r[3][x] = g[2][x];
        }
        const std::int64_t at = for_data_gradient ? o * ins + i : i * outs + o;
        for (int y = 0; y < 4; ++y) {  // (G k) G^T
          const float row[4] = {r[y][0], (r[y][0] + r[y][1] + r[y][2]) * 0.5f,
                                (r[y][0] - r[y][1] + r[y][2]) * 0.5f, r[y][2]};
          for (int x = 0; x < 4; ++x) u[(4 * y + x) * ins * outs + at] = row[x];
        }
      }
  });
}

std::int64_t workspace_floats(const Blocked& x, std::int64_t outs, Tile tile,
                              std::int64_t padding) {
  const Tiling tiling = tiling_of(x, tile, padding);
  return points(tile) * images_per_product(tiling, x.batch) * tiling.per_image() *
         (x.channels + outs);
}

void convolve(const Blocked& x, const float* weights, std::int64_t outs, float* y,
              const OutputEpilogue& epilogue, float* workspace, Tile tile, std::int64_t padding) {
  require_blocks(x, outs);
  const Tiling tiling = tiling_of(x, tile, padding);
  const std::int64_t ins = x.channels, out_blocks = outs / kLanes, point_count = points(tile);
  for_each_chunk(
      x, outs, tiling, workspace,
      [&](std::int64_t first, std::int64_t images, std::int64_t tiles, const float* v, float* m) {
        // One product per point: with several per thread they run side by side, one thread
        // each (no barrier per product); else each on every thread.
        const auto product = [&](std::int64_t p) {
          multiply('N', tiles, outs, ins, v + p * tiles * ins, weights + p * ins * outs, 0.0f,
                   m + p * tiles * outs);
        };
        if (point_count >= 4 * at::get_num_threads()) {
          at::parallel_for(0, point_count, 1, [&](std::int64_t begin, std::int64_t end) {
            for (std::int64_t p = begin; p < end; ++p) product(p);
          });
        } else {
          for (std::int64_t p = 0; p < point_count; ++p) product(p);
        }
        for_each_tile_row(images, out_blocks, tiling, [&](auto image, auto block, auto row) {
          const float* row_tiles =
              m + (image * tiling.per_image() + row * tiling.cols()) * outs + block * kLanes;
          float* plane = y + ((first + image) * out_blocks + block) * tiling.plane_floats();
          const BlockEpilogue block_epilogue(epilogue, block);
          if (tile == Tile::k4x4)
            transform_output_row_4x4(row_tiles, outs, tiles * outs, tiling, row, block_epilogue,
                                     plane);
          else
            transform_output_row(row_tiles, outs, tiles * outs, tiling, row, block_epilogue, plane);
        });
      });
}

torch::Tensor weight_gradient(const Blocked& x, const float* dy, std::int64_t outs,
                              float* workspace) {
  require_blocks(x, outs);
  const Tiling tiling = tiling_of(x, Tile::k2x2, 1);
  const std::int64_t ins = x.channels, out_blocks = outs / kLanes;
  auto transformed = torch::empty({kPoints, ins, outs}, torch::kFloat32);
  for_each_chunk(
      x, outs, tiling, workspace,
      [&](std::int64_t first, std::int64_t images, std::int64_t tiles, const float* v, float* z) {
        for_each_tile_row(images, out_blocks, tiling, [&](auto image, auto block, auto row) {
          transform_output_gradient_row(
              dy + ((first + image) * out_blocks + block) * tiling.plane_floats(), tiling, row,
              z + (image * tiling.per_image() + row * tiling.cols()) * outs + block * kLanes, outs,
              tiles * outs);
        });
        for (std::int64_t p = 0; p < kPoints; ++p)
          multiply('T', ins, outs, tiles, v + p * tiles * ins, z + p * tiles * outs,
                   first == 0 ? 0.0f : 1.0f, transformed.data_ptr<float>() + p * ins * outs);
      });
  return weight_gradient_of(transformed, outs, ins);
}

}  // namespace facemag::nn::winograd

#endif  // FACEMAG_HAVE_ONEDNN
