// `facemag eval ijb` (IJB-B/C 1:1 template verification as MagFace's eval_ijb.py) and
// `facemag eval ijb-identify` (the 1:N protocol of insightface's IJB-C lists).
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/json.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/eval/text.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {
namespace {

struct IjbOptions {
  eval::IjbMeta meta;    // --meta: folder with meta/ (or the meta folder itself); --type
  std::string features;  // .npy (row i = face list line i, or matched by its .jsonl index) or text
  std::string images;    // aligned face images, named as in the face list
  ModelOptions model;    // for --images
  std::string json;
};

void add_ijb_options(CLI::App& cmd, IjbOptions& opt) {
  cmd.add_option("--meta", opt.meta.dir,
                 "IJB folder holding meta/ijb{b,c}_face_tid_mid.txt (or that meta folder)")
      ->required();
  cmd.add_option("--type", opt.meta.type, "b (IJB-B) or c (IJB-C)")
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

// Features of every face of the list, row i for line i: read from --features, or the aligned
// faces of --images embedded.
torch::Tensor image_features(const IjbOptions& opt, const eval::IjbFaceList& faces) {
  if (opt.images.empty()) return eval::read_ijb_features(opt.features, faces);
  const Embedder embedder = load_model(opt.model);
  ProgressBar progress(faces.size(), "embed");
  return eval::embed_ijb_faces(faces, opt.images, embedder, opt.model.batch,
                               [&](std::size_t n) { progress.advance(n); });
}

// ---- eval ijb ----

struct IjbVerifyOptions {
  IjbOptions ijb;
  bool quality_weighted = false;
  std::string plot;
};

int run_eval_ijb(const IjbVerifyOptions& opt) {
  configure_runtime(opt.ijb.model.threads);
  const auto v = eval::verify_ijb_templates(
      opt.ijb.meta, [&](const eval::IjbFaceList& faces) { return image_features(opt.ijb, faces); },
      opt.quality_weighted);
  std::fputs(eval::to_text(v).c_str(), stdout);
  eval::write_json(opt.ijb.json, eval::to_json(v));
  if (!opt.plot.empty()) {
    plot::write_png(opt.plot, eval::ijb_roc_chart(v));
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
  const auto& meta = opt.ijb.meta;
  const auto faces = eval::read_ijb_face_list(meta.face_list());
  std::vector<std::filesystem::path> gallery_files(opt.galleries.begin(), opt.galleries.end());
  if (gallery_files.empty()) gallery_files = meta.gallery_lists();
  const auto probe_file =
      opt.probes.empty() ? meta.probe_list() : std::filesystem::path(opt.probes);
  const auto probes = eval::read_ijb_template_subjects(probe_file);
  const auto features = image_features(opt.ijb, faces);

  nlohmann::json results = nlohmann::json::array();
  for (const auto& gallery_file : gallery_files) {
    const auto found = eval::identify_ijb_gallery(features, faces, gallery_file, probes);
    std::fputs(eval::to_text(found, probe_file).c_str(), stdout);
    for (const auto& g : found) results.push_back(eval::to_json(g));
  }
  std::printf("(n/a: fewer than 1 / FPIR non-mated probes; CMC over mated probes)\n");
  eval::write_json(opt.ijb.json, {{"type", meta.type}, {"results", results}});
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
