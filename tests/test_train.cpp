// Training: the margin losses against MagFace's own outputs (golden/magface_loss,
// golden/train/mag_cosface), SGD steps of iresnet18 + MagLinear against run/trainer.py
// (golden/train), the split classifier on 2 and 3 processes against 1, and the training data.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fstream>
#include <future>

#include "facemag/error.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/model/network.hpp"
#include "facemag/nn/module_utils.hpp"
#include "facemag/train/collective.hpp"
#include "facemag/train/margin_loss.hpp"
#include "facemag/train/trainer.hpp"
#include "facemag/train/training_data.hpp"
#include "test_support.hpp"

namespace facemag::train {
namespace {

using test::golden_dir;
using test::read_json;

// max |a - b| / max |b|: the goldens' relative measure for matrices.
double max_relative(const torch::Tensor& a, const torch::Tensor& b) {
  const auto a64 = a.detach().to(torch::kFloat64), b64 = b.detach().to(torch::kFloat64);
  return ((a64 - b64).abs().max() / b64.abs().max()).item<double>();
}

double relative(double a, double b) { return std::abs(a - b) / std::abs(b); }

MarginLossOptions options_from(const nlohmann::json& p, MarginKind kind) {
  MarginLossOptions o;
  o.kind = kind;
  o.l_a = p["l_a"];
  o.u_a = p["u_a"];
  o.l_margin = p["l_margin"];
  o.u_margin = p["u_margin"];
  o.lambda_g = p["lambda_g"];
  o.scale = p["scale"];
  if (p.contains("easy_margin")) o.easy_margin = p["easy_margin"];
  return o;
}

// Runs MagLinear + MagLoss on golden/magface_loss's inputs and checks every output of `expected`.
void check_loss(const nlohmann::json& expected, const std::filesystem::path& files,
                const MarginLossOptions& options, const nlohmann::json& tolerance) {
  const auto dir = golden_dir() / "magface_loss";
  auto x = io::read_npy(dir / "x.npy").requires_grad_(true);
  auto w = io::read_npy(dir / "W.npy").requires_grad_(true);
  const auto labels = io::read_npy(dir / "labels.npy");
  auto single = single_process_collective();
  const auto logits = margin_logits(x, w, options);
  const auto ce = sharded_cross_entropy(logits, labels, 0, *single);
  const auto loss_g = magnitude_regularizer(logits.x_norm, options);
  (ce.objective + options.lambda_g * loss_g).backward();

  const double loss = ce.loss + options.lambda_g * loss_g.item<double>();
  EXPECT_LE(relative(ce.loss, expected["loss_id"]), tolerance["loss_id"].get<double>());
  EXPECT_LE(relative(loss_g.item<double>(), expected["loss_g"]), tolerance["loss_g"].get<double>());
  EXPECT_LE(relative(loss, expected["loss"]), tolerance["loss"].get<double>());
  EXPECT_LE(max_relative(logits.cos_theta, io::read_npy(files / "cos_theta.npy")),
            tolerance["logits"].get<double>());
  EXPECT_LE(max_relative(logits.cos_theta_m, io::read_npy(files / "cos_theta_m.npy")),
            tolerance["logits"].get<double>());
  EXPECT_LE(max_relative(logits.x_norm, io::read_npy(files / "x_norm.npy")), 1e-5);
  const auto margins = expected["margin"].get<std::vector<double>>();
  for (std::size_t i = 0; i < margins.size(); ++i)
    EXPECT_NEAR(logits.margin[static_cast<std::int64_t>(i)].item<double>(), margins[i], 1e-6);
  EXPECT_LE(max_relative(x.grad(), io::read_npy(files / "grad_x.npy")),
            tolerance["grad_x"].get<double>());
  EXPECT_LE(max_relative(w.grad(), io::read_npy(files / "grad_W.npy")),
            tolerance["grad_W"].get<double>());
}

TEST(TrainLossGolden, MagFaceMatchesMagLinearAndMagLoss) {
  const auto dir = golden_dir() / "magface_loss";
  FACEMAG_REQUIRE_FILE(dir / "magface_loss.json");
  const auto golden = read_json(dir / "magface_loss.json");
  const nlohmann::json tolerance = {{"loss", 1e-5},   {"loss_id", 1e-5}, {"loss_g", 1e-5},
                                    {"logits", 1e-5}, {"grad_x", 1e-4},  {"grad_W", 1e-4}};
  for (const auto& [variant, expected] : golden["variants"].items()) {
    SCOPED_TRACE(variant);
    auto options = options_from(golden["params"], MarginKind::kAngular);
    options.easy_margin = expected["easy_margin"];
    check_loss(expected, dir / variant, options, tolerance);
  }
}

TEST(TrainLossGolden, MagCosFaceMatchesTheCosineBranch) {
  const auto dir = golden_dir() / "train" / "mag_cosface";
  FACEMAG_REQUIRE_FILE(dir / "mag_cosface.json");
  const auto golden = read_json(dir / "mag_cosface.json");
  check_loss(golden, dir, options_from(golden["params"], MarginKind::kCosine), golden["tolerance"]);
  // The preset is upstream's run_dist_cos.sh.
  const auto preset = margin_loss_preset("mag-cosface");
  EXPECT_EQ(preset.lambda_g, golden["params"]["lambda_g"].get<double>());
  EXPECT_EQ(preset.l_margin, golden["params"]["l_margin"].get<double>());
}

TEST(TrainLoss, FixedMarginsAndBadOptions) {
  const auto arc = margin_loss_preset("arcface");
  EXPECT_EQ(arc.l_margin, arc.u_margin);
  EXPECT_EQ(arc.lambda_g, 0.0);
  // A fixed margin does not depend on the magnitude: CosFace subtracts exactly m.
  const auto cos = margin_loss_preset("cosface");
  auto x = torch::randn({4, 16}) * torch::tensor({1.0f, 5.0f, 50.0f, 500.0f}).view({-1, 1});
  const auto w = torch::randn({16, 3});
  const auto logits = margin_logits(x, w, cos);
  EXPECT_LT(max_relative(logits.cos_theta - logits.cos_theta_m,
                         torch::full({4, 3}, cos.scale * cos.u_margin)),
            1e-6);
  EXPECT_THROW(margin_loss_preset("softmax"), InvalidInput);
  auto bad = margin_loss_preset("magface");
  bad.u_a = bad.l_a;
  EXPECT_THROW(validate(bad), InvalidInput);
}

TEST(TrainPRelu, HandWrittenBackwardMatchesLibTorch) {
  torch::manual_seed(5);
  for (const auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
    for (const bool four_d : {true, false}) {
      auto x = (four_d ? torch::randn({3, 5, 7, 6}).contiguous(format) : torch::randn({9, 5}))
                   .requires_grad_(true);
      auto w = (torch::rand({5}) * 0.5).requires_grad_(true);
      const auto upstream = four_d ? torch::randn({3, 5, 7, 6}) : torch::randn({9, 5});
      auto y = nn::prelu(x, w);
      EXPECT_TRUE(torch::allclose(y, torch::prelu(x, w)));
      (y * upstream).sum().backward();
      const auto gx = x.grad().clone(), gw = w.grad().clone();
      x.mutable_grad() = torch::Tensor();
      w.mutable_grad() = torch::Tensor();
      (torch::prelu(x, w) * upstream).sum().backward();
      EXPECT_LT(max_relative(gx, x.grad()), 1e-6);
      EXPECT_LT(max_relative(gw, w.grad()), 1e-5);
    }
  }
}

// ---- SGD steps of SoftmaxBuilder (iresnet18 + MagLinear) against run/trainer.py ----

std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// The 16 probe positions of the golden README.
std::vector<std::int64_t> probe_indices(const std::string& key, std::int64_t numel) {
  std::vector<std::int64_t> out;
  for (std::uint64_t j = 0; j < 16; ++j) {
    const std::uint64_t x = fnv1a64(key) + (j + 1) * 0x9e3779b97f4a7c15ull;
    out.push_back(static_cast<std::int64_t>(mix(x) % static_cast<std::uint64_t>(numel)));
  }
  return out;
}

ModelManifest iresnet18() { return builtin_manifest("iresnet18"); }

// The golden's starting point: formula weights for the backbone, 0.05 u("fc.weight", i) for
// MagLinear's 512 x classes weight.
io::NamedTensors golden_initial_weights(const TrainableNetwork& network, std::int64_t classes) {
  nn::fill_formula_weights(*network.module);
  io::NamedTensors out;
  for (const auto& [name, t] : nn::state_dict(*network.module))
    out.emplace_back("features." + name, t);
  auto head = torch::empty({512, classes}, torch::kFloat64);
  auto* data = head.data_ptr<double>();
  for (std::int64_t i = 0; i < head.numel(); ++i)
    data[i] = 0.05 * nn::formula_uniform("fc.weight", static_cast<std::uint64_t>(i));
  out.emplace_back("fc.weight", head.to(torch::kFloat32));
  return out;
}

struct GoldenBatch {
  torch::Tensor images, labels;
};

// Reads a batch as MagFace's dataloader does (cv2.imread, cv2.flip, ToTensor's x / 255).
GoldenBatch golden_batch(const nlohmann::json& train, std::size_t step) {
  std::vector<std::string> lines;
  std::ifstream list(golden_dir() / "train" / "train.list");
  for (std::string line; std::getline(list, line);) lines.push_back(line);
  std::vector<cv::Mat> faces;
  std::vector<std::int64_t> labels;
  for (std::size_t j = 0; j < train["batches"][step].size(); ++j) {
    std::istringstream fields(lines[train["batches"][step][j].get<std::size_t>()]);
    std::string path, zero;
    std::int64_t label;
    fields >> path >> zero >> label;
    cv::Mat image = cv::imread((test::shared_dir() / path).string(), cv::IMREAD_COLOR);
    if (train["flips"][step][j].get<bool>()) cv::flip(image, image, 1);
    faces.push_back(image);
    labels.push_back(label);
  }
  return {preprocess_faces(iresnet18(), faces), torch::tensor(labels)};
}

void check_training_variant(const std::string& variant,
                            ActivationLayout layout = ActivationLayout::kNchw) {
  const auto train_json = golden_dir() / "train" / "train.json";
  const auto dir = golden_dir() / "train" / variant;
  FACEMAG_REQUIRE_FILE(train_json);
  FACEMAG_REQUIRE_FILE(dir / (variant + ".json"));
  const auto train = read_json(train_json);
  const auto golden = read_json(dir / (variant + ".json"));

  TrainerOptions options;
  options.manifest = iresnet18();
  options.loss = options_from(golden["params"], MarginKind::kAngular);
  options.num_classes = 8;
  options.momentum = golden["optimizer"]["momentum"];
  options.weight_decay = golden["optimizer"]["weight_decay"];
  options.layout = layout;
  options.dropout = 0.0;  // the golden sets Dropout2d's p to 0 (random otherwise)
  auto network = build_network(options.manifest);
  auto single = single_process_collective();
  Trainer trainer(options, network, *single);
  trainer.load_weights(golden_initial_weights(network, 8), "formula weights");
  std::map<std::string, torch::Tensor> before;
  for (const auto& [name, t] : trainer.state_dict(true))
    before[name] = t.to(torch::kFloat64).clone();

  const double lr = golden["optimizer"]["lr"];
  for (const auto& expected : golden["steps"]) {
    const auto s = expected["step"].get<std::size_t>();
    SCOPED_TRACE("step " + std::to_string(s));
    const auto batch = golden_batch(train, s);
    const auto sums = train["input_checksums"][s]["per_sample_sum"];
    for (std::int64_t j = 0; j < batch.images.size(0); ++j) {
      EXPECT_NEAR(batch.images[j].to(torch::kFloat64).sum().item<double>(), sums[j].get<double>(),
                  1e-9 * sums[j].get<double>());
    }
    EXPECT_TRUE(torch::equal(batch.labels,
                             torch::tensor(expected["labels"].get<std::vector<std::int64_t>>())));
    const auto stats = trainer.step(batch.images, batch.labels, lr);
    const auto& tol = expected["tolerance"];
    EXPECT_LE(relative(stats.loss, expected["loss"]), tol["loss"].get<double>());
    EXPECT_LE(relative(stats.loss_id, expected["loss_id"]), tol["loss_id"].get<double>());
    EXPECT_LE(relative(stats.loss_g, expected["loss_g"]), tol["loss_g"].get<double>());
    const auto x_norm = torch::tensor(expected["x_norm"].get<std::vector<double>>());
    EXPECT_LE(max_relative(stats.x_norm, x_norm), tol["x_norm"].get<double>());
    EXPECT_EQ(stats.top1, expected["acc1_percent"].get<double>());
    if (tol["loss"].get<double>() <= 1e-5) {
      EXPECT_LE(max_relative(stats.target_cos,
                             torch::tensor(expected["target_cos"].get<std::vector<double>>())),
                1e-4);
      EXPECT_LE(
          max_relative(stats.margin, torch::tensor(expected["margin"].get<std::vector<double>>())),
          1e-5);
    }
  }

  // Every state_dict entry after the last step: norms, sums, probed values, of the values and of
  // their change, at the golden's own tolerances.
  const auto probe_after = io::read_npy(dir / "probe_after.npy").to(torch::kFloat64);
  const auto probe_delta = io::read_npy(dir / "probe_delta.npy").to(torch::kFloat64);
  std::map<std::string, torch::Tensor> after;
  for (const auto& [name, t] : trainer.state_dict(true)) after[name] = t.to(torch::kFloat64);
  ASSERT_EQ(after.size(), golden["entries"].size());
  std::int64_t row = 0;
  for (const auto& entry : golden["entries"]) {
    const std::string key = entry["key"];
    SCOPED_TRACE(key);
    ASSERT_TRUE(after.count(key));
    const auto& a = after[key];
    if (entry["dtype"] == "int64") {
      EXPECT_EQ(a.item<double>(), entry["value"].get<double>());
      ++row;
      continue;
    }
    const auto flat_after = a.reshape(-1);
    const auto flat_delta = (a - before[key]).reshape(-1);
    const auto idx = torch::tensor(probe_indices(key, a.numel()));
    const auto& tol = entry["tolerance"];
    const auto check = [&](const torch::Tensor& values, const nlohmann::json& stats,
                           const torch::Tensor& probes, int first) {
      const double norm = values.norm().item<double>(), sum = values.sum().item<double>();
      EXPECT_LE(std::abs(norm - stats[0].get<double>()),
                tol[first].get<double>() * stats[0].get<double>());
      EXPECT_LE(std::abs(sum - stats[1].get<double>()),
                tol[first + 1].get<double>() * stats[2].get<double>());
      const double probe_error = (values.index_select(0, idx) - probes).abs().max().item<double>();
      EXPECT_LE(probe_error, tol[first + 2].get<double>() * stats[3].get<double>());
    };
    check(flat_after, entry["after"], probe_after[row], 0);
    check(flat_delta, entry["delta"], probe_delta[row], 3);
    ++row;
  }
  const std::map<std::string, std::string> final_arrays = {
      {"final_fc_weight", "fc.weight"},
      {"final_features_bn_weight", "features.features.weight"},
      {"final_features_bn_bias", "features.features.bias"},
      {"final_features_bn_running_mean", "features.features.running_mean"},
      {"final_features_bn_running_var", "features.features.running_var"}};
  for (const auto& [file, key] : final_arrays) {
    SCOPED_TRACE(file);
    EXPECT_LE(max_relative(after[key], io::read_npy(dir / (file + ".npy"))),
              golden["final_arrays"][file]["tolerance"].get<double>());
  }
}

TEST(TrainGolden, MagFaceOneStepMatchesTrainerPy) { check_training_variant("magface_1step"); }
TEST(TrainGolden, ArcFaceOneStepMatchesTrainerPy) { check_training_variant("arcface"); }
TEST(TrainGolden, MagFaceThreeStepsMatchTrainerPy) { check_training_variant("magface"); }
TEST(TrainGolden, MagFaceOneStepInChannelsLastMatchesTrainerPy) {
  check_training_variant("magface_1step", ActivationLayout::kChannelsLast);
}

// ---- the split classifier ----

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

struct RunRecord {
  std::vector<double> losses;
  io::NamedTensors state;
};

// `world` processes (threads here, each with its own Gloo rank) train MobileFaceNet in float64 on
// the same global batches; rank 0's record.
RunRecord train_split(int world, std::int64_t classes, int steps) {
  const int port = free_port();
  const std::int64_t batch = 7;
  torch::manual_seed(100);  // drawn here: LibTorch's generator is shared by the rank threads
  std::vector<torch::Tensor> images, labels;
  for (int s = 0; s < steps; ++s) {
    images.push_back(torch::rand({batch, 3, 112, 96}, torch::kFloat64) * 2 - 1);
    labels.push_back(torch::randint(classes, {batch}, torch::kInt64));
  }
  auto run_rank = [&](int rank) {
    torch::set_num_threads(1);
    RendezvousOptions rendezvous;
    rendezvous.rank = rank;
    rendezvous.world_size = world;
    rendezvous.master_port = port;
    auto collective = world == 1 ? single_process_collective() : gloo_collective(rendezvous);
    TrainerOptions options;
    options.manifest = builtin_manifest("mobilefacenet");
    options.loss = margin_loss_preset("magface");
    options.loss.l_a = 0.5;  // formula-weight features are small; keep the margins adaptive
    options.loss.u_a = 30;
    options.num_classes = classes;
    options.freeze_batch_norm = true;  // per-process batch statistics would differ from 1 process
    auto network = build_network(options.manifest);
    nn::fill_formula_weights(*network.module);
    network.module->to(torch::kFloat64);
    Trainer trainer(options, network, *collective);
    RunRecord record;
    const auto counts = split_counts(batch, world);
    std::int64_t first = 0;
    for (int r = 0; r < rank; ++r) first += counts[static_cast<std::size_t>(r)];
    for (int s = 0; s < steps; ++s) {
      const auto rows = counts[static_cast<std::size_t>(rank)];
      const auto stats =
          trainer.step(images[s].narrow(0, first, rows), labels[s].narrow(0, first, rows), 0.05);
      record.losses.push_back(stats.loss);
    }
    record.state = trainer.state_dict(true);
    return record;
  };
  std::vector<std::future<RunRecord>> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(std::async(std::launch::async, run_rank, r));
  std::vector<RunRecord> records;
  for (auto& f : ranks) records.push_back(f.get());
  return records[0];
}

TEST(TrainDistributed, SplitClassifierOnTwoAndThreeProcessesEqualsOne) {
  constexpr std::int64_t kClasses = 10;  // 3 does not divide it: shares 4, 3, 3
  constexpr int kSteps = 3;
  const auto one = train_split(1, kClasses, kSteps);
  for (int world : {2, 3}) {
    SCOPED_TRACE(std::to_string(world) + " processes");
    const auto many = train_split(world, kClasses, kSteps);
    for (int s = 0; s < kSteps; ++s)
      EXPECT_NEAR(many.losses[s], one.losses[s], 1e-9 * one.losses[s]);
    ASSERT_EQ(many.state.size(), one.state.size());
    // float64 throughout: the two runs differ only in summation order (~1e-16 per operation).
    for (std::size_t i = 0; i < one.state.size(); ++i) {
      SCOPED_TRACE(one.state[i].first);
      const auto& expected = one.state[i].second;
      if (!expected.is_floating_point()) continue;
      const double scale = std::max(expected.abs().max().item<double>(), 1e-30);
      EXPECT_LE((many.state[i].second - expected).abs().max().item<double>() / scale, 1e-9);
    }
  }
}

// ---- checkpoints ----

TEST(TrainCheckpoint, WrittenCheckpointLoadsWithTheInMemoryEmbeddings) {
  test::TempDir dir;
  TrainerOptions options;
  options.manifest = builtin_manifest("mobilefacenet");
  options.loss.l_a = 0.5;
  options.loss.u_a = 30;
  options.num_classes = 5;
  auto network = build_network(options.manifest);
  nn::fill_formula_weights(*network.module);
  auto single = single_process_collective();
  Trainer trainer(options, network, *single);
  torch::manual_seed(3);
  const auto images = torch::rand({6, 3, 112, 96}) * 2 - 1;
  for (int s = 0; s < 2; ++s) trainer.step(images, torch::tensor({0, 1, 2, 3, 4, 0}), 0.05);
  const auto path = dir / "00001.pth";
  trainer.save_checkpoint(path, 1, 0, true);

  network.module->eval();
  torch::Tensor in_memory;
  {
    torch::NoGradGuard no_grad;
    in_memory = network.forward(images);
  }
  EmbedderOptions reference;
  reference.precision = Precision::kReference;
  const auto loaded = Embedder::load(options.manifest, path, reference);
  EXPECT_LE(max_relative(loaded.forward(images), in_memory), 1e-6);
  EXPECT_FALSE(loaded.load_notes().empty());  // the classifier, named and ignored

  // Resuming restores everything a step depends on: the same next step from both.
  auto network2 = build_network(options.manifest);
  Trainer resumed(options, network2, *single);
  const auto position = resumed.resume(path);
  EXPECT_EQ(position.epoch, 1);
  EXPECT_EQ(resumed.steps_done(), 2);
  const auto a = trainer.step(images, torch::tensor({0, 1, 2, 3, 4, 0}), 0.05);
  const auto b = resumed.step(images, torch::tensor({0, 1, 2, 3, 4, 0}), 0.05);
  EXPECT_EQ(a.loss, b.loss);
  const auto sa = trainer.state_dict(true), sb = resumed.state_dict(true);
  for (std::size_t i = 0; i < sa.size(); ++i)
    EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;

  // Another architecture or class count is refused by name.
  TrainerOptions other = options;
  other.num_classes = 6;
  auto network3 = build_network(options.manifest);
  Trainer wrong(other, network3, *single);
  try {
    wrong.resume(path);
    ADD_FAILURE() << "a 5-class checkpoint resumed a 6-class run";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("5 classes"), std::string::npos) << e.what();
  }
}

TEST(TrainSchedule, UpstreamDropsCompoundAndWarmupRamps) {
  ScheduleOptions s;  // 0.1, drops at 10, 18, 22
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 9, 900), 0.1);
  EXPECT_NEAR(learning_rate(s, 10, 1000), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate(s, 18, 1800), 0.001, 1e-15);
  EXPECT_NEAR(learning_rate(s, 24, 2400), 1e-4, 1e-15);
  s.warmup_iterations = 4;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, 0), 0.025);
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, 3), 0.1);
  s.warmup_iterations = 0;
  s.cosine = true;
  s.total_iterations = 100;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, 0), 0.1);
  EXPECT_NEAR(learning_rate(s, 5, 50), 0.05, 1e-15);
}

// ---- training data ----

TEST(TrainData, ListsAreCheckedBeforeTraining) {
  test::TempDir dir;
  cv::imwrite((dir / "a.png").string(), cv::Mat(112, 112, CV_8UC3, cv::Scalar(1, 2, 3)));
  cv::imwrite((dir / "b.png").string(), cv::Mat(112, 112, CV_8UC3, cv::Scalar(4, 5, 6)));
  auto list = [&](const std::string& text) {
    test::write_file(dir / "list.txt", text);
    return dir / "list.txt";
  };
  const auto four = read_training_list(list("a.png 0 0 0\nb.png 0 1 0\n"), {});
  EXPECT_EQ(four.num_classes, 2);
  EXPECT_EQ(four.samples[1].path, dir / "b.png");
  EXPECT_EQ(read_training_list(list("a.png 0\nb.png 4\n"), {}).num_classes, 5);

  auto message = [&](const std::string& text, std::int64_t classes = 0) {
    try {
      read_training_list(list(text), {}, classes);
    } catch (const InvalidInput& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("a.png 0\nmissing.png 1\n").find("missing.png"), std::string::npos);
  EXPECT_NE(message("a.png 0\nb.png one\n").find("list.txt:2: label 'one'"), std::string::npos);
  EXPECT_NE(message("a.png 0\nb.png 7\n", 3).find("out of range for 3 classes"), std::string::npos);
  EXPECT_NE(message("a.png 0\nb.png 0\n").find("at least two classes"), std::string::npos);
  EXPECT_NE(message("").find("no training images"), std::string::npos);
  EXPECT_NE(message("a.png 0 1\n").find("got 3 field(s)"), std::string::npos);
}

TEST(TrainData, BatchesDependOnlyOnSeedAndEpoch) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 10; ++i) {
    cv::Mat face(112, 96, CV_8UC3, cv::Scalar(i, 2 * i, 3 * i));
    face.col(0).setTo(cv::Scalar(200, 200, 200));  // mirrored, it moves to the last column
    cv::imwrite((dir / (std::to_string(i) + ".png")).string(), face);
    text += std::to_string(i) + ".png " + std::to_string(i % 3) + "\n";
  }
  cv::imwrite((dir / "9.png").string(), cv::Mat(10, 10, CV_8UC3));  // not an aligned face
  test::write_file(dir / "list.txt", text);
  const auto set = read_training_list(dir / "list.txt", {});
  const auto manifest = builtin_manifest("mobilefacenet");
  LoaderOptions options;
  options.batch_size = 3;
  options.seed = 7;
  auto read_all = [&](int workers, int rank, int world) {
    options.workers = workers;
    options.rank = rank;
    options.world_size = world;
    BatchLoader loader(set, manifest, options, 2);
    std::vector<TrainingBatch> out;
    while (auto b = loader.next()) out.push_back(std::move(*b));
    return out;
  };
  const auto one = read_all(1, 0, 1);
  ASSERT_EQ(one.size(), 3u);  // 10 / 3, the partial batch dropped
  const auto order = epoch_permutation(10, 7, 2);
  std::size_t skipped = 0;
  for (std::size_t b = 0; b < one.size(); ++b) {
    skipped += one[b].skipped.size();
    EXPECT_EQ(one[b].images.size(0) + static_cast<std::int64_t>(one[b].skipped.size()), 3);
  }
  const bool nine_used = std::find(order.begin(), order.begin() + 9, 9) != order.begin() + 9;
  EXPECT_EQ(skipped, nine_used ? 1u : 0u);
  // Four workers, and two processes' shares put together, give the same batches.
  const auto four = read_all(4, 0, 1);
  const auto first = read_all(2, 0, 2), second = read_all(2, 1, 2);
  for (std::size_t b = 0; b < one.size(); ++b) {
    EXPECT_TRUE(torch::equal(one[b].images, four[b].images));
    EXPECT_TRUE(torch::equal(one[b].labels, torch::cat({first[b].labels, second[b].labels})));
    EXPECT_TRUE(torch::equal(one[b].images, torch::cat({first[b].images, second[b].images})));
  }
  // Flipped faces have the bright column on the right.
  std::int64_t row = 0;
  for (std::int64_t position = 0; position < 3; ++position) {
    const auto sample = order[static_cast<std::size_t>(position)];
    if (sample == 9) continue;
    const auto image = one[0].images[row++];
    const bool right =
        image[0].select(1, 95).mean().item<double>() > image[0].select(1, 0).mean().item<double>();
    EXPECT_EQ(right, flipped(7, 2, position)) << "position " << position;
  }
  EXPECT_NE(epoch_permutation(10, 7, 3), order);
}

}  // namespace
}  // namespace facemag::train
