#include "facemag/nn/onednn/onednn_iresnet.hpp"

#include <torch/torch.h>

#include <stdexcept>
#include <utility>

#include "facemag/error.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/runtime.hpp"

#if FACEMAG_HAVE_ONEDNN
#include "onednn_plan.hpp"
#endif

namespace facemag::nn {

#if FACEMAG_HAVE_ONEDNN

namespace {

using onednn::blocked;
using onednn::memory;
using onednn::Slot;

// iResNet for one batch size in activations of `type`: stem, blocks (activations in oneDNN's
// blocked layout, PReLU fused into the convolution before it where oneDNN can, each block's
// residual addition a sum post-op of its second convolution), last activation reordered to the
// float32 channels-last order of FoldedIResNet's fc columns. With `drop_when_kept`, each
// convolution's folded weights are dropped as soon as the network keeps them in a layout that
// serves every later plan (ConvWeights::kept).
void describe(FoldedIResNet& folded, memory::data_type type, bool drop_when_kept,
              onednn::PlanBuilder& plan, std::int64_t batch) {
  using onednn::kA, onednn::kB, onednn::kC, onednn::kInput, onednn::kOutput;
  const auto output_dims = [](const memory::dims& in, const FoldedIResNet::Conv& c) {
    return onednn::conv_output_dims(in, c.weight_sizes, {c.stride, c.stride},
                                    {c.padding, c.padding});
  };
  bool dropped = false;
  const auto drop = [&dropped](FoldedIResNet::Conv& c) {
    dropped = true;
    c.weight = torch::Tensor();
    c.folded_weight = nullptr;  // its closure holds the weights too
  };
  const auto conv = [&](FoldedIResNet::Conv& c, Slot src, const memory::desc& src_md, Slot dst,
                        const onednn::Epilogue& epilogue) {
    const auto dst_dims = output_dims(src_md.dims(), c);
    {
      onednn::ConvWeights weights{c.weight_sizes, c.folded_weight};
      if (drop_when_kept) weights.kept = [&] { drop(c); };
      plan.conv(weights, c.bias, {c.stride, c.stride}, {c.padding, c.padding}, 1, src, src_md, dst,
                blocked(dst_dims, type), epilogue);
    }  // the last reference to dropped weights goes with `weights`
    // facemag's heap is never trimmed on its own (configure_runtime): F(2x2)'s larger layouts
    // would not fit the freed holes, and the peak would stay where it was. Trimming every 32 MB
    // instead measured 33 MB more and no faster (iResNet100).
    if (std::exchange(dropped, false)) release_free_heap();
    return dst_dims;
  };

  const memory::dims input_dims{batch, 3, 112, 112};
  memory::desc input_md(input_dims, memory::data_type::f32, memory::format_tag::nchw);
  Slot input = kInput;
  if (type != memory::data_type::f32) {  // the stem convolution reads its own type
    const auto converted = onednn::input_layout(input_dims, type);
    plan.reorder(kInput, input_md, kB, converted);
    input = kB;
    input_md = converted;
  }
  memory::dims dims = conv(folded.stem, input, input_md, kA, {.prelu = folded.stem_prelu});
  // x lives in one of kA/kB/kC; the other two hold a block's intermediate results.
  Slot x = kA;
  for (auto& b : folded.blocks) {
    const Slot first = x == kA ? kB : kA;
    const Slot second = static_cast<Slot>(kA + kB + kC - x - first);
    plan.affine(b.pre_scale, b.pre_shift, x, first, blocked(dims, type));
    const auto mid_dims = conv(b.conv1, first, blocked(dims, type), second, {.prelu = b.prelu});
    if (b.downsample) {
      conv(*b.downsample, x, blocked(dims, type), first, {});
      dims = conv(b.conv2, second, blocked(mid_dims, type), first, {.accumulate = true});
      x = first;
    } else {
      dims = conv(b.conv2, second, blocked(mid_dims, type), x, {.accumulate = true});
    }
  }
  plan.reorder(x, blocked(dims, type), kOutput,
               memory::desc(dims, memory::data_type::f32, memory::format_tag::nhwc));
}

}  // namespace

struct OneDnnIResNet::Impl {
  // Folded in the activations' type. Each convolution's weights on demand, from `source`, where
  // it is kept: oneDNN keeps them in its layouts, and no third copy is kept (iResNet100: 260 MB).
  // Otherwise folded at once and the network let go of before the first plan (the batch-1 one,
  // built here), each convolution's folded copy dropped as soon as its kept layout is made: the
  // load's peak is then the network and its folded copy, no longer the network's and F(2x2)'s.
  Impl(std::shared_ptr<const IResNetImpl> net, memory::data_type type)
      : let_go(onednn::first_plan_serves_every_batch(type)),
        source(std::move(net)),
        folded(*source, type == memory::data_type::bf16 ? torch::kBFloat16 : torch::kFloat32,
               let_go ? FoldedIResNet::ConvWeights::kKept : FoldedIResNet::ConvWeights::kOnDemand),
        network([this, type](onednn::PlanBuilder& plan, std::int64_t batch) {
          describe(folded, type, let_go, plan, batch);
        }) {
    if (!let_go) return;
    source.reset();  // freed here where the caller handed over its last reference
    network.prepare(1);
  }

  const bool let_go;  // of the network and, one by one, of the folded weights
  std::shared_ptr<const IResNetImpl> source;  // never mutated; null once let go of
  FoldedIResNet folded;  // mutated only while a plan is built, under the network's lock
  onednn::Network network;
};

bool OneDnnIResNet::available(torch::ScalarType dtype) { return onednn::runs(dtype); }

OneDnnIResNet::OneDnnIResNet(std::shared_ptr<const IResNetImpl> net, torch::ScalarType dtype) {
  if (!available(dtype)) {
    throw InvalidInput(std::string("iResNet on oneDNN in ") + c10::toString(dtype) +
                       " is not available on this CPU");
  }
  impl_ = std::make_unique<Impl>(
      std::move(net), dtype == torch::kBFloat16 ? memory::data_type::bf16 : memory::data_type::f32);
}

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

bool OneDnnIResNet::available(torch::ScalarType) { return false; }

OneDnnIResNet::OneDnnIResNet(std::shared_ptr<const IResNetImpl>, torch::ScalarType) {
  throw std::logic_error("facemag was built without oneDNN (libdnnl-dev): no OneDnnIResNet");
}

torch::Tensor OneDnnIResNet::forward(const torch::Tensor&) const { return {}; }

#endif

OneDnnIResNet::~OneDnnIResNet() = default;

}  // namespace facemag::nn
