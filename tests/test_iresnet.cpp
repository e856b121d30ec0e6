// iResNet against the outputs of MagFace's own models/iresnet.py (../shared/golden/iresnet).
#include <gtest/gtest.h>

#include <torch/torch.h>
#include <algorithm>
#include <numeric>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <iostream>
#include <thread>

#include "bf16_error_model.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/nn/onednn/blocked_training.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "facemag/nn/onednn/onednn_iresnet.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

TEST(FormulaWeightsGolden, MatchFormulaCheck) {
  const auto path = test::golden_dir() / "formula_check.json";
  FACEMAG_REQUIRE_FILE(path);
  const auto golden = test::read_json(path);
  for (const auto& e : golden["entries"]) {
    const std::string name = e["name"];
    const std::uint64_t index = e["index"];
    if (!e.contains("u")) continue;  // num_batches_tracked: constant 0
    EXPECT_EQ(nn::formula_uniform(name, index), e["u"].get<double>())
        << name << "[" << index << "]";
  }
}

TEST(FormulaWeightsGolden, IResNet100TensorsHaveTheCheckedValues) {
  const auto path = test::golden_dir() / "formula_check.json";
  FACEMAG_REQUIRE_FILE(path);
  nn::IResNet net(nn::IResNetDepth::k100);
  nn::fill_formula_weights(*net);
  std::map<std::string, torch::Tensor> sd;
  for (const auto& [name, t] : nn::state_dict(*net)) sd[name] = t;
  int checked = 0;
  const auto golden = test::read_json(path);
  for (const auto& e : golden["entries"]) {
    if (e["model"].get<std::string>().rfind("iresnet100", 0) != 0) continue;
    const torch::Tensor t = sd.at(e["name"]).flatten();
    const std::int64_t index = e["index"];
    if (e["kind"] == "bn_num_batches_tracked") {
      EXPECT_EQ(t[index].item<std::int64_t>(), 0);
    } else {
      const float v = t[index].item<float>();
      std::uint32_t bits;
      std::memcpy(&bits, &v, 4);
      EXPECT_EQ(bits, std::stoul(e["value_bits"].get<std::string>(), nullptr, 16)) << e["name"];
    }
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

struct ArchCase {
  const char* arch;
  nn::IResNetDepth depth;
};

class IResNetGolden : public ::testing::TestWithParam<ArchCase> {};

TEST_P(IResNetGolden, StateDictMatchesReference) {
  const auto json_path = test::golden_dir() / "iresnet" / (std::string(GetParam().arch) + ".json");
  FACEMAG_REQUIRE_FILE(json_path);
  const auto golden = test::read_json(json_path);
  nn::IResNet net(GetParam().depth);
  const auto sd = nn::state_dict(*net);
  EXPECT_EQ(sd.size(), golden["state_dict_entries"].get<std::size_t>());
  std::int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  EXPECT_EQ(params, golden["parameters"].get<std::int64_t>());
  EXPECT_EQ(sd.front().first, "conv1.weight");
  EXPECT_EQ(sd.back().first, "features.num_batches_tracked");
}

// Every precision against the MagFace goldens: reference and fp32 within the goldens' float32
// tolerance. bf16 within the bounds of its error model (bf16_error_model.hpp): each embedding's
// relative error at most kBf16ErrorFactor times that of the CPU-independent emulation, the norm
// and cosine bounds that follow from it, the magnitude order kept wherever the bounds separate
// two faces, and the speed issue's cosine >= 0.999.
TEST_P(IResNetGolden, EmbeddingsMatchMagFace) {
  const std::string arch = GetParam().arch;
  const auto dir = test::golden_dir() / "iresnet";
  FACEMAG_REQUIRE_FILE(dir / (arch + ".npy"));
  const auto golden = test::read_json(dir / (arch + ".json"));
  const torch::Tensor expected = io::read_npy(dir / (arch + ".npy")).to(torch::kFloat64);

  std::vector<cv::Mat> faces;
  for (const auto& input : golden["inputs"]) {
    const auto path = test::golden_dir() / input.get<std::string>();
    FACEMAG_REQUIRE_FILE(path);
    faces.push_back(cv::imread(path.string(), cv::IMREAD_COLOR));  // BGR, as MagFace reads
  }
  std::vector<double> ref_norms;
  for (const auto& n : golden["norms"]) ref_norms.push_back(n.get<double>());
  for (const Precision precision :
       {Precision::kReference, Precision::kFloat32, Precision::kBFloat16}) {
    if (precision == Precision::kBFloat16 && nn::OneDnnGraph::available(torch::kFloat32) &&
        !nn::OneDnnGraph::available(torch::kBFloat16)) {
      // A CPU without AVX-512 (CliDispatch.APrecisionTheCpuCannotRunIsRefusedByName).
      EXPECT_THROW(Embedder::with_formula_weights(builtin_manifest(arch), {precision}),
                   InvalidInput);
      std::cout << "[ parity ] " << arch << " bf16: refused, this CPU lacks AVX-512\n";
      continue;
    }
    const Embedder embedder = Embedder::with_formula_weights(builtin_manifest(arch), {precision});
    ASSERT_EQ(embedder.precision(), precision);
    const auto embeddings = embedder.embed(faces);
    ASSERT_EQ(embeddings.size(), faces.size());

    double min_cos = 1, max_rel_norm = 0;
    std::vector<float> rows;
    for (std::size_t i = 0; i < embeddings.size(); ++i) {
      const auto ours = torch::tensor(embeddings[i].raw, torch::kFloat32).to(torch::kFloat64);
      const auto ref = expected[static_cast<std::int64_t>(i)];
      const double cos = (ours.dot(ref) / (ours.norm() * ref.norm())).item<double>();
      min_cos = std::min(min_cos, cos);
      max_rel_norm =
          std::max(max_rel_norm, std::abs(embeddings[i].magnitude - ref_norms[i]) / ref_norms[i]);
      rows.insert(rows.end(), embeddings[i].raw.begin(), embeddings[i].raw.end());
    }
    std::cout << "[ parity ] " << arch << " " << precision_name(precision) << ": 1 - min cosine "
              << std::setprecision(3) << 1 - min_cos << ", max relative norm error "
              << max_rel_norm;
    if (precision != Precision::kBFloat16) {
      std::cout << "\n";
      EXPECT_GE(min_cos, 0.99999);
      EXPECT_LE(max_rel_norm, 1e-4);
      continue;
    }
    nn::IResNet net(GetParam().depth);
    nn::fill_formula_weights(*net);
    net->eval();
    const auto emulated = test::emulated_bf16_iresnet(*net, embedder.preprocess(faces));
    const auto ours = torch::from_blob(rows.data(), expected.sizes(), torch::kFloat32);
    const auto check = test::check_bf16(ours, emulated, expected);
    for (const auto& v : check.violations) ADD_FAILURE() << v;
    std::cout << ", relative error " << *std::max_element(check.errors.begin(), check.errors.end())
              << " (emulated "
              << *std::max_element(check.model_errors.begin(), check.model_errors.end())
              << ", worst ratio " << check.worst_ratio << "), magnitude order kept in "
              << check.order.checked - check.order.swapped << " of " << check.order.checked
              << " separable pairs\n";
    EXPECT_GE(min_cos, 0.999);
    EXPECT_EQ(check.order.swapped, 0);
    EXPECT_GT(check.order.checked, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, IResNetGolden,
                         ::testing::Values(ArchCase{"iresnet18", nn::IResNetDepth::k18},
                                           ArchCase{"iresnet34", nn::IResNetDepth::k34},
                                           ArchCase{"iresnet50", nn::IResNetDepth::k50},
                                           ArchCase{"iresnet100", nn::IResNetDepth::k100}),
                         [](const auto& info) { return std::string(info.param.arch); });

TEST(IResNet, StrictLoadingNamesTheOffendingTensor) {
  nn::IResNet net(nn::IResNetDepth::k18);
  io::NamedTensors sd = nn::state_dict(*net);
  {
    auto missing = sd;
    missing.erase(missing.begin() + 3);
    try {
      nn::load_state_dict_strict(*net, missing, "m.pth");
      FAIL();
    } catch (const ModelLoadError& e) {
      EXPECT_NE(std::string(e.what()).find("missing 1 tensor(s) 'bn1.running_mean'"),
                std::string::npos)
          << e.what();
    }
  }
  {
    auto shaped = sd;
    shaped[0].second = torch::zeros({64, 3, 5, 5});
    try {
      nn::load_state_dict_strict(*net, shaped, "m.pth");
      FAIL();
    } catch (const ModelLoadError& e) {
      EXPECT_NE(
          std::string(e.what()).find(
              "'conv1.weight' has shape [64, 3, 5, 5], the architecture expects [64, 3, 3, 3]"),
          std::string::npos)
          << e.what();
    }
  }
  {
    auto extra = sd;
    extra.emplace_back("layer5.0.conv1.weight", torch::zeros({1}));
    EXPECT_THROW(nn::load_state_dict_strict(*net, extra, "m.pth"), ModelLoadError);
  }
}

using test::relative_difference;

// Folding a few output channels at a time (which keeps the heap small) gives the very values of
// folding the whole tensor in double and rounding it once, in float32 and bfloat16, also where
// the channel count is not a multiple of the chunk.
TEST(IResNet, ScalingOutputChannelsInChunksRoundsLikeTheWholeTensor) {
  const torch::Generator generator(at::detail::createCPUGenerator(3));
  const auto weight = torch::randn({70, 16, 3, 3}, generator);
  const auto scale = torch::rand({70}, generator).to(torch::kFloat64) * 3.0 + 0.1;
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto folded = nn::scale_output_channels(weight, scale, dtype);
    const auto whole = (weight.to(torch::kFloat64) * scale.view({-1, 1, 1, 1})).to(dtype);
    EXPECT_EQ(folded.scalar_type(), dtype);
    EXPECT_TRUE(folded.is_contiguous(torch::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(torch::equal(folded, whole)) << c10::toString(dtype);
  }
}

// Folding on demand (what OneDnnIResNet uses, so that it keeps no folded copy of the weights)
// gives the very weights kept folding gives, and keeps none.
TEST(IResNet, FoldingOnDemandGivesTheKeptWeights) {
  nn::IResNet net(nn::IResNetDepth::k18);
  nn::fill_formula_weights(*net);
  net->eval();
  using Kept = nn::FoldedIResNet::ConvWeights;
  const nn::FoldedIResNet kept(*net, torch::kFloat32, Kept::kKept);
  const nn::FoldedIResNet on_demand(*net, torch::kFloat32, Kept::kOnDemand);
  const auto expect_same = [](const nn::FoldedIResNet::Conv& lazy,
                              const nn::FoldedIResNet::Conv& folded, const std::string& what) {
    EXPECT_FALSE(lazy.weight.defined()) << what;
    EXPECT_EQ(lazy.weight_sizes, folded.weight.sizes().vec()) << what;
    EXPECT_TRUE(torch::equal(lazy.folded_weight(), folded.weight)) << what;
    EXPECT_TRUE(torch::equal(folded.folded_weight(), folded.weight)) << what;
    EXPECT_TRUE(torch::equal(lazy.bias, folded.bias)) << what;
  };
  expect_same(on_demand.stem, kept.stem, "stem");
  ASSERT_EQ(on_demand.blocks.size(), kept.blocks.size());
  for (std::size_t i = 0; i < kept.blocks.size(); ++i) {
    const auto& lazy = on_demand.blocks[i];
    const auto& folded = kept.blocks[i];
    expect_same(lazy.conv1, folded.conv1, "block " + std::to_string(i) + " conv1");
    expect_same(lazy.conv2, folded.conv2, "block " + std::to_string(i) + " conv2");
    ASSERT_EQ(lazy.downsample.has_value(), folded.downsample.has_value());
    if (folded.downsample) expect_same(*lazy.downsample, *folded.downsample, "downsample");
  }
}

// The two float32 fast paths against the network as PyTorch runs it, and the oneDNN one under
// concurrent calls with more batch sizes than it keeps compiled (plans are evicted and rebuilt).
TEST(IResNet, FastFloat32PathsAgreeWithTheReferenceForEveryBatchSize) {
  nn::IResNet net(nn::IResNetDepth::k18);
  nn::fill_formula_weights(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto input =
      torch::rand({5, 3, 112, 112}, torch::Generator(at::detail::createCPUGenerator(7)));
  const auto expected = net->forward(input);
  const nn::FusedIResNet fused(*net, torch::kFloat32);
  EXPECT_LT(relative_difference(fused.forward(input), expected), 1e-5);
  if (!nn::OneDnnIResNet::available()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev)";
  const nn::OneDnnIResNet winograd(net.ptr());
  const std::vector<std::int64_t> batches{1, 2, 5, 3, 4, 1, 5};
  std::vector<double> worst(2, 0.0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < batches.size() + t; ++i) {
        const auto n = batches[i % batches.size()];
        const auto out = winograd.forward(input.slice(0, 0, n));
        worst[t] = std::max(worst[t], relative_difference(out, expected.slice(0, 0, n)));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LT(std::max(worst[0], worst[1]), 1e-5);
  EXPECT_THROW(winograd.forward(torch::zeros({1, 3, 96, 96})), InvalidInput);
}

// Where oneDNN's own Winograd layouts are not in play (float32 below AVX-512), the oneDNN
// network folds its weights, lets go of the network and builds its batch-1 plan when made: the
// network is freed with its owner's last reference (iResNet100: 260 MB), and later batch sizes
// still agree with it (their plans get the weights from the first one's; asking for the dropped
// folded copies would throw).
TEST(IResNet, OneDnnLetsGoOfTheNetworkWhereItsKeptWeightsServeEveryBatchSize) {
  if (!nn::OneDnnIResNet::available()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev)";
  nn::IResNet net(nn::IResNetDepth::k18), reference(nn::IResNetDepth::k18);
  for (auto* m : {&net, &reference}) {
    nn::fill_formula_weights(**m);
    (*m)->eval();
  }
  const nn::OneDnnIResNet onednn(net.ptr());
  const bool onednn_winograd =
      nn::blocked::stride_one_algorithm(128, 128) == nn::blocked::StrideOneAlgorithm::kWinograd4x4;
  const std::weak_ptr<nn::IResNetImpl> watched = net.ptr();
  net = nullptr;
  EXPECT_EQ(watched.expired(), !onednn_winograd);
  torch::NoGradGuard no_grad;
  const auto input =
      torch::rand({7, 3, 112, 112}, torch::Generator(at::detail::createCPUGenerator(11)));
  const auto expected = reference->forward(input);
  for (const std::int64_t n : {7, 1, 2}) {  // 7 = 4 + 2 + 1: three plans
    EXPECT_LT(relative_difference(onednn.forward(input.slice(0, 0, n)), expected.slice(0, 0, n)),
              1e-5)
        << "batch " << n;
  }
}

// Where facemag's own Winograd runs (AVX2: F(4x4) and F(2x2) for 9 of iResNet-18's 21
// convolutions), the oneDNN network's float32 rounding against float64 stays within a small
// multiple of LibTorch float32's, per embedding. Measured on a Zen 3 over 2 x 6 faces with F(2x2)
// alone: 1.43-1.70x; the same network with F(2x2) switched off (oneDNN's direct kernels only)
// 1.99-2.32x, the cost of BatchNorm folded into the weights, which F(2x2)'s transforms (they only
// add and subtract) partly make up for. With F(4x4) on every such layer (an Intel Xeon held to
// AVX2): 1.65-1.95x. Hence at most 3x, F(2x2)'s per-layer bound in test_blocked_training.cpp.
// AVX-512 runs oneDNN's F(4x4) instead, held by the test above and the goldens.
TEST(IResNet, OneDnnFloat32WithFacemagsWinogradRoundsLikeLibTorch) {
  if (!nn::OneDnnIResNet::available()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev)";
  if (nn::blocked::stride_one_algorithm(128, 128) != nn::blocked::StrideOneAlgorithm::kWinograd2x2)
    GTEST_SKIP() << "facemag's Winograd does not run on this CPU (AVX-512: oneDNN's F(4x4))";
  nn::IResNet net(nn::IResNetDepth::k18), exact(nn::IResNetDepth::k18);
  for (auto* m : {&net, &exact}) {
    nn::fill_formula_weights(**m);
    (*m)->eval();
  }
  exact->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  const nn::OneDnnIResNet onednn(net.ptr());
  for (const std::uint64_t seed : {3, 5}) {
    const auto input =
        torch::rand({6, 3, 112, 112}, torch::Generator(at::detail::createCPUGenerator(seed)));
    const auto reference = exact->forward(input.to(torch::kFloat64));
    const auto ours = test::relative_errors(onednn.forward(input), reference);
    const auto libtorch = test::relative_errors(net->forward(input), reference);
    for (std::size_t row = 0; row < ours.size(); ++row) {
      std::cout << "[ rounding ] seed " << seed << " face " << row << ": " << ours[row]
                << " against LibTorch's " << libtorch[row] << " (" << ours[row] / libtorch[row]
                << "x)\n";
      EXPECT_LE(ours[row], 3.0 * libtorch[row]) << "seed " << seed << " face " << row;
    }
  }
}

// The bfloat16 oneDNN network against the float32 reference within its error model
// (bf16_error_model.hpp), for batch sizes it runs as one plan and as several, from two threads.
TEST(IResNet, OneDnnBfloat16StaysWithinItsErrorModelForEveryBatchSize) {
  if (!nn::OneDnnIResNet::available(torch::kBFloat16))
    GTEST_SKIP() << "no bfloat16 oneDNN network on this build or CPU (needs AVX-512)";
  nn::IResNet net(nn::IResNetDepth::k18);
  nn::fill_formula_weights(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto input =
      torch::rand({7, 3, 112, 112}, torch::Generator(at::detail::createCPUGenerator(11)));
  const auto expected = net->forward(input);
  const auto model_errors =
      test::relative_errors(test::emulated_bf16_iresnet(*net, input), expected);
  const nn::OneDnnIResNet bf16(net.ptr(), torch::kBFloat16);
  const std::vector<std::int64_t> batches{1, 7, 2, 5, 3};
  std::vector<std::vector<std::string>> failures(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < batches.size() + t; ++i) {
        const auto n = batches[i % batches.size()];
        const auto errors =
            test::relative_errors(bf16.forward(input.slice(0, 0, n)), expected.slice(0, 0, n));
        for (std::int64_t row = 0; row < n; ++row) {
          const auto bound = test::kBf16ErrorFactor * model_errors[row];
          if (!(errors[row] <= bound)) {
            failures[t].push_back("batch " + std::to_string(n) + " row " + std::to_string(row) +
                                  ": relative error " + std::to_string(errors[row]) + " > bound " +
                                  std::to_string(bound));
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& list : failures) {
    for (const auto& f : list) ADD_FAILURE() << f;
  }
  EXPECT_THROW(bf16.forward(torch::zeros({1, 3, 96, 96})), InvalidInput);
}

TEST(Embedder, RejectsFacesOfTheWrongSize) {
  const Embedder e = Embedder::with_formula_weights(builtin_manifest("iresnet18"));
  EXPECT_THROW(e.embed({cv::Mat(100, 100, CV_8UC3)}), InvalidInput);
  EXPECT_THROW(builtin_manifest("resnet9"), InvalidInput);
}

// The fused fp32 networks let go of the loaded one where they keep their own weights (iResNet
// below AVX-512; every network OneDnnGraph records); the Embedder then builds it again, from the
// formula or by reading the checkpoint again, for the two uses of the network itself.
TEST(Embedder, Float32NetworksGiveTheNetworksStateDictAndCalibrationWithoutKeepingIt) {
  for (const std::string architecture : {"iresnet18", "mobilefacenet", "inception_resnet_v1"}) {
    SCOPED_TRACE(architecture);
    const auto manifest = builtin_manifest(architecture);
    const auto expect_same_model = [&](const Embedder& fast, const Embedder& reference) {
      const auto ours = fast.state_dict(), theirs = reference.state_dict();
      ASSERT_EQ(ours.size(), theirs.size());
      for (std::size_t i = 0; i < ours.size(); ++i) {
        EXPECT_EQ(ours[i].first, theirs[i].first);
        EXPECT_TRUE(torch::equal(ours[i].second, theirs[i].second)) << ours[i].first;
      }
      std::vector<cv::Mat> faces(2);
      for (auto& face : faces) {
        face = cv::Mat(manifest.input_height, manifest.input_width, CV_8UC3);
        cv::randu(face, 0, 256);
      }
      EXPECT_EQ(fast.calibrate_int8(faces).values, reference.calibrate_int8(faces).values);
    };
    const auto formula = Embedder::with_formula_weights(manifest, {Precision::kReference});
    expect_same_model(Embedder::with_formula_weights(manifest, {Precision::kFloat32}), formula);

    const test::TempDir tmp;
    const auto file = tmp.path() / (architecture + ".pth");
    io::save_checkpoint(file, *io::make_state_dict_value(formula.state_dict()));
    const auto loaded = Embedder::load(manifest, file, {Precision::kFloat32});
    expect_same_model(loaded, Embedder::load(manifest, file, {Precision::kReference}));
    test::write_file(file, "not a checkpoint any more");
    // Where oneDNN has Winograd F(4x4) kernels (AVX-512) a later batch size may want their
    // layouts, made from plain weights only: the iResNet then keeps its loaded network
    // (first_plan_serves_every_batch) and never reads the file again.
    const bool keeps_network =
        architecture == "iresnet18" && nn::blocked::stride_one_algorithm(128, 128) ==
                                           nn::blocked::StrideOneAlgorithm::kWinograd4x4;
    if (keeps_network) {
      const auto kept = loaded.state_dict(), original = formula.state_dict();
      ASSERT_EQ(kept.size(), original.size());
      for (std::size_t i = 0; i < kept.size(); ++i)
        EXPECT_TRUE(torch::equal(kept[i].second, original[i].second)) << kept[i].first;
      continue;
    }
    try {
      loaded.state_dict();
      ADD_FAILURE() << "a changed checkpoint was read again";
    } catch (const ModelLoadError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
    }
  }
}

TEST(Embedder, MagnitudeIsTheNormOfTheUntouchedRawVector) {
  Embedding e{{3.0f, 4.0f}, 5.0f};
  const auto n = e.normalized();
  EXPECT_FLOAT_EQ(n[0], 0.6f);
  EXPECT_FLOAT_EQ(e.raw[0], 3.0f);
}

}  // namespace
}  // namespace facemag
