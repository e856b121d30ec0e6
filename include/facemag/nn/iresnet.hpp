// iResNet-18/34/50/100 exactly as MagFace's backbone (models/iresnet.py): parameter names equal
// the reference state_dict keys, BatchNorm eps 2e-5 and PyTorch momentum 0.9 (running statistics
// move 90 % of the way to each batch's in training), Dropout2d(p = 0.4) before `fc` in training,
// 512-d output of a final BatchNorm1d.
//
// Input: N x 3 x 112 x 112 float32, BGR channel order, values x / 255 in [0, 1].
// Output: N x 512 raw features; their L2 norm is MagFace's quality (never normalised here).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facemag::nn {

class GraphSink;  // graph.hpp

// IBasicBlock: BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the (downsampled) input.
class IBasicBlockImpl : public torch::nn::Module {
 public:
  IBasicBlockImpl(std::int64_t inplanes, std::int64_t planes, std::int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  // forward() on activations in oneDNN's channel blocks (IResNetImpl::forward_blocked).
  torch::Tensor forward_blocked(const torch::Tensor& x);

  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::PReLU prelu{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::BatchNorm2d bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};  // conv1x1(stride) + BN, when the shape changes
};
TORCH_MODULE(IBasicBlock);

enum class IResNetDepth { k18 = 18, k34 = 34, k50 = 50, k100 = 100 };

// "iresnet18" -> k18 ... ; nullopt for other names.
std::optional<IResNetDepth> iresnet_depth_from_name(std::string_view name);

// Blocks per stage: 18 {2,2,2,2}, 34 {3,4,6,3}, 50 {3,4,14,3}, 100 {3,13,30,3}.
std::array<int, 4> iresnet_layers(IResNetDepth depth);

class IResNetImpl : public torch::nn::Module {
 public:
  explicit IResNetImpl(IResNetDepth depth, std::int64_t embedding_size = 512);
  torch::Tensor forward(const torch::Tensor& x);
  // forward() for training on CPUs with AVX2 or AVX-512 (float32, same parameters, running
  // statistics and dropout): the convolutions and BatchNorms on oneDNN with the activations in
  // its channel blocks (nn::blocked) from the first convolution to the last block, where its
  // training kernels are fastest. Throws InvalidInput where nn::blocked::available() is false.
  torch::Tensor forward_blocked(const torch::Tensor& x);
  // The inference network (eval mode) written to `sink`, folded as FoldedIResNet folds it;
  // returns the features' value.
  std::string describe(GraphSink& sink, const std::string& input) const;

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::PReLU prelu{nullptr};
  std::array<torch::nn::Sequential, 4> layers{nullptr, nullptr, nullptr, nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::Dropout2d dropout{nullptr};  // set options.p() to change the training rate
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d features{nullptr};
};
TORCH_MODULE(IResNet);

// The network's parameters prepared for inference: every BatchNorm that follows a convolution
// (or the final Linear) folded into its weights and bias (computed in double, stored in `dtype`;
// the final Linear always float32). The BatchNorm that *precedes* each block's first convolution
// cannot be folded exactly (zero padding), so it stays a per-channel multiply-add.
struct FoldedIResNet {
  // kOnDemand leaves each convolution's `weight` undefined and folds it again at every call of
  // its `folded_weight` (for a copy that is reordered and dropped: no second copy of the weights
  // is kept); `net` must then outlive this.
  enum class ConvWeights { kKept, kOnDemand };
  FoldedIResNet(const IResNetImpl& net, torch::ScalarType dtype,
                ConvWeights conv_weights = ConvWeights::kKept);

  struct Conv {
    torch::Tensor weight;  // O x I x kh x kw, channels-last memory (O, kh, kw, I); or undefined
    std::vector<std::int64_t> weight_sizes;
    std::function<torch::Tensor()> folded_weight;  // `weight`, or folded anew (kOnDemand)
    torch::Tensor bias;
    std::int64_t stride = 1, padding = 0;
  };
  struct Block {
    torch::Tensor pre_scale, pre_shift;  // bn1 as x * scale + shift, 1 x C x 1 x 1
    Conv conv1;                          // conv1 + bn2
    torch::Tensor prelu;
    Conv conv2;  // conv2 + bn3
    std::optional<Conv> downsample;
  };
  Conv stem;  // conv1 + bn1
  torch::Tensor stem_prelu;
  std::vector<Block> blocks;
  // bn2 + fc + features; columns in channels-last order (h, w, c) of the last activation.
  torch::Tensor fc_weight, fc_bias;
};

// The folded network on LibTorch: channels-last activations so that the convolutions run through
// oneDNN, optionally in bfloat16. Immutable after construction; forward may run on several
// threads at once.
//
// float32 agrees with IResNetImpl::forward to float rounding (different summation order);
// bfloat16 trades about three significant digits for about twice the speed.
class FusedIResNet {
 public:
  FusedIResNet(const IResNetImpl& net, torch::ScalarType dtype = torch::kFloat32);
  // Same input and output as IResNetImpl::forward (N x 3 x 112 x 112 float32 -> N x 512 float32).
  torch::Tensor forward(const torch::Tensor& x) const;

 private:
  torch::ScalarType dtype_;
  FoldedIResNet net_;
};

}  // namespace facemag::nn
