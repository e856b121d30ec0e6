#include "facemag/nn/iresnet.hpp"

#include <torch/torch.h>

#include <tuple>

#include "facemag/error.hpp"
#include "facemag/nn/graph.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/blocked_training.hpp"

namespace facemag::nn {
namespace {

// MagFace's BatchNorm settings. PyTorch's momentum 0.9 means running = 0.1 old + 0.9 batch
// (upstream's choice, kept for training; inference only reads the running statistics).
constexpr double kBatchNormEps = 2e-5;
constexpr double kBatchNormMomentum = 0.9;
constexpr double kDropout = 0.4;

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel,
                       std::int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

torch::nn::BatchNorm2d batch_norm(std::int64_t channels) {
  return torch::nn::BatchNorm2d(
      torch::nn::BatchNorm2dOptions(channels).eps(kBatchNormEps).momentum(kBatchNormMomentum));
}

}  // namespace

IBasicBlockImpl::IBasicBlockImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride) {
  // Registration order = the reference state_dict order.
  bn1 = register_module("bn1", batch_norm(inplanes));
  conv1 = register_module("conv1", conv(inplanes, planes, 3, 1));
  bn2 = register_module("bn2", batch_norm(planes));
  prelu =
      register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(planes)));
  conv2 = register_module("conv2", conv(planes, planes, 3, stride));
  bn3 = register_module("bn3", batch_norm(planes));
  if (stride != 1 || inplanes != planes) {
    downsample = register_module(
        "downsample", torch::nn::Sequential(conv(inplanes, planes, 1, stride), batch_norm(planes)));
  }
}

torch::Tensor IBasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = bn3(conv2(nn::prelu(bn2(conv1(bn1(x))), prelu->weight)));
  out += downsample ? downsample->forward(x) : x;
  return out;
}

namespace {

torch::Tensor blocked_conv(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  // Every iResNet convolution pads kernel / 2.
  return blocked::conv2d(x, conv.weight, conv.options.stride()->at(0), conv.weight.size(2) / 2);
}

}  // namespace

torch::Tensor IBasicBlockImpl::forward_blocked(const torch::Tensor& x) {
  auto out = blocked::batch_norm(blocked_conv(*conv1, blocked::batch_norm(x, *bn1)), *bn2);
  out = blocked::batch_norm(blocked_conv(*conv2, blocked::prelu(out, prelu->weight)), *bn3);
  if (!downsample) return out + x;
  return out + blocked::batch_norm(blocked_conv(*downsample[0]->as<torch::nn::Conv2d>(), x),
                                   *downsample[1]->as<torch::nn::BatchNorm2d>());
}

std::optional<IResNetDepth> iresnet_depth_from_name(std::string_view name) {
  for (auto depth : {IResNetDepth::k18, IResNetDepth::k34, IResNetDepth::k50, IResNetDepth::k100}) {
    if (name == "iresnet" + std::to_string(static_cast<int>(depth))) return depth;
  }
  return std::nullopt;
}

std::array<int, 4> iresnet_layers(IResNetDepth depth) {
  switch (depth) {
    case IResNetDepth::k18:
      return {2, 2, 2, 2};
    case IResNetDepth::k34:
      return {3, 4, 6, 3};
    case IResNetDepth::k50:
      return {3, 4, 14, 3};
    case IResNetDepth::k100:
      return {3, 13, 30, 3};
  }
  return {};
}

IResNetImpl::IResNetImpl(IResNetDepth depth, std::int64_t embedding_size) {
  constexpr std::int64_t kFcScale = 7 * 7;  // 112x112 input, four stride-2 stages
  conv1 = register_module("conv1", conv(3, 64, 3, 1));
  bn1 = register_module("bn1", batch_norm(64));
  prelu = register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(64)));
  const auto blocks = iresnet_layers(depth);
  std::int64_t inplanes = 64;
  for (int stage = 0; stage < 4; ++stage) {
    const std::int64_t planes = 64 << stage;
    torch::nn::Sequential seq;
    for (int b = 0; b < blocks[stage]; ++b) {
      seq->push_back(IBasicBlock(inplanes, planes, b == 0 ? 2 : 1));
      inplanes = planes;
    }
    layers[stage] = register_module("layer" + std::to_string(stage + 1), seq);
  }
  bn2 = register_module("bn2", batch_norm(512));
  dropout = register_module("dropout", torch::nn::Dropout2d(kDropout));
  fc = register_module("fc", torch::nn::Linear(512 * kFcScale, embedding_size));
  features = register_module("features",
                             torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(embedding_size)
                                                        .eps(kBatchNormEps)
                                                        .momentum(kBatchNormMomentum)));
}

torch::Tensor IResNetImpl::forward(const torch::Tensor& x) {
  auto y = nn::prelu(bn1(conv1(x)), prelu->weight);
  for (auto& layer : layers) y = layer->forward(y);
  y = dropout(bn2(y));  // identity at inference
  return features(fc(y.flatten(1)));
}

torch::Tensor IResNetImpl::forward_blocked(const torch::Tensor& x) {
  if (!blocked::available())
    throw InvalidInput("blocked iResNet training needs oneDNN and a CPU with AVX2");
  auto y = blocked::prelu(blocked::batch_norm(blocked_conv(*conv1, x.contiguous()), *bn1),
                          prelu->weight);
  for (auto& layer : layers) {
    for (const auto& block : layer->children()) y = block->as<IBasicBlock>()->forward_blocked(y);
  }
  // The last 512 x 7 x 7 in NCHW again: bn2 and the dropout masks exactly as forward() draws them.
  y = dropout(bn2(blocked::to_nchw(y)));
  return features(fc(y.flatten(1)));
}

namespace {

FoldedIResNet::Conv fold(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn,
                         torch::ScalarType dtype, FoldedIResNet::ConvWeights kept) {
  FoldedIResNet::Conv out;
  out.weight_sizes = conv.weight.sizes().vec();
  if (kept == FoldedIResNet::ConvWeights::kKept) {
    std::tie(out.weight, out.bias) = fold_conv_batch_norm(conv.weight, bn, dtype);
    out.folded_weight = [weight = out.weight] { return weight; };
  } else {
    // The bias as fold_conv_batch_norm gives it, the weight only when asked for: folding them
    // all here would leave the freed temporaries in the heap, which facemag never trims.
    out.bias = batch_norm_affine(bn).second.to(dtype);
    out.folded_weight = [&conv, &bn, dtype] {
      const torch::NoGradGuard no_grad;
      return fold_conv_batch_norm(conv.weight, bn, dtype).first;
    };
  }
  out.stride = conv.options.stride()->at(0);
  out.padding = conv.weight.size(2) / 2;  // every iResNet convolution pads kernel / 2
  return out;
}

torch::Tensor run(const FoldedIResNet::Conv& c, const torch::Tensor& x) {
  return torch::conv2d(x, c.weight, c.bias, c.stride, c.padding);
}

torch::Tensor channel_vector(const torch::Tensor& v, torch::ScalarType dtype) {
  return v.to(dtype).view({1, -1, 1, 1}).contiguous();
}

}  // namespace

FoldedIResNet::FoldedIResNet(const IResNetImpl& net, torch::ScalarType dtype,
                             ConvWeights conv_weights) {
  torch::NoGradGuard no_grad;
  stem = fold(*net.conv1, *net.bn1, dtype, conv_weights);
  // Copies, never views of the network's tensors: it may be freed after folding.
  stem_prelu = net.prelu->weight.to(dtype, false, /*copy=*/true);
  for (const auto& layer : net.layers) {
    for (const auto& child : layer->children()) {
      const auto& b = *child->as<IBasicBlockImpl>();
      Block block;
      const auto [scale, shift] = batch_norm_affine(*b.bn1);
      block.pre_scale = channel_vector(scale, dtype);
      block.pre_shift = channel_vector(shift, dtype);
      block.conv1 = fold(*b.conv1, *b.bn2, dtype, conv_weights);
      block.prelu = b.prelu->weight.to(dtype, false, /*copy=*/true);
      block.conv2 = fold(*b.conv2, *b.bn3, dtype, conv_weights);
      if (b.downsample) {
        block.downsample =
            fold(*b.downsample->ptr(0)->as<torch::nn::Conv2dImpl>(),
                 *b.downsample->ptr(1)->as<torch::nn::BatchNorm2dImpl>(), dtype, conv_weights);
      }
      blocks.push_back(std::move(block));
    }
  }
  // features(fc(flatten(bn2(y)))): bn2 scales the fc's input columns (channel c owns columns
  // c*49 .. c*49+48), `features` scales its output rows. Folded in double a few rows at a time:
  // iResNet100's fc is 51 MB in float32, all of it in double 102 MB, which would stay in
  // facemag's untrimmed heap.
  const auto [s2, t2] = batch_norm_affine(*net.bn2);
  const auto [fs, ft] = batch_norm_affine(*net.features);
  const auto rows = net.fc->weight.size(0), columns = net.fc->weight.size(1), channels = s2.size(0),
             spatial = columns / channels;
  const auto column_scale = s2.repeat_interleave(spatial),
             column_shift = t2.repeat_interleave(spatial);
  // Columns reordered from (c, hw) to (hw, c): a channels-last activation flattens without a copy.
  fc_weight = torch::empty({rows, columns}, torch::kFloat32);
  fc_bias = torch::empty({rows}, torch::kFloat32);
  constexpr std::int64_t kRowsAtATime = 32;
  for (std::int64_t first = 0; first < rows; first += kRowsAtATime) {
    const auto n = std::min(kRowsAtATime, rows - first);
    auto weight = net.fc->weight.narrow(0, first, n).to(torch::kFloat64);
    const auto bias =
        net.fc->bias.narrow(0, first, n).to(torch::kFloat64) + weight.matmul(column_shift);
    const auto row_scale = fs.narrow(0, first, n);
    weight.mul_(column_scale).mul_(row_scale.view({-1, 1}));
    fc_weight.narrow(0, first, n)
        .view({n, spatial, channels})
        .copy_(weight.view({n, channels, spatial}).permute({0, 2, 1}));
    fc_bias.narrow(0, first, n).copy_(bias * row_scale + ft.narrow(0, first, n));
  }
}

FusedIResNet::FusedIResNet(const IResNetImpl& net, torch::ScalarType dtype)
    : dtype_(dtype), net_(net, dtype) {}

torch::Tensor FusedIResNet::forward(const torch::Tensor& input) const {
  auto x = input.to(dtype_).contiguous(torch::MemoryFormat::ChannelsLast);
  x = nn::prelu(run(net_.stem, x), net_.stem_prelu);
  for (const auto& b : net_.blocks) {
    auto y = torch::addcmul(b.pre_shift, x, b.pre_scale);
    y = nn::prelu(run(b.conv1, y), b.prelu);
    y = run(b.conv2, y);
    y.add_(b.downsample ? run(*b.downsample, x) : x);
    x = std::move(y);
  }
  // N x C x H x W in channels-last memory is N x H x W x C contiguous.
  const auto flat = x.permute({0, 2, 3, 1}).reshape({x.size(0), -1}).to(torch::kFloat32);
  return torch::addmm(net_.fc_bias, flat, net_.fc_weight.t());
}

std::string IResNetImpl::describe(GraphSink& sink, const std::string& input) const {
  const FoldedIResNet folded(*this, torch::kFloat32);
  const auto conv = [&](const std::string& x, const FoldedIResNet::Conv& c) {
    return sink.conv(x, c.weight, c.bias, {c.stride, c.stride}, {c.padding, c.padding}, 1);
  };
  auto x = sink.prelu(conv(input, folded.stem), folded.stem_prelu);
  for (const auto& b : folded.blocks) {
    auto y = sink.scale_shift(x, b.pre_scale.flatten(), b.pre_shift.flatten());
    y = conv(sink.prelu(conv(y, b.conv1), b.prelu), b.conv2);
    x = sink.add(y, b.downsample ? conv(x, *b.downsample) : x);
  }
  // The folded fc reads channels-last columns (h, w, c): back to (c, h, w) for a plain flatten.
  const auto channels = folded.blocks.back().conv2.weight.size(0);
  const auto rows = folded.fc_weight.size(0);
  const auto weight =
      folded.fc_weight.view({rows, -1, channels}).permute({0, 2, 1}).reshape({rows, -1});
  return sink.linear(sink.flatten(x, /*caffe_order=*/false), weight, folded.fc_bias);
}

}  // namespace facemag::nn
