#include "facemag/nn/onednn_iresnet.hpp"

#include <torch/torch.h>

#include <stdexcept>

#include "facemag/error.hpp"
#include "facemag/nn/iresnet.hpp"

#if FACEMAG_HAVE_ONEDNN
#include "onednn_plan.hpp"
#endif

namespace facemag::nn {

#if FACEMAG_HAVE_ONEDNN

namespace {

using onednn::blocked;
using onednn::memory;
using onednn::Slot;

// iResNet for one batch size: stem, blocks (activations in oneDNN's blocked layout, each block's
// residual addition a sum post-op of its second convolution), last activation reordered to the
// channels-last order of FoldedIResNet's fc columns.
void describe(const FoldedIResNet& folded, onednn::PlanBuilder& plan, std::int64_t batch) {
  using onednn::kA, onednn::kB, onednn::kC, onednn::kInput, onednn::kOutput;
  const auto output_dims = [](const memory::dims& in, const FoldedIResNet::Conv& c) {
    return onednn::conv_output_dims(in, c.weight, c.stride, {c.padding, c.padding});
  };
  const auto conv = [&](const FoldedIResNet::Conv& c, Slot src, const memory::dims& src_dims,
                        Slot dst, bool accumulate) {
    dnnl::post_ops ops;
    if (accumulate) ops.append_sum(1.0f);
    const auto dst_dims = output_dims(src_dims, c);
    plan.conv(c.weight, c.bias, c.stride, {c.padding, c.padding}, src, blocked(src_dims), dst,
              blocked(dst_dims), ops);
    return dst_dims;
  };

  const memory::dims input_dims{batch, 3, 112, 112};
  memory::dims dims = output_dims(input_dims, folded.stem);
  plan.conv(folded.stem.weight, folded.stem.bias, folded.stem.stride,
            {folded.stem.padding, folded.stem.padding}, kInput,
            memory::desc(input_dims, memory::data_type::f32, memory::format_tag::nchw), kA,
            blocked(dims));
  plan.prelu(folded.stem_prelu, kA, blocked(dims));
  // x lives in one of kA/kB/kC; the other two hold a block's intermediate results.
  Slot x = kA;
  for (const auto& b : folded.blocks) {
    const Slot first = x == kA ? kB : kA;
    const Slot second = static_cast<Slot>(kA + kB + kC - x - first);
    plan.affine(b.pre_scale, b.pre_shift, x, first, blocked(dims));
    const auto mid_dims = conv(b.conv1, first, dims, second, false);
    plan.prelu(b.prelu, second, blocked(mid_dims));
    if (b.downsample) {
      conv(*b.downsample, x, dims, first, false);
      dims = conv(b.conv2, second, mid_dims, first, true);
      x = first;
    } else {
      dims = conv(b.conv2, second, mid_dims, x, true);
    }
  }
  plan.reorder(x, blocked(dims), kOutput,
               memory::desc(dims, memory::data_type::f32, memory::format_tag::nhwc));
}

}  // namespace

struct OneDnnIResNet::Impl {
  explicit Impl(const IResNetImpl& net)
      : folded(net, torch::kFloat32),
        network([this](onednn::PlanBuilder& plan, std::int64_t batch) {
          describe(folded, plan, batch);
        }) {}

  FoldedIResNet folded;
  onednn::Network network;
};

bool OneDnnIResNet::available() { return true; }

OneDnnIResNet::OneDnnIResNet(const IResNetImpl& net) : impl_(std::make_unique<Impl>(net)) {}

torch::Tensor OneDnnIResNet::forward(const torch::Tensor& x) const {
  if (x.dim() != 4 || x.size(1) != 3 || x.size(2) != 112 || x.size(3) != 112) {
    throw InvalidInput("iResNet input must be N x 3 x 112 x 112, got " +
                       std::string(c10::str(x.sizes())));
  }
  torch::NoGradGuard no_grad;
  const auto batch = x.size(0);
  const auto input = x.to(torch::kFloat32).contiguous();
  const auto& fc_weight = impl_->folded.fc_weight;
  auto output = torch::empty({batch, fc_weight.size(1)});
  impl_->network.run(batch, input.data_ptr<float>(), output.data_ptr<float>());
  return torch::addmm(impl_->folded.fc_bias, output, fc_weight.t());
}

#else  // no oneDNN in this build

struct OneDnnIResNet::Impl {};

bool OneDnnIResNet::available() { return false; }

OneDnnIResNet::OneDnnIResNet(const IResNetImpl&) {
  throw std::logic_error("facemag was built without oneDNN (libdnnl-dev): no OneDnnIResNet");
}

torch::Tensor OneDnnIResNet::forward(const torch::Tensor&) const { return {}; }

#endif

OneDnnIResNet::~OneDnnIResNet() = default;

}  // namespace facemag::nn
