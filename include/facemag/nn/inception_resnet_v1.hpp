// FaceNet's InceptionResnetV1 with facenet-pytorch's parameter names (BatchNorm eps 0.001).
//
// Input: N x 3 x 160 x 160 float32, RGB, (x - 127.5) / 128 (facenet-pytorch's
// fixed_image_standardization), a margin crop from MTCNN.
// forward(): N x 512, the last_bn output *before* facenet-pytorch's L2 normalisation (so that
// the magnitude stays visible; normalising it gives facenet-pytorch's embedding).
// logits(): N x num_classes from the optional classifier layer (VGGFace2: 8631, CASIA: 10575).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <functional>
#include <string>
#include <vector>

namespace facemag::nn {

class GraphSink;  // graph.hpp

// conv (no bias) - BatchNorm(eps 0.001) - ReLU.
class BasicConv2dImpl : public torch::nn::Module {
 public:
  BasicConv2dImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 2> kernel,
                  std::int64_t stride, std::array<std::int64_t, 2> padding = {0, 0});
  torch::Tensor forward(const torch::Tensor& x);
  std::string describe(GraphSink& sink, const std::string& x) const;
  // From now on forward() runs conv with bn folded into it (see prepare_inference).
  void fold_batch_norm();
  // The folded convolution (undefined before fold_batch_norm) and its geometry.
  const torch::Tensor& folded_weight() const { return folded_weight_; }
  const torch::Tensor& folded_bias() const { return folded_bias_; }
  std::int64_t stride() const { return stride_; }
  const std::array<std::int64_t, 2>& padding() const { return padding_; }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  std::int64_t stride_;
  std::array<std::int64_t, 2> padding_;
  torch::Tensor folded_weight_, folded_bias_;
};
TORCH_MODULE(BasicConv2d);

// Inception-ResNet block: branches concatenated, 1x1 conv2d (with bias), scaled, added to the
// input, ReLU unless `relu` is false. Block35 (3 branches), Block17 and Block8 (2 branches).
class InceptionResidualImpl : public torch::nn::Module {
 public:
  enum class Kind { kBlock35, kBlock17, kBlock8 };
  InceptionResidualImpl(Kind kind, double scale, bool relu = true);
  torch::Tensor forward(const torch::Tensor& x);
  std::string describe(GraphSink& sink, const std::string& x) const;
  // From now on forward() runs the closing conv2d with the residual scale folded into it.
  void fold_scale();

 private:
  double scale_;
  bool relu_;
  torch::Tensor folded_weight_, folded_bias_;
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> branches_;
  torch::nn::Conv2d conv2d_{nullptr};
};
TORCH_MODULE(InceptionResidual);

// Reduction blocks: stride-2 branches and a 3x3/2 max-pool, concatenated.
class InceptionReductionImpl : public torch::nn::Module {
 public:
  enum class Kind { kMixed6a, kMixed7a };
  explicit InceptionReductionImpl(Kind kind);
  torch::Tensor forward(const torch::Tensor& x);
  std::string describe(GraphSink& sink, const std::string& x) const;

 private:
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> branches_;
};
TORCH_MODULE(InceptionReduction);

class InceptionResnetV1Impl : public torch::nn::Module {
 public:
  // num_classes = 0: no classifier layer.
  explicit InceptionResnetV1Impl(std::int64_t num_classes = 0);
  torch::Tensor forward(const torch::Tensor& x);
  // The inference network (eval mode), BatchNorm and residual scales folded: the features'
  // value, then the logits' when `with_classifier` and the network has a classifier.
  std::vector<std::string> describe(GraphSink& sink, const std::string& input,
                                    bool with_classifier) const;
  torch::Tensor logits(const torch::Tensor& x);
  std::int64_t num_classes() const { return num_classes_; }

  // Prepares forward() for fast inference on LibTorch (the embedder's path where the build has
  // no oneDNN; with it, nn::OneDnnGraph runs describe()); call before the model is shared. Every
  // BatchNorm that follows a convolution and every residual scale are folded into the
  // convolution (in double) and activations become channels-last. Parameters and state_dict()
  // are unchanged; results equal the unprepared ones up to float rounding.
  void prepare_inference();

 private:
  std::int64_t num_classes_;
  bool prepared_ = false;
  BasicConv2d conv2d_1a_{nullptr}, conv2d_2a_{nullptr}, conv2d_2b_{nullptr}, conv2d_3b_{nullptr},
      conv2d_4a_{nullptr}, conv2d_4b_{nullptr};
  torch::nn::Sequential repeat_1_{nullptr}, repeat_2_{nullptr}, repeat_3_{nullptr};
  InceptionReduction mixed_6a_{nullptr}, mixed_7a_{nullptr};
  InceptionResidual block8_{nullptr};
  torch::nn::Linear last_linear_{nullptr}, logits_{nullptr};
  torch::nn::BatchNorm1d last_bn_{nullptr};
};
TORCH_MODULE(InceptionResnetV1);

}  // namespace facemag::nn
