// `facemag eval ijb` (IJB-B/C 1:1 template verification as MagFace's eval_ijb.py) and
// `facemag eval ijb-identify` (the 1:N protocol of insightface's IJB-C lists).
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/io/image.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {
namespace {

struct IjbOptions {
  std::string meta;  // folder with meta/ (or the meta folder itself)
  std::string type = "c";
  std::string features;  // .npy (row i = face list line i, or matched by its .jsonl index) or text
  std::string images;    // aligned face images, named as in the face list
  ModelOptions model;    // for --images
  std::string json;
};

void add_ijb_options(CLI::App& cmd, IjbOptions& opt) {
  cmd.add_option("--meta", opt.meta,
                 "IJB folder holding meta/ijb{b,c}_face_tid_mid.txt (or that meta folder)")
      ->required();
  cmd.add_option("--type", opt.type, "b (IJB-B) or c (IJB-C)")
      ->check(CLI::IsMember({"b", "c"}))
      ->capture_default_str();
  auto* source = cmd.add_option_group("features", "Image features (one of)");
  source->add_option("--features", opt.features,
                     "MagFace feature list (text: name v1 ... vD, line i = face list line i), or "
                     "an .npy matrix (row i = line i, or rows matched by name through the "
                     "F.jsonl index that `facemag embed --npy F.npy` writes)");
  source->add_option("--images", opt.images,
                     "Folder of the aligned faces named in the face list: embedded with --arch/"
                     "--weights");
  source->require_option(1);
  add_model_options(cmd, opt.model, "iresnet100");
  cmd.add_option("--json", opt.json, "Write every number here");
}

// A file of the IJB meta folder: DIR/meta/NAME, or DIR/NAME.
std::filesystem::path meta_file(const IjbOptions& opt, const std::string& name) {
  return eval::find_ijb_meta_file(opt.meta, name);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Seconds per step, logged with --verbose.
class Stopwatch {
 public:
  void lap(const char* step) {
    const auto now = std::chrono::steady_clock::now();
    spdlog::debug("{}: {:.2f} s, peak memory so far {} MB", step,
                  std::chrono::duration<double>(now - last_).count(), peak_rss_mb());
    last_ = now;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

std::string prefix(const IjbOptions& opt) { return "ijb" + opt.type + "_"; }

// Features of every face of the list, row i for line i: read from --features, or the aligned
// faces of --images embedded.
torch::Tensor image_features(const IjbOptions& opt, const eval::IjbFaceList& faces) {
  if (opt.images.empty()) return eval::read_ijb_features(opt.features, faces);
  const Embedder embedder = load_model(opt.model);
  const auto& m = embedder.manifest();
  std::vector<float> rows;
  ProgressBar progress(faces.size(), "embed");
  std::vector<cv::Mat> batch;
  const auto flush = [&] {
    for (const auto& e : embedder.embed(batch)) rows.insert(rows.end(), e.raw.begin(), e.raw.end());
    progress.advance(batch.size());
    batch.clear();
  };
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const auto path = std::filesystem::path(opt.images) / faces.image[i];
    cv::Mat face = io::read_image_bgr(path);
    if (face.rows != m.input_height || face.cols != m.input_width)
      throw InvalidInput(path.string() + " (" + faces.source.string() + ":" +
                         std::to_string(i + 1) + "): " + std::to_string(face.cols) + "x" +
                         std::to_string(face.rows) + ", not an aligned " +
                         std::to_string(m.input_width) + "x" + std::to_string(m.input_height) +
                         " face for " + m.name);
    batch.push_back(std::move(face));
    if (batch.size() == static_cast<std::size_t>(opt.model.batch)) flush();
  }
  flush();
  return torch::from_blob(rows.data(),
                          {static_cast<std::int64_t>(faces.size()), embedder.output_size()},
                          torch::kFloat32)
      .clone();
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw InvalidInput(path + ": cannot write");
}

std::string far_label(double far) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0e", far);
  return buf;
}

// ---- eval ijb ----

struct IjbVerifyOptions {
  IjbOptions ijb;
  bool quality_weighted = false;
  std::string plot;
};

int run_eval_ijb(const IjbVerifyOptions& opt) {
  configure_runtime(opt.ijb.model.threads);
  Stopwatch watch;
  const auto faces =
      eval::read_ijb_face_list(meta_file(opt.ijb, prefix(opt.ijb) + "face_tid_mid.txt"));
  const auto pair_file = meta_file(opt.ijb, prefix(opt.ijb) + "template_pair_label.txt");
  const auto templates = [&] {  // the image features are freed once the templates are made
    const auto features = image_features(opt.ijb, faces);
    watch.lap("face list and features");
    return eval::ijb_template_features(features, faces, opt.quality_weighted);
  }();
  watch.lap("template features");
  const auto scores = eval::ijb_pair_scores(pair_file, templates);
  watch.lap("pair scores");
  const auto roc = eval::sklearn_roc(scores.score, scores.genuine);
  watch.lap("ROC");

  std::printf("%zu images, %zu templates, %zu pairs (%zu genuine, %zu impostor); %s\n",
              faces.size(), templates.ids.size(), scores.score.size(), roc.genuine, roc.impostor,
              opt.quality_weighted
                  ? "media features quality-weighted (magface_qlt=1: not normalised)"
                  : "media features normalised (magface_qlt=0)");
  std::printf("IJB%s 1v1 verification:\n\n", opt.ijb.type.c_str());
  std::string row;
  nlohmann::json tars = nlohmann::json::array();
  for (const double far : eval::ijb_far_targets()) {
    const auto t = eval::tar_at_far(roc, far);
    char cell[16];
    std::snprintf(cell, sizeof cell, "  %0.4f", t.tar);
    std::printf("%s\n", cell);
    row += cell;
    tars.push_back(
        {{"far_target", far}, {"far", t.far}, {"tar", t.tar}, {"threshold", t.threshold}});
  }
  std::printf("%s\n", row.c_str());
  std::printf("(TAR at FAR");
  for (const double far : eval::ijb_far_targets()) std::printf(" %s", far_label(far).c_str());
  std::printf("; AUC %.6f)\n", roc.auc);
  write_json(opt.ijb.json, {{"type", opt.ijb.type},
                            {"quality_weighted", opt.quality_weighted},
                            {"images", faces.size()},
                            {"templates", templates.ids.size()},
                            {"pairs", scores.score.size()},
                            {"genuine", roc.genuine},
                            {"impostor", roc.impostor},
                            {"tar_at_far", tars},
                            {"auc", roc.auc}});
  if (!opt.plot.empty()) {
    plot::Series curve{"TAR", {}, {}, plot::category_color(0), false};
    for (std::size_t i = 0; i < roc.fpr.size(); ++i) {
      if (roc.fpr[i] < 1e-6) continue;
      curve.x.push_back(std::log10(roc.fpr[i]));
      curve.y.push_back(roc.tpr[i]);
    }
    plot::write_png(opt.plot, plot::line_chart(
                                  {curve}, {"ROC on IJB-" + opt.ijb.type +
                                                (opt.quality_weighted ? " (quality-weighted)" : ""),
                                            "false accept rate (log10)", "true accept rate"}));
    spdlog::info("ROC written to {}", opt.plot);
  }
  return kExitOk;
}

// ---- eval ijb-identify ----

struct IjbIdentifyOptions {
  IjbOptions ijb;
  std::vector<std::string> galleries;  // default: the two gallery lists of --type
  std::string probes;
};

int run_eval_ijb_identify(const IjbIdentifyOptions& opt) {
  configure_runtime(opt.ijb.model.threads);
  const auto faces =
      eval::read_ijb_face_list(meta_file(opt.ijb, prefix(opt.ijb) + "face_tid_mid.txt"));
  std::vector<std::filesystem::path> gallery_files;
  for (const auto& g : opt.galleries) gallery_files.emplace_back(g);
  if (gallery_files.empty()) {
    for (const auto& set : opt.ijb.type == "c" ? std::vector<std::string>{"G1", "G2"}
                                               : std::vector<std::string>{"S1", "S2"})
      gallery_files.push_back(meta_file(opt.ijb, prefix(opt.ijb) + "1N_gallery_" + set + ".csv"));
  }
  const auto probe_file = opt.probes.empty()
                              ? meta_file(opt.ijb, prefix(opt.ijb) + "1N_probe_mixed.csv")
                              : std::filesystem::path(opt.probes);
  const auto probes = eval::read_ijb_template_subjects(probe_file);
  const auto features = image_features(opt.ijb, faces);

  const std::vector<int> ranks{1, 5, 10};
  const std::vector<double> fpirs{1e-2, 1e-1};
  nlohmann::json results = nlohmann::json::array();
  for (const auto& gallery_file : gallery_files) {
    const auto gallery = eval::read_ijb_template_subjects(gallery_file);
    bool header = true;
    for (const bool weighted : {false, true}) {
      const auto templates = eval::ijb_template_features(features, faces, weighted);
      const auto r = eval::identify_templates(templates, gallery, probes, ranks, fpirs);
      if (header) {
        std::printf("%s: %zu gallery templates; %s: %zu probes (%zu mated, %zu non-mated)\n",
                    gallery_file.filename().string().c_str(), gallery.template_id.size(),
                    probe_file.filename().string().c_str(), r.probes, r.mated, r.non_mated);
        std::printf("  %-17s rank-1  rank-5  rank-10  TPIR@FPIR=1e-2  TPIR@FPIR=1e-1\n", "");
        header = false;
      }
      std::printf("  %-17s %6.4f  %6.4f  %7.4f", weighted ? "quality-weighted" : "media normalised",
                  r.cmc[0], r.cmc[1], r.cmc[2]);
      nlohmann::json open = nlohmann::json::array();
      for (const auto& p : r.open_set) {
        if (p.threshold) {
          std::printf("  %14.4f", p.tpir);
          open.push_back({{"fpir", p.fpir}, {"tpir", p.tpir}, {"threshold", *p.threshold}});
        } else {
          std::printf("  %14s", "n/a");
          open.push_back({{"fpir", p.fpir}, {"tpir", nullptr}, {"threshold", nullptr}});
        }
      }
      std::printf("\n");
      results.push_back({{"gallery", gallery_file.string()},
                         {"quality_weighted", weighted},
                         {"probes", r.probes},
                         {"mated", r.mated},
                         {"non_mated", r.non_mated},
                         {"ranks", r.ranks},
                         {"cmc", r.cmc},
                         {"open_set", open}});
    }
  }
  std::printf("(n/a: fewer than 1 / FPIR non-mated probes; CMC over mated probes)\n");
  write_json(opt.ijb.json, {{"type", opt.ijb.type}, {"results", results}});
  return kExitOk;
}

}  // namespace

Runner add_ijb_commands(CLI::App& evalc) {
  auto verify_opt = std::make_shared<IjbVerifyOptions>();
  auto* verify = evalc.add_subcommand(
      "ijb", "IJB-B/C 1:1 template verification as MagFace's eval_ijb.py: TAR at FAR, AUC, ROC");
  add_ijb_options(*verify, verify_opt->ijb);
  verify->add_flag("--quality-weighted", verify_opt->quality_weighted,
                   "Leave media features unnormalised, so that their magnitude (MagFace quality) "
                   "weighs them (eval_ijb.py --magface_qlt 1)");
  verify->add_option("--plot", verify_opt->plot, "Draw the ROC (PNG)");

  auto identify_opt = std::make_shared<IjbIdentifyOptions>();
  auto* identify = evalc.add_subcommand(
      "ijb-identify",
      "IJB 1:N identification: CMC rank-1/5/10 and TPIR at FPIR, with and without quality "
      "weighting");
  add_ijb_options(*identify, identify_opt->ijb);
  identify
      ->add_option("--gallery", identify_opt->galleries,
                   "Gallery lists (CSV: TEMPLATE_ID,SUBJECT_ID,...; default ijbc_1N_gallery_G1.csv "
                   "and G2, or ijbb_1N_gallery_S1/S2)")
      ->delimiter(',');
  identify->add_option("--probes", identify_opt->probes,
                       "Probe list (default ijb{b,c}_1N_probe_mixed.csv)");
  return [=]() -> int {
    if (verify->parsed()) return run_eval_ijb(*verify_opt);
    if (identify->parsed()) return run_eval_ijb_identify(*identify_opt);
    return -1;
  };
}

}  // namespace facemag::cli
