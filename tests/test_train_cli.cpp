// `facemag train` end to end: fine-tuning the real MobileFaceNet on the CASIA photos (aligned by
// --align), checkpoints MagFace's Python and facemag load, exact resume after SIGINT, several
// processes, and the bad inputs that must stop a run before it starts.
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "facemag/io/checkpoint.hpp"
#include "facemag/nn/onednn/onednn_graph.hpp"
#include "test_support.hpp"

namespace facemag::test {
namespace {

std::filesystem::path casia() { return shared_dir() / "data" / "faces-casia"; }
std::filesystem::path mobilefacenet() {
  return shared_dir() / "weights" / "mobilefacenet" / "068.ckpt";
}
std::filesystem::path mtcnn() { return shared_dir() / "weights" / "mtcnn"; }

#define REQUIRE_TRAINING_DATA()          \
  FACEMAG_REQUIRE_FILE(casia());         \
  FACEMAG_REQUIRE_FILE(mobilefacenet()); \
  FACEMAG_REQUIRE_FILE(mtcnn() / "onet.pt")

// A short MobileFaceNet fine-tuning command on the CASIA photos (3 people, 45 photos).
std::string fine_tune_args(const std::filesystem::path& out, const std::string& extra = "") {
  return "train " + casia().string() + " --out " + out.string() + " --arch mobilefacenet --init " +
         mobilefacenet().string() + " --align --mtcnn " + mtcnn().string() +
         " --batch 8 --lr 0.001 --l-a 2 --u-a 30 --threads 2 " + extra;
}

std::vector<nlohmann::json> log_records(const std::filesystem::path& out) {
  return json_lines(read_file(out / "train.jsonl"));
}

TEST(TrainCli, FineTunesTheRealModelAndWritesWhatMagFaceAndFacemagLoad) {
  REQUIRE_TRAINING_DATA();
  TempDir tmp;
  const auto out = tmp / "run";
  const auto r = run_cli(fine_tune_args(out, "--epochs 4"), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto records = log_records(out);
  ASSERT_EQ(records.size(), 4u * 5u);  // 45 faces / 8 = 5 iterations per epoch
  for (const char* field : {"epoch", "iteration", "step", "loss", "loss_id", "loss_g", "mag_mean",
                            "mag_min", "mag_max", "margin", "lr", "top1", "img_per_s", "skipped"}) {
    EXPECT_TRUE(records[0].contains(field)) << field;
  }
  // The loss falls: the last epoch's mean is well below the first's.
  auto epoch_mean = [&](int epoch) {
    double sum = 0;
    for (int i = 0; i < 5; ++i)
      sum += records[static_cast<std::size_t>(epoch * 5 + i)]["loss_id"].get<double>();
    return sum / 5;
  };
  EXPECT_LT(epoch_mean(3), 0.5 * epoch_mean(0)) << epoch_mean(0) << " -> " << epoch_mean(3);
  for (int e = 1; e <= 4; ++e) {
    const auto name = "0000" + std::to_string(e) + ".pth";
    EXPECT_TRUE(std::filesystem::exists(out / name)) << name;
    EXPECT_TRUE(std::filesystem::exists(out / (name + ".manifest.json"))) << name;
    EXPECT_GT(std::filesystem::file_size(out / ("vis_mag_0000" + std::to_string(e) + ".png")),
              1000u);
  }

  // MagFace's layout, as torch.save writes it: the keys its loaders read.
  const auto checkpoint = io::load_checkpoint(out / "00004.pth");
  const auto& root = checkpoint.root->as_dict();
  EXPECT_EQ(pickle::dict_get(root, "epoch")->as_int(), 4);
  EXPECT_EQ(pickle::dict_get(root, "arch")->as_string(), "mobilefacenet");
  const auto tensors = io::find_state_dict(checkpoint);
  EXPECT_EQ(tensors.front().first, "module.features.conv1.conv.weight");
  EXPECT_EQ(tensors.back().first, "module.fc.weight");
  EXPECT_EQ(tensors.back().second.sizes(), (std::vector<std::int64_t>{128, 3}));
  const auto& optimizer = pickle::dict_get(root, "optimizer")->as_dict();
  EXPECT_FALSE(pickle::dict_get(optimizer, "state")->as_dict().items.empty());

  // facemag reads it back (its manifest beside it), and PyTorch itself where it is installed.
  const auto embed = run_cli("quality --aligned --weights " + (out / "00004.pth").string() + " " +
                                 (out / "aligned").string(),
                             tmp);
  ASSERT_EQ(embed.exit_code, 0) << embed.err;
  const auto qualities = json_lines(embed.out);
  EXPECT_EQ(qualities.size(), 45u);
  EXPECT_EQ(qualities[0]["model"], "mobilefacenet-magface-trained");
  if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    std::cout << "[ SKIPPED  ] torch.load check: no python3-torch on this machine\n";
    return;
  }
  // MagFace's inference loader (utils.load_dict_inf) drops the first two parts of each key.
  const std::string script =
      "import torch,sys\n"
      "c=torch.load(sys.argv[1],map_location='cpu')\n"
      "sd={'.'.join(k.split('.')[2:]):v for k,v in c['state_dict'].items() if "
      "k.startswith('module.features.')}\n"
      "print(c['epoch'],c['arch'],len(sd),tuple(c['state_dict']['module.fc.weight'].shape),"
      "len(c['optimizer']['state']),float(sd['linear1.bn.running_var'].sum()))\n";
  write_file(tmp / "load.py", script);
  FILE* pipe =
      popen(("/usr/bin/python3 " + (tmp / "load.py").string() + " " + (out / "00004.pth").string())
                .c_str(),
            "r");
  char buf[512] = {0};
  const std::size_t n = fread(buf, 1, sizeof buf - 1, pipe);
  EXPECT_EQ(pclose(pipe), 0);
  std::istringstream printed(std::string(buf, n));
  int epoch = 0;
  std::string arch, shape;
  std::size_t entries = 0, states = 0;
  double var_sum = 0;
  printed >> epoch >> arch >> entries >> shape;
  std::string shape_rest;
  printed >> shape_rest >> states >> var_sum;
  EXPECT_EQ(epoch, 4);
  EXPECT_EQ(arch, "mobilefacenet");
  EXPECT_EQ(entries, tensors.size() - 1);
  EXPECT_EQ(shape + shape_rest, "(128,3)");
  for (const auto& [name, t] : tensors) {
    if (name == "module.features.linear1.bn.running_var")
      EXPECT_NEAR(var_sum, t.to(torch::kFloat64).sum().item<double>(), 1e-6 * std::abs(var_sum));
  }
}

TEST(TrainCli, ResumeAfterSigintEqualsTheUninterruptedRun) {
  REQUIRE_TRAINING_DATA();
  TempDir tmp;
  const auto straight = tmp / "straight", broken = tmp / "broken";
  ASSERT_EQ(run_cli(fine_tune_args(straight, "--epochs 2"), tmp).exit_code, 0);

  // The same run, interrupted once its first step is logged.
  const std::string cmd = std::string(FACEMAG_CLI_PATH) + " " +
                          fine_tune_args(broken, "--epochs 2") + " 2>" +
                          (tmp / "broken.err").string() + " & echo $!";
  FILE* pipe = popen(cmd.c_str(), "r");
  int pid = 0;
  ASSERT_EQ(fscanf(pipe, "%d", &pid), 1);
  pclose(pipe);
  for (int i = 0; i < 3000 && !(std::filesystem::exists(broken / "train.jsonl") &&
                                !log_records(broken).empty());
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  for (int i = 0; i < 3000 && ::kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(std::filesystem::exists(broken / "interrupted.pth")) << read_file(tmp / "broken.err");
  EXPECT_NE(read_file(tmp / "broken.err").find("--resume"), std::string::npos);
  const auto done = log_records(broken).size();
  ASSERT_LT(done, 10u) << "the run ended before the interrupt";

  const auto resumed = run_cli(
      fine_tune_args(broken, "--epochs 2 --resume " + (broken / "interrupted.pth").string()), tmp);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto a = log_records(straight), b = log_records(broken);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << "record " << i;
  }
  // The same weights, bit for bit (same threads, same order of every operation).
  const auto final_a = io::find_state_dict(io::load_checkpoint(straight / "00002.pth"));
  const auto final_b = io::find_state_dict(io::load_checkpoint(broken / "00002.pth"));
  ASSERT_EQ(final_a.size(), final_b.size());
  for (std::size_t i = 0; i < final_a.size(); ++i) {
    EXPECT_EQ(final_a[i].first, final_b[i].first);
    EXPECT_TRUE(torch::equal(final_a[i].second, final_b[i].second)) << final_a[i].first;
  }
}

TEST(TrainCli, SuggestedBoundsBracketTheMagnitudesAndImprintingStartsRight) {
  REQUIRE_TRAINING_DATA();
  TempDir tmp;
  const auto bounds = run_cli(fine_tune_args(tmp / "run", "--suggest-bounds"), tmp);
  ASSERT_EQ(bounds.exit_code, 0) << bounds.err;
  const auto s = nlohmann::json::parse(bounds.out);
  EXPECT_EQ(s["faces"], 45);
  EXPECT_LT(s["l_a"].get<double>(), s["min"].get<double>());
  EXPECT_GT(s["u_a"].get<double>(), s["max"].get<double>());
  EXPECT_LE(s["min"].get<double>(), s["median"].get<double>());
  EXPECT_NE(bounds.err.find("--l-a"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(tmp / "run" / "train.jsonl"));  // nothing trained

  // A classifier imprinted from the class means already knows the three people; a random one
  // guesses (about a third right).
  const auto imprinted = run_cli(fine_tune_args(tmp / "imprinted", "--epochs 1 --imprint"), tmp);
  ASSERT_EQ(imprinted.exit_code, 0) << imprinted.err;
  const auto random = run_cli(fine_tune_args(tmp / "random", "--epochs 1"), tmp);
  ASSERT_EQ(random.exit_code, 0) << random.err;
  EXPECT_GE(log_records(tmp / "imprinted")[0]["top1"].get<double>(), 87.5);
  EXPECT_LT(log_records(tmp / "random")[0]["top1"].get<double>(),
            log_records(tmp / "imprinted")[0]["top1"].get<double>());
}

TEST(TrainCli, BadInputsStopBeforeTraining) {
  REQUIRE_TRAINING_DATA();
  TempDir tmp;
  const auto photo = (casia() / "bruce" / "001.jpg").string();
  auto run_list = [&](const std::string& list, const std::string& extra = "") {
    write_file(tmp / "list.txt", list);
    return run_cli("train " + (tmp / "list.txt").string() + " --out " + (tmp / "out").string() +
                       " --arch mobilefacenet " + extra,
                   tmp);
  };
  auto expect_error = [&](const RunResult& r, const std::string& words) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(words), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(tmp / "out" / "train.jsonl"));
  };
  expect_error(run_list(photo + " 0\n/nowhere/x.jpg 1\n"), "/nowhere/x.jpg");
  expect_error(run_list(photo + " 0 5 0\n" + photo + " 0 1 0\n", "--classes 3"),
               "out of range for 3 classes");
  expect_error(run_list(photo + " 0\n" + photo + " 0\n"), "at least two classes");
  expect_error(run_list(""), "no training images");
  expect_error(run_list(photo + " 0\n" + photo + " x\n"),
               "label 'x' is not a non-negative integer");
  expect_error(run_list(photo + " 0\n" + photo + " 1\n"), "add --align");
  // A checkpoint of another network.
  expect_error(run_cli("train " + casia().string() + " --out " + (tmp / "out").string() +
                           " --arch iresnet18 --init " + mobilefacenet().string(),
                       tmp),
               mobilefacenet().string());
  expect_error(
      run_cli("train " + casia().string() + " --out " + (tmp / "out").string() + " --loss softmax",
              tmp),
      "unknown loss 'softmax'");
  if (nn::OneDnnGraph::available(torch::kFloat32) && !nn::OneDnnGraph::available(torch::kBFloat16))
    expect_error(run_cli(fine_tune_args(tmp / "out", "--precision bf16"), tmp),
                 "--precision bf16 runs on oneDNN with AVX-512, which this CPU lacks: use fp32");
}

TEST(TrainCli, UnreadableImagesAreSkippedAndDivergenceKeepsTheLastGoodState) {
  REQUIRE_TRAINING_DATA();
  TempDir tmp;
  // Aligned crops, plus one file that is no image.
  const auto first = run_cli(fine_tune_args(tmp / "align", "--epochs 1"), tmp);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  std::string list;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(tmp / "align" / "aligned"))
    if (entry.is_regular_file())
      list += entry.path().string() + " " + entry.path().parent_path().filename().string() + "\n";
  write_file(tmp / "broken.png", "not a png");
  list += (tmp / "broken.png").string() + " 1\n";
  write_file(tmp / "list.txt", list);
  const std::string base = "train " + (tmp / "list.txt").string() +
                           " --arch mobilefacenet --init " + mobilefacenet().string() +
                           " --batch 46 --l-a 2 --u-a 30 --threads 2 ";
  const auto skipped =
      run_cli(base + "--out " + (tmp / "skip").string() + " --epochs 2 --lr 0.01", tmp);
  EXPECT_EQ(skipped.exit_code, 1) << skipped.err;  // finished, with an input left out
  EXPECT_EQ(std::count(skipped.err.begin(), skipped.err.end(), '\n') > 0, true);
  const auto err_lines = skipped.err.find("broken.png");
  ASSERT_NE(err_lines, std::string::npos) << skipped.err;
  EXPECT_EQ(skipped.err.find("broken.png", err_lines + 1), std::string::npos) << "reported twice";
  const auto records = log_records(tmp / "skip");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1]["skipped"], 2);  // once per epoch, counted
  EXPECT_TRUE(std::filesystem::exists(tmp / "skip" / "00002.pth"));

  const auto diverged =
      run_cli(base + "--out " + (tmp / "nan").string() + " --epochs 3 --lr 1e38", tmp);
  EXPECT_EQ(diverged.exit_code, 2);
  EXPECT_NE(diverged.err.find("training step"), std::string::npos) << diverged.err;
  EXPECT_NE(diverged.err.find("last-good.pth"), std::string::npos) << diverged.err;
  const auto good = io::find_state_dict(io::load_checkpoint(tmp / "nan" / "last-good.pth"));
  for (const auto& [name, t] : good)
    if (t.is_floating_point()) EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
}

TEST(TrainCli, SeveralWorkerProcessesAndAWorkerThatDies) {
  REQUIRE_TRAINING_DATA();
  TempDir tmp;
  const auto two = run_cli(fine_tune_args(tmp / "two", "--epochs 1 --nproc 2"), tmp);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(log_records(tmp / "two").size(), 5u);  // rank 0 alone logs
  EXPECT_TRUE(std::filesystem::exists(tmp / "two" / "00001.pth"));
  const auto tensors = io::find_state_dict(io::load_checkpoint(tmp / "two" / "00001.pth"));
  EXPECT_EQ(tensors.back().second.sizes(), (std::vector<std::int64_t>{128, 3}));  // gathered

  // Kill one worker mid-run: the launcher stops the other and says which died.
  const std::string cmd = std::string(FACEMAG_CLI_PATH) + " " +
                          fine_tune_args(tmp / "killed", "--epochs 50 --nproc 2") + " 2>" +
                          (tmp / "killed.err").string() + " & echo $!";
  FILE* pipe = popen(cmd.c_str(), "r");
  int launcher = 0;
  ASSERT_EQ(fscanf(pipe, "%d", &launcher), 1);
  pclose(pipe);
  for (int i = 0; i < 6000 && !(std::filesystem::exists(tmp / "killed" / "train.jsonl") &&
                                !log_records(tmp / "killed").empty());
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  FILE* children = popen(("pgrep -n -P " + std::to_string(launcher)).c_str(), "r");
  int worker = 0;
  ASSERT_EQ(fscanf(children, "%d", &worker), 1);
  pclose(children);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  const auto start = std::chrono::steady_clock::now();
  while (::kill(launcher, 0) == 0 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30)) << "the run hung";
  EXPECT_NE(read_file(tmp / "killed.err").find("was killed by signal 9; stopped the other workers"),
            std::string::npos)
      << read_file(tmp / "killed.err");
}

}  // namespace
}  // namespace facemag::test
