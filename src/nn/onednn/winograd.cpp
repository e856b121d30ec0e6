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

// Tiles per product: ~800 keeps the products efficient and the transformed chunk (~25 MB at 512
// channels) small.
constexpr std::int64_t kTilesPerProduct = 784;
using Lanes = FloatVec<kLanes>;

// 2x2 output tiles over an H x W image (the last row or column of tiles half outside when odd).
struct Tiling {
  std::int64_t height, width;
  std::int64_t rows() const { return (height + 1) / 2; }
  std::int64_t cols() const { return (width + 1) / 2; }
  std::int64_t per_image() const { return rows() * cols(); }
  std::int64_t plane_floats() const { return height * width * kLanes; }
};

// A block's values at pixel (y, x) of its H x W plane, zeros outside.
[[gnu::always_inline]] inline Lanes pixel_or_zero(const float* plane, const Tiling& tiling,
                                                  std::int64_t y, std::int64_t x) {
  return y < 0 || y >= tiling.height || x < 0 || x >= tiling.width
             ? Lanes{}
             : load_floats<kLanes>(plane + (y * tiling.width + x) * kLanes);
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
        d[i][j] = pixel_or_zero(plane, tiling, 2 * row - 1 + i, 2 * col - 1 + j);
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
  return std::clamp((kTilesPerProduct + tiling.per_image() - 1) / tiling.per_image(),
                    std::int64_t{1}, batch);
}

// Calls transform(image, block, tile row) for every row of tiles of the chunk's images, in
// parallel.
template <class Transform>
void for_each_tile_row(std::int64_t images, std::int64_t blocks, const Tiling& tiling,
                       Transform transform) {
  at::parallel_for(
      0, images * blocks * tiling.rows(), 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r = begin; r < end; ++r)
          transform(r / (blocks * tiling.rows()), r / tiling.rows() % blocks, r % tiling.rows());
      });
}

// Goes through the batch of x a chunk of images at a time: transforms the chunk's input tiles into
// v ([point][tile][x's channels]), then calls visit(first image, images, tiles, v, w) with w room
// for [point][tile][outs]. v and w lie in `workspace`.
template <class Visit>
void for_each_chunk(const Blocked& x, std::int64_t outs, float* workspace, Visit visit) {
  const Tiling tiling{x.height, x.width};
  const std::int64_t ins = x.channels, blocks = ins / kLanes;
  const std::int64_t chunk = images_per_product(tiling, x.batch);
  float* v = workspace;
  float* w = workspace + kPoints * chunk * tiling.per_image() * ins;
  for (std::int64_t first = 0; first < x.batch; first += chunk) {
    const std::int64_t images = std::min(chunk, x.batch - first),
                       tiles = images * tiling.per_image();
    const float* chunk_data = x.data + first * blocks * tiling.plane_floats();
    for_each_tile_row(images, blocks, tiling, [&](auto image, auto block, auto row) {
      transform_input_row(
          chunk_data + (image * blocks + block) * tiling.plane_floats(), tiling, row,
          v + (image * tiling.per_image() + row * tiling.cols()) * ins + block * kLanes, ins,
          tiles * ins);
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

torch::Tensor transform_weights(const torch::Tensor& weight, bool for_data_gradient) {
  auto transformed = torch::empty({kPoints, weight.size(0) * weight.size(1)}, torch::kFloat32);
  transform_weights(weight, for_data_gradient, transformed.data_ptr<float>());
  return transformed.view({kPoints, for_data_gradient ? weight.size(0) : weight.size(1),
                           for_data_gradient ? weight.size(1) : weight.size(0)});
}

void transform_weights(const torch::Tensor& weight, bool for_data_gradient, float* u) {
  if (weight.dim() != 4 || weight.size(2) != 3 || weight.size(3) != 3 ||
      weight.scalar_type() != torch::kFloat32)
    throw InvalidInput("Winograd convolution: weights must be float32 O x I x 3 x 3, got " +
                       std::string(c10::str(weight.sizes())) + " " +
                       c10::toString(weight.scalar_type()));
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

std::int64_t workspace_floats(const Blocked& x, std::int64_t outs) {
  const Tiling tiling{x.height, x.width};
  return kPoints * images_per_product(tiling, x.batch) * tiling.per_image() * (x.channels + outs);
}

void convolve(const Blocked& x, const float* weights, std::int64_t outs, float* y,
              const OutputEpilogue& epilogue, float* workspace) {
  require_blocks(x, outs);
  const Tiling tiling{x.height, x.width};
  const std::int64_t ins = x.channels, out_blocks = outs / kLanes;
  for_each_chunk(
      x, outs, workspace,
      [&](std::int64_t first, std::int64_t images, std::int64_t tiles, const float* v, float* m) {
        for (std::int64_t p = 0; p < kPoints; ++p)
          multiply('N', tiles, outs, ins, v + p * tiles * ins, weights + p * ins * outs, 0.0f,
                   m + p * tiles * outs);
        for_each_tile_row(images, out_blocks, tiling, [&](auto image, auto block, auto row) {
          transform_output_row(
              m + (image * tiling.per_image() + row * tiling.cols()) * outs + block * kLanes, outs,
              tiles * outs, tiling, row, BlockEpilogue(epilogue, block),
              y + ((first + image) * out_blocks + block) * tiling.plane_floats());
        });
      });
}

torch::Tensor weight_gradient(const Blocked& x, const float* dy, std::int64_t outs,
                              float* workspace) {
  require_blocks(x, outs);
  const Tiling tiling{x.height, x.width};
  const std::int64_t ins = x.channels, out_blocks = outs / kLanes;
  auto transformed = torch::empty({kPoints, ins, outs}, torch::kFloat32);
  for_each_chunk(
      x, outs, workspace,
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
