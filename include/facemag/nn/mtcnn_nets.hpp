// MTCNN's three networks with facenet-pytorch's parameter names.
// Inputs are RGB, (x - 127.5) * 0.0078125, NCHW float32.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

namespace facemag::nn {

class GraphSink;  // graph.hpp

// Fully convolutional proposal net: returns (box regression N x 4 x h x w, face probability
// N x 2 x h x w) with one cell per 12x12 window at stride 2.
class PNetImpl : public torch::nn::Module {
 public:
  PNetImpl();
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);
  // The outputs of forward(), in its order.
  std::vector<std::string> describe(GraphSink& sink, const std::string& input) const;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, conv4_1{nullptr},
      conv4_2{nullptr};
  torch::nn::PReLU prelu1{nullptr}, prelu2{nullptr}, prelu3{nullptr};
};
TORCH_MODULE(PNet);

// Refinement net on 24x24 crops: returns (box regression N x 4, probability N x 2).
class RNetImpl : public torch::nn::Module {
 public:
  RNetImpl();
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);
  std::vector<std::string> describe(GraphSink& sink, const std::string& input) const;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::PReLU prelu1{nullptr}, prelu2{nullptr}, prelu3{nullptr}, prelu4{nullptr};
  torch::nn::Linear dense4{nullptr}, dense5_1{nullptr}, dense5_2{nullptr};
};
TORCH_MODULE(RNet);

// Output net on 48x48 crops: returns (box regression N x 4, landmarks N x 10 as x1..x5, y1..y5
// relative to the box, probability N x 2).
class ONetImpl : public torch::nn::Module {
 public:
  ONetImpl();
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);
  std::vector<std::string> describe(GraphSink& sink, const std::string& input) const;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, conv4{nullptr};
  torch::nn::PReLU prelu1{nullptr}, prelu2{nullptr}, prelu3{nullptr}, prelu4{nullptr},
      prelu5{nullptr};
  torch::nn::Linear dense5{nullptr}, dense6_1{nullptr}, dense6_2{nullptr}, dense6_3{nullptr};
};
TORCH_MODULE(ONet);

// Loads one of facenet-pytorch's files (pnet.pt, rnet.pt, onet.pt) into `net` strictly and
// switches it to eval mode; ModelLoadError naming the file for a wrong or damaged one.
void load_mtcnn_weights(torch::nn::Module& net, const std::filesystem::path& file);

}  // namespace facemag::nn
