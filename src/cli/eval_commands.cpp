// `facemag eval pairs|erc`, `facemag calibrate`, `facemag verify`: how good a model is on
// labelled pairs, which threshold to use, and the decision for one pair of faces.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/io/feature_list.hpp"
#include "facemag/io/image.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/io/verification_bin.hpp"

namespace facemag::cli {
namespace {

// Where labelled pairs come from: features already computed, or images a model embeds.
struct PairSource {
  std::string features;    // .npy matrix or MagFace feature list (text: name v1 ... vD)
  std::string labels;      // .npy or text (last field of each line: 1 same, 0 different)
  std::string pair_index;  // .npy P x 2 rows of `features` (default: rows 2p, 2p+1)
  std::string bin;         // insightface verification .bin
  std::string pair_list;   // text: path_a path_b is_same
  std::string lfw_pairs;   // LFW's own pairs.txt (names and photo numbers)
  std::string root;        // folder of the photos of --lfw-pairs (<root>/<name>/<name>_0001.jpg)
  std::string save_features;
  ModelOptions model;
};

void add_pair_source_options(CLI::App& cmd, PairSource& src) {
  auto* group = cmd.add_option_group("pairs", "Where the labelled pairs come from (one of)");
  group->add_option("--features", src.features,
                    "Feature matrix (.npy) or MagFace feature list (text, 'name v1 ... vD')");
  group->add_option("--bin", src.bin, "insightface verification set (lfw.bin, cfp_fp.bin ...)");
  group->add_option("--pair-list", src.pair_list,
                    "Image pairs, one per line: 'path_a path_b is_same' (1 or 0)");
  group->add_option("--lfw-pairs", src.lfw_pairs,
                    "LFW's pairs.txt: 'name n1 n2' (same) and 'name1 n1 name2 n2' (different), "
                    "with or without its header line");
  group->require_option(1);
  cmd.add_option("--root", src.root,
                 "With --lfw-pairs: the folder holding <name>/<name>_0001.jpg (default: the "
                 "pairs file's folder)");
  cmd.add_option("--labels", src.labels,
                 "With --features: is-same labels (.npy, or text whose lines end in 1 or 0)");
  cmd.add_option("--pair-index", src.pair_index,
                 "With --features: P x 2 .npy of row numbers (default rows 2p and 2p+1)");
  cmd.add_option("--save-features", src.save_features,
                 "Write the pairs' features (F.npy, rows 2p and 2p+1) and labels (F_issame.npy)");
  add_model_options(cmd, src.model, "iresnet100");
  add_face_choice_options(cmd, src.model);
}

bool parse_label(const std::string& field, bool* same) {
  if (field == "1" || field == "True" || field == "true") return *same = true, true;
  if (field == "0" || field == "False" || field == "false") return *same = false, true;
  return false;
}

std::vector<std::string> split_fields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  return fields;
}

// Non-blank lines of a text file with their 1-based line numbers.
std::vector<std::pair<std::size_t, std::string>> text_lines(const std::string& path) {
  std::ifstream in(path);
  if (!std::filesystem::exists(path)) throw InvalidInput(path + ": no such file");
  if (!in) throw InvalidInput(path + ": cannot open");
  std::vector<std::pair<std::size_t, std::string>> lines;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r\n") != std::string::npos) lines.emplace_back(number, line);
  }
  return lines;
}

bool is_npy(const std::string& path) { return std::filesystem::path(path).extension() == ".npy"; }

torch::Tensor read_labels(const std::string& path) {
  if (is_npy(path)) return io::read_npy(path);
  std::vector<std::int64_t> labels;
  for (const auto& [number, line] : text_lines(path)) {
    const auto fields = split_fields(line);
    bool same = false;
    if (!parse_label(fields.back(), &same))
      throw InvalidInput(path + ":" + std::to_string(number) + ": the last field '" +
                         fields.back() + "' is not a same/different label (1 or 0)");
    labels.push_back(same ? 1 : 0);
  }
  return torch::tensor(labels, torch::kInt64);
}

// MagFace's feature list; with pairs by line, an odd number of lines cannot form pairs.
torch::Tensor read_feature_list(const std::string& path, bool pairs_by_line) {
  auto list = io::read_feature_list(path);
  if (pairs_by_line && list.names.size() % 2 != 0)
    throw InvalidInput(path + ": " + std::to_string(list.names.size()) +
                       " lines, an odd number: lines 2p and 2p+1 must form pair p");
  return list.features;
}

struct LoadedPairs {
  eval::FeaturePairs pairs;
  std::vector<double> face_quality;  // raw norm of every face used
  std::string description;
  std::string model;        // manifest name when a model embedded the faces
  std::size_t dropped = 0;  // pairs without a face in one image
  std::string face_choice;  // how faces were chosen in photos with several (photo sources)
  // Position of each kept pair in the source, and the pairs per fold of LFW's protocol there
  // (pairs.txt's header, else LFW's 600).
  std::vector<std::size_t> source_index;
  std::size_t fold_size = 600;
};

// Labelled pairs of images; images are read on demand by `load` (which may throw InvalidInput:
// that image's pairs are then left out, as pairs without a face).
struct ImagePairs {
  std::vector<std::string> names;
  std::function<cv::Mat(std::size_t)> load;
  std::vector<std::array<std::size_t, 2>> pairs;
  std::vector<bool> is_same;
};

// Embeds labelled image pairs; pairs where a face is missing are dropped (and counted).
LoadedPairs embed_image_pairs(const ImagePairs& input, const ModelOptions& model) {
  const FaceEncoder encoder(model);
  const auto& names = input.names;
  std::vector<FaceEncoder::Face> faces;
  {
    ProgressBar progress(names.size(), "embed");
    const std::size_t chunk = 256;
    for (std::size_t start = 0; start < names.size(); start += chunk) {
      const std::size_t end = std::min(names.size(), start + chunk);
      std::vector<cv::Mat> images;
      std::vector<std::string> chunk_names;
      std::vector<std::size_t> where;
      for (std::size_t i = start; i < end; ++i) {
        FaceEncoder::Face face;
        try {
          images.push_back(input.load(i));
          chunk_names.push_back(names[i]);
          where.push_back(faces.size());
        } catch (const InvalidInput& e) {
          report_skipped(names[i], e.what());
          face.error = e.what();
        }
        faces.push_back(std::move(face));
      }
      auto part = encoder.encode(images, chunk_names);
      for (std::size_t k = 0; k < part.size(); ++k) faces[where[k]] = std::move(part[k]);
      progress.advance(end - start);
    }
  }
  LoadedPairs out;
  out.model = encoder.manifest().name;
  out.face_choice = face_choice_summary(faces, encoder.keep(), model.landmarks);
  std::vector<float> rows;
  std::vector<std::int64_t> labels;
  std::int64_t dim = encoder.embedder().output_size();
  for (std::size_t p = 0; p < input.pairs.size(); ++p) {
    const auto& a = faces[input.pairs[p][0]];
    const auto& b = faces[input.pairs[p][1]];
    if (!a.embedding || !b.embedding) {
      spdlog::warn("pair {} left out: {}", p + 1, (!a.embedding ? a : b).error);
      ++out.dropped;
      continue;
    }
    for (const auto* f : {&a, &b}) {
      rows.insert(rows.end(), f->embedding->raw.begin(), f->embedding->raw.end());
      out.face_quality.push_back(f->embedding->magnitude);
    }
    labels.push_back(input.is_same[p] ? 1 : 0);
    out.source_index.push_back(p);
  }
  if (labels.empty()) throw InvalidInput("no pair has a face in both images");
  const auto features =
      torch::from_blob(rows.data(), {static_cast<std::int64_t>(rows.size()) / dim, dim},
                       torch::kFloat32)
          .clone();
  out.pairs = eval::make_feature_pairs(features, torch::tensor(labels, torch::kInt64));
  return out;
}

// Pairs of image files; each file is read once, when its chunk is embedded.
struct ImageFilePairs {
  ImagePairs pairs;
  std::map<std::string, std::size_t> index;  // path -> image number

  // `where` (file:line) names the pair in the error for a photo that does not exist.
  void add(const std::filesystem::path& a, const std::filesystem::path& b, bool same,
           const std::string& where) {
    std::array<std::size_t, 2> pair{};
    for (int side = 0; side < 2; ++side) {
      const auto path = (side == 0 ? a : b).string();
      auto [it, added] = index.emplace(path, pairs.names.size());
      if (added) {
        if (!std::filesystem::exists(path))
          throw InvalidInput(where + ": " + path + ": no such file");
        pairs.names.push_back(path);
      }
      pair[side] = it->second;
    }
    pairs.pairs.push_back(pair);
    pairs.is_same.push_back(same);
  }
  ImagePairs finish() {
    auto names = pairs.names;
    pairs.load = [names](std::size_t i) { return io::read_image_bgr(names[i]); };
    return std::move(pairs);
  }
};

// LFW's pairs.txt: an optional header "folds<TAB>pairs-per-side", then "name n1 n2" (same
// person) and "name1 n1 name2 n2" (different) lines; photo n of a name is
// <root>/<name>/<name>_<n as 4 digits>.jpg. Returns the pairs per fold (header, else 600).
std::size_t read_lfw_pairs(const std::string& file, const std::filesystem::path& root,
                           ImageFilePairs& out) {
  std::size_t fold_size = 600;
  const auto photo = [&](const std::string& name, const std::string& number,
                         const std::string& where) {
    int n = 0;
    try {
      std::size_t used = 0;
      n = std::stoi(number, &used);
      if (used != number.size() || n < 1) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw InvalidInput(where + ": '" + number + "' is not a photo number");
    }
    char file_name[32];
    std::snprintf(file_name, sizeof file_name, "_%04d.jpg", n);
    return root / name / (name + file_name);
  };
  bool first = true;
  for (const auto& [number, line] : text_lines(file)) {
    const auto fields = split_fields(line);
    const std::string where = file + ":" + std::to_string(number);
    if (first && fields.size() == 2) {  // header: folds and pairs of each kind per fold
      first = false;
      try {
        fold_size = 2 * static_cast<std::size_t>(std::stoul(fields[1]));
        continue;
      } catch (const std::exception&) {
        throw InvalidInput(where + ": expected LFW's header 'folds pairs' or a pair");
      }
    }
    first = false;
    if (fields.size() == 3) {
      out.add(photo(fields[0], fields[1], where), photo(fields[0], fields[2], where), true, where);
    } else if (fields.size() == 4) {
      out.add(photo(fields[0], fields[1], where), photo(fields[2], fields[3], where), false, where);
    } else {
      throw InvalidInput(where + ": expected 'name n1 n2' or 'name1 n1 name2 n2', got '" + line +
                         "'");
    }
  }
  if (out.pairs.pairs.empty()) throw InvalidInput(file + ": no pairs");
  if (fold_size == 0) throw InvalidInput(file + ": the header gives 0 pairs per fold");
  return fold_size;
}

LoadedPairs load_pairs(const PairSource& src) {
  LoadedPairs out;
  if (!src.features.empty()) {
    if (src.labels.empty()) throw InvalidInput("--features needs --labels");
    const bool by_line = src.pair_index.empty();
    const auto features = is_npy(src.features) ? io::read_npy(src.features)
                                               : read_feature_list(src.features, by_line);
    const auto labels = read_labels(src.labels);
    const auto index = by_line ? torch::Tensor() : io::read_npy(src.pair_index);
    try {
      out.pairs = eval::make_feature_pairs(features, labels, index);
    } catch (const InvalidInput& e) {
      throw InvalidInput(src.features + ": " + e.what());
    }
    for (std::size_t p = 0; p < out.pairs.size(); ++p) out.source_index.push_back(p);
    const auto norms = features.to(torch::kFloat64).norm(2, 1).contiguous();
    out.face_quality.assign(norms.data_ptr<double>(), norms.data_ptr<double>() + norms.numel());
    out.description = src.features;
  } else if (!src.bin.empty()) {
    const auto bin = std::make_shared<io::VerificationBin>(io::read_verification_bin(src.bin));
    ImagePairs input;
    for (std::size_t i = 0; i < bin->images.size(); ++i)
      input.names.push_back(src.bin + "[image " + std::to_string(i) + "]");
    input.load = [bin, names = input.names](std::size_t i) {
      return io::decode_image_bgr(bin->images[i], names[i]);
    };
    for (std::size_t p = 0; p < bin->is_same.size(); ++p) input.pairs.push_back({2 * p, 2 * p + 1});
    input.is_same = bin->is_same;
    out = embed_image_pairs(input, src.model);
    out.description = src.bin;
  } else if (!src.lfw_pairs.empty()) {
    const auto root = src.root.empty() ? std::filesystem::path(src.lfw_pairs).parent_path()
                                       : std::filesystem::path(src.root);
    ImageFilePairs files;
    const std::size_t fold_size = read_lfw_pairs(src.lfw_pairs, root, files);
    out = embed_image_pairs(files.finish(), src.model);
    out.fold_size = fold_size;
    out.description = src.lfw_pairs;
  } else {
    const auto base = std::filesystem::path(src.pair_list).parent_path();
    ImageFilePairs files;
    for (const auto& [number, line] : text_lines(src.pair_list)) {
      const auto fields = split_fields(line);
      bool same = false;
      if (fields.size() != 3 || !parse_label(fields[2], &same))
        throw InvalidInput(src.pair_list + ":" + std::to_string(number) +
                           ": expected 'path_a path_b is_same' (is_same 1 or 0), got '" + line +
                           "'");
      std::filesystem::path a = fields[0], b = fields[1];
      files.add(a.is_relative() ? base / a : a, b.is_relative() ? base / b : b, same,
                src.pair_list + ":" + std::to_string(number));
    }
    if (files.pairs.pairs.empty()) throw InvalidInput(src.pair_list + ": no pairs");
    out = embed_image_pairs(files.finish(), src.model);
    out.description = src.pair_list;
  }
  if (!out.face_choice.empty()) std::printf("%s\n", out.face_choice.c_str());
  if (!src.save_features.empty()) {
    const auto& p = out.pairs;
    std::vector<float> rows;
    for (std::size_t i = 0; i < p.size(); ++i) {
      rows.insert(rows.end(), p.a(i).begin(), p.a(i).end());
      rows.insert(rows.end(), p.b(i).begin(), p.b(i).end());
    }
    const auto n = static_cast<std::int64_t>(p.size());
    io::write_npy(
        src.save_features,
        torch::from_blob(rows.data(), {2 * n, static_cast<std::int64_t>(p.dim)}, torch::kFloat32));
    std::vector<std::int64_t> labels(p.is_same.begin(), p.is_same.end());
    auto label_path = std::filesystem::path(src.save_features);
    label_path.replace_filename(label_path.stem().string() + "_issame.npy");
    io::write_npy(label_path, torch::tensor(labels, torch::kInt64));
    spdlog::info("features written to {} and {}", src.save_features, label_path.string());
  }
  return out;
}

std::string pair_counts(const eval::FeaturePairs& pairs) {
  const auto same = std::count(pairs.is_same.begin(), pairs.is_same.end(), true);
  return std::to_string(pairs.size()) + " pairs (" + std::to_string(same) + " same, " +
         std::to_string(pairs.size() - same) + " different)";
}

std::string fmr_label(double fmr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0e", fmr);
  return buf;
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw InvalidInput(path + ": cannot write");
}

// ---- eval pairs ----

struct EvalPairsOptions {
  PairSource source;
  std::string protocol = "magface";
  std::vector<double> published;  // --published: per-fold accuracies (%) to print beside ours
  int folds = 10;
  std::vector<double> fmrs{1e-1, 1e-2, 1e-3, 1e-4};
  std::string json;
};

nlohmann::json roc_json(const eval::RocSummary& roc) {
  nlohmann::json tar = nlohmann::json::array();
  for (const auto& op : roc.tar_at_fmr)
    tar.push_back({{"fmr", op.fmr},
                   {"tar", op.tar},
                   {"threshold", op.threshold},
                   {"false_matches", op.false_matches}});
  return {{"auc", roc.auc},
          {"eer", roc.eer},
          {"eer_threshold", roc.eer_threshold},
          {"best_accuracy", roc.best_accuracy},
          {"best_threshold", roc.best_threshold},
          {"tar_at_fmr", tar}};
}

// LFW's protocol over the source's pairs in blocks of fold_size; printed as published LFW tables
// print it ("fold accuracy", then "AVE"), optionally beside published per-fold accuracies.
nlohmann::json run_lfw_protocol(const LoadedPairs& loaded, const std::vector<double>& published) {
  std::vector<int> fold_of_pair;
  for (const std::size_t i : loaded.source_index)
    fold_of_pair.push_back(static_cast<int>(i / loaded.fold_size));
  const auto lfw = eval::lfw_protocol(loaded.pairs, fold_of_pair);
  std::printf(
      "LFW protocol (%zu folds of %zu pairs in file order; per fold: the other folds' mean face "
      "subtracted, cosine, threshold best on the other folds)\n",
      lfw.folds.size(), loaded.fold_size);
  std::printf("fold  accuracy  threshold  pairs%s\n", published.empty() ? "" : "  published");
  nlohmann::json folds = nlohmann::json::array();
  for (const auto& f : lfw.folds) {
    std::printf("%-4d  %8.2f  %9.4f  %5zu", f.fold + 1, 100 * f.accuracy, f.threshold, f.pairs);
    if (static_cast<std::size_t>(f.fold) < published.size())
      std::printf("  %9.2f", published[static_cast<std::size_t>(f.fold)]);
    std::printf("\n");
    folds.push_back({{"fold", f.fold + 1},
                     {"pairs", f.pairs},
                     {"threshold", f.threshold},
                     {"accuracy", f.accuracy}});
  }
  std::printf("AVE   %8.2f  (std %.2f)", 100 * lfw.mean_accuracy, 100 * lfw.std_accuracy);
  if (!published.empty()) {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& f : lfw.folds) {
      if (static_cast<std::size_t>(f.fold) < published.size()) {
        sum += published[static_cast<std::size_t>(f.fold)];
        ++n;
      }
    }
    if (n) std::printf("  published %.2f", sum / double(n));
  }
  std::printf("\n");
  return {{"folds", folds}, {"mean", lfw.mean_accuracy}, {"std", lfw.std_accuracy}};
}

int run_eval_pairs(const EvalPairsOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto similarity = eval::pair_similarities(pairs);
  const auto roc = eval::roc_summary(similarity, pairs.is_same, opt.fmrs);

  std::printf("%s: %s%s\n", loaded.description.c_str(), pair_counts(pairs).c_str(),
              loaded.model.empty() ? "" : (", model " + loaded.model).c_str());
  nlohmann::json result{{"source", loaded.description},
                        {"model", loaded.model},
                        {"pairs", pairs.size()},
                        {"dropped_pairs", loaded.dropped},
                        {"face_choice", loaded.face_choice}};
  if (opt.protocol == "lfw") {
    result["lfw"] = run_lfw_protocol(loaded, opt.published);
  } else {
    eval::KFoldOptions kopt;
    kopt.folds = opt.folds;
    const auto kfold = eval::kfold_verification(pairs, kopt);
    std::printf(
        "%d-fold accuracy (MagFace eval_1v1: angular distance, training-fold mean subtracted)\n",
        opt.folds);
    std::printf("    Accuracy: %2.5f+-%2.5f\n", kfold.mean_accuracy, kfold.std_accuracy);
    std::printf("    folds:");
    for (const auto& f : kfold.folds) std::printf(" %.4f", f.accuracy);
    std::printf("\n");
    nlohmann::json folds = nlohmann::json::array();
    for (const auto& f : kfold.folds)
      folds.push_back({{"fold", f.fold},
                       {"test_pairs", {f.test_begin, f.test_end - 1}},
                       {"best_threshold_index", f.best_threshold_index},
                       {"best_threshold", f.best_threshold},
                       {"train_accuracy", f.train_accuracy},
                       {"accuracy", f.accuracy}});
    nlohmann::json accuracies = nlohmann::json::array();
    for (const auto& f : kfold.folds) accuracies.push_back(f.accuracy);
    result["kfold"] = {{"folds", opt.folds},
                       {"fold_accuracies", accuracies},
                       {"mean", kfold.mean_accuracy},
                       {"std", kfold.std_accuracy},
                       {"per_fold", folds},
                       {"thresholds", kfold.thresholds},
                       {"tpr", kfold.tpr},
                       {"fpr", kfold.fpr}};
  }
  std::printf("all pairs, cosine similarity (same when above the threshold):\n");
  std::printf("    best accuracy %.5f at %.4f; AUC %.6f; EER %.5f at %.4f\n", roc.best_accuracy,
              roc.best_threshold, roc.auc, roc.eer, roc.eer_threshold);
  for (double fmr : opt.fmrs) {
    const auto it = std::find_if(roc.tar_at_fmr.begin(), roc.tar_at_fmr.end(),
                                 [&](const auto& op) { return op.fmr == fmr; });
    if (it == roc.tar_at_fmr.end()) {
      std::printf("    TAR@FMR=%s: not measurable (%zu different pairs, needs %.0f)\n",
                  fmr_label(fmr).c_str(), roc.impostor, std::ceil(1 / fmr));
    } else {
      std::printf("    TAR@FMR=%s: %.5f (threshold %.4f)\n", fmr_label(fmr).c_str(), it->tar,
                  it->threshold);
    }
  }
  if (loaded.dropped) std::printf("(%zu pair(s) left out: no face found)\n", loaded.dropped);
  result["roc"] = roc_json(roc);
  write_json(opt.json, result);
  return kExitOk;
}

// ---- eval erc ----

struct EvalErcOptions {
  PairSource source;
  std::vector<double> fmrs{1e-3};
  std::string plot;
  std::string json;
  int random_repeats = 20;
};

int run_eval_erc(const EvalErcOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto rates = eval::default_reject_rates();
  const auto steps = eval::error_versus_reject(pairs, eval::pair_qualities(pairs), rates);
  std::vector<std::vector<double>> random;
  for (double fmr : opt.fmrs)
    random.push_back(eval::random_reject_fnmr(pairs, rates, fmr, opt.random_repeats));

  std::printf("%s: %s; pairs ranked by the smaller magnitude of their two faces\n",
              loaded.description.c_str(), pair_counts(pairs).c_str());
  std::printf("reject  kept ");
  for (double fmr : opt.fmrs) std::printf(" FNMR@FMR=%s (random)", fmr_label(fmr).c_str());
  std::printf("\n");
  nlohmann::json jsteps = nlohmann::json::array();
  for (std::size_t s = 0; s < steps.size(); ++s) {
    std::printf("%5.0f%%  %5zu", 100 * steps[s].reject_rate, steps[s].kept);
    nlohmann::json points = nlohmann::json::array();
    for (std::size_t k = 0; k < opt.fmrs.size(); ++k) {
      const auto* p = steps[s].at(opt.fmrs[k]);
      if (p) {
        std::printf("  %17.4f (%.4f)", p->fnmr, random[k][s]);
        points.push_back(
            {{"fmr", opt.fmrs[k]},
             {"fnmr", p->fnmr},
             {"threshold", p->threshold},
             {"negative_index", p->negative_index},
             {"random_fnmr",
              std::isnan(random[k][s]) ? nlohmann::json() : nlohmann::json(random[k][s])}});
      } else {
        std::printf("  %17s         ", "n/a");
      }
    }
    std::printf("\n");
    jsteps.push_back({{"reject_rate", steps[s].reject_rate},
                      {"rejected", steps[s].rejected},
                      {"kept", steps[s].kept},
                      {"kept_positive", steps[s].kept_positive},
                      {"kept_negative", steps[s].kept_negative},
                      {"points", points}});
  }
  std::printf("(n/a: too few different pairs left to measure that FMR)\n");
  // How well the quality predicts the genuine score, and the curve's mean over 0-40 % rejected
  // (a smaller area: a better quality measure).
  const auto similarity = eval::pair_similarities(pairs);
  const auto quality = eval::pair_qualities(pairs);
  std::vector<double> genuine_quality, genuine_similarity;
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    if (!pairs.is_same[p]) continue;
    genuine_quality.push_back(quality[p]);
    genuine_similarity.push_back(similarity[p]);
  }
  const double rho = eval::spearman(genuine_quality, genuine_similarity);
  std::printf("Spearman (smaller magnitude, genuine similarity): %.3f\n", rho);
  nlohmann::json areas = nlohmann::json::object();
  for (double fmr : opt.fmrs) {
    double sum = 0;
    int count = 0;
    for (const auto& step : steps) {
      const auto* p = step.at(fmr);
      if (step.reject_rate > 0.4 + 1e-9 || !p) continue;
      sum += p->fnmr;
      ++count;
    }
    if (count == 0) continue;
    areas[fmr_label(fmr)] = sum / count;
    std::printf("mean FNMR@FMR=%s over 0-40%% rejected: %.4f\n", fmr_label(fmr).c_str(),
                sum / count);
  }
  write_json(opt.json,
             {{"source", loaded.description},
              {"pairs", pairs.size()},
              {"steps", jsteps},
              {"spearman_genuine", std::isnan(rho) ? nlohmann::json() : nlohmann::json(rho)},
              {"mean_fnmr_0_40", areas}});

  if (!opt.plot.empty()) {
    std::vector<plot::Series> series;
    for (std::size_t k = 0; k < opt.fmrs.size(); ++k) {
      plot::Series quality{
          "magnitude, FMR " + fmr_label(opt.fmrs[k]), {}, {}, plot::category_color(k), false};
      plot::Series baseline{
          "random, FMR " + fmr_label(opt.fmrs[k]), {}, {}, plot::category_color(k), true};
      for (std::size_t s = 0; s < steps.size(); ++s) {
        const auto* p = steps[s].at(opt.fmrs[k]);
        quality.x.push_back(100 * steps[s].reject_rate);
        quality.y.push_back(p ? p->fnmr : std::nan(""));
        baseline.x.push_back(100 * steps[s].reject_rate);
        baseline.y.push_back(random[k][s]);
      }
      series.push_back(quality);
      series.push_back(baseline);
    }
    plot::write_png(
        opt.plot,
        plot::line_chart(series, {"Error versus reject: " +
                                      std::filesystem::path(loaded.description).filename().string(),
                                  "pairs rejected, lowest quality first [%]", "FNMR"}));
    spdlog::info("plot written to {}", opt.plot);
  }
  return kExitOk;
}

// ---- calibrate ----

struct CalibrateOptions {
  PairSource source;
  std::vector<double> fmrs{1e-2, 1e-3, 1e-4, 1e-5};
  double decision_fmr = 1e-3;
  double reject_rate = 0.05;
  bool save = false;
  std::string manifest_out;
};

int run_calibrate(const CalibrateOptions& opt) {
  const auto loaded = load_pairs(opt.source);
  const auto& pairs = loaded.pairs;
  const auto similarity = eval::pair_similarities(pairs);
  const std::filesystem::path weights(opt.source.model.weights);
  ModelManifest manifest = resolve_manifest(opt.source.model, weights);
  manifest.fmr_thresholds.clear();

  std::printf("%s: %s\n", loaded.description.c_str(), pair_counts(pairs).c_str());
  std::printf("cosine similarity thresholds (same person when above):\n");
  std::optional<double> decision;
  for (double fmr : opt.fmrs) {
    const auto op = eval::operating_point(similarity, pairs.is_same, fmr);
    if (!op) {
      std::printf("  FMR %s: not measurable here (needs >= %.0f different pairs)\n",
                  fmr_label(fmr).c_str(), std::ceil(1 / fmr));
      continue;
    }
    std::printf("  FMR %s: %.4f  (TAR %.4f, %zu false match(es))\n", fmr_label(fmr).c_str(),
                op->threshold, op->tar, op->false_matches);
    manifest.fmr_thresholds.push_back({fmr, op->threshold});
    if (fmr == opt.decision_fmr) decision = op->threshold;
  }
  const double q = eval::quality_threshold(loaded.face_quality, opt.reject_rate);
  std::printf("quality threshold rejecting %.0f%% of the faces: magnitude %.4f\n",
              100 * opt.reject_rate, q);
  const std::string on = std::filesystem::path(loaded.description).filename().string() + " (" +
                         pair_counts(pairs) + ")";
  manifest.quality_threshold = q;
  manifest.quality_calibration =
      "rejects " + std::to_string(100 * opt.reject_rate).substr(0, 4) + "% of the faces of " + on;
  if (decision) {
    manifest.same_person_threshold = *decision;
    manifest.threshold_calibration = "FMR " + fmr_label(opt.decision_fmr) + " on " + on;
  } else {
    const auto roc = eval::roc_summary(similarity, pairs.is_same, {});
    manifest.same_person_threshold = roc.best_threshold;
    manifest.threshold_calibration =
        "best accuracy on " + on + " (FMR " + fmr_label(opt.decision_fmr) + " not measurable)";
    spdlog::warn(
        "FMR {} is not measurable on these pairs: the decision threshold is the "
        "best-accuracy one",
        fmr_label(opt.decision_fmr));
  }
  std::printf("decision threshold: %.4f (%s)\n", manifest.same_person_threshold,
              manifest.threshold_calibration.c_str());
  if (opt.save || !opt.manifest_out.empty()) {
    std::filesystem::path path = opt.manifest_out;
    if (path.empty()) {
      if (weights.empty())
        throw InvalidInput(
            "--save needs --weights (the manifest goes beside them) or --manifest-out");
      path = manifest_path_for(weights);
    }
    save_manifest(path, manifest);
    std::printf("manifest written to %s\n", path.string().c_str());
  }
  return kExitOk;
}

// ---- verify ----

struct VerifyOptions {
  std::string a, b;
  ModelOptions model;
  double threshold = -2;  // default: the manifest's
  double fmr = 0;         // pick the manifest's calibrated threshold at this FMR
  bool json = false;
};

int run_verify(const VerifyOptions& opt) {
  const FaceEncoder encoder(opt.model);
  const auto& m = encoder.manifest();
  const auto faces =
      encoder.encode({io::read_image_bgr(opt.a), io::read_image_bgr(opt.b)}, {opt.a, opt.b});
  for (const auto& f : faces) {
    if (!f.embedding) throw InvalidInput(f.error);
  }
  double threshold = m.same_person_threshold;
  std::string basis = m.threshold_calibration;
  if (opt.fmr > 0) {
    const auto it =
        std::find_if(m.fmr_thresholds.begin(), m.fmr_thresholds.end(),
                     [&](const auto& t) { return std::abs(t.fmr - opt.fmr) <= 1e-9 * opt.fmr; });
    if (it == m.fmr_thresholds.end())
      throw InvalidInput(m.name + ": no threshold calibrated for FMR " + fmr_label(opt.fmr) +
                         " (run facemag calibrate --save)");
    threshold = it->threshold;
    basis = "FMR " + fmr_label(opt.fmr) + " (calibrated)";
  }
  if (opt.threshold > -2) {
    threshold = opt.threshold;
    basis = "given";
  }
  std::vector<double> a(faces[0].embedding->raw.begin(), faces[0].embedding->raw.end());
  std::vector<double> b(faces[1].embedding->raw.begin(), faces[1].embedding->raw.end());
  const double similarity = eval::cosine_similarity(a, b);
  const double qa = faces[0].embedding->magnitude, qb = faces[1].embedding->magnitude;
  const bool low_quality = m.quality_threshold > 0 && std::min(qa, qb) < m.quality_threshold;
  const bool same = similarity > threshold;
  const std::string decision = low_quality ? "undecided" : same ? "same" : "different";
  if (opt.json) {
    std::cout << nlohmann::json{{"a", opt.a},
                                {"b", opt.b},
                                {"model", m.name},
                                {"similarity", similarity},
                                {"threshold", threshold},
                                {"threshold_basis", basis},
                                {"decision", decision},
                                {"quality_a", qa},
                                {"quality_b", qb},
                                {"quality_threshold", m.quality_threshold}}
              << "\n";
    return kExitOk;
  }
  std::printf("similarity %.4f -> %s person (threshold %.4f: %s)\n", similarity,
              same ? "same" : "different", threshold, basis.c_str());
  std::printf("quality    %.2f  %s\n", qa, opt.a.c_str());
  std::printf("quality    %.2f  %s\n", qb, opt.b.c_str());
  if (!m.magnitude_is_quality)
    std::printf("(%s is not MagFace-trained: its magnitude is not a calibrated quality)\n",
                m.name.c_str());
  if (low_quality)
    std::printf("undecided: a face is below the quality threshold %.2f (%s)\n", m.quality_threshold,
                m.quality_calibration.c_str());
  return kExitOk;
}

}  // namespace

Runner add_eval_commands(CLI::App& app) {
  auto* evalc = app.add_subcommand(
      "eval", "Verification accuracy, error versus reject, IJB templates, clustering quality");
  evalc->require_subcommand(1);

  const Runner ijb = add_ijb_commands(*evalc);
  const Runner cluster = add_eval_cluster_command(*evalc);
  const Runner identify = add_eval_identify_command(*evalc);
  auto pairs_opt = std::make_shared<EvalPairsOptions>();
  auto* pairs = evalc->add_subcommand(
      "pairs", "10-fold accuracy as MagFace's eval_1v1.py, ROC (TAR@FMR, EER, AUC)");
  add_pair_source_options(*pairs, pairs_opt->source);
  pairs
      ->add_option("--protocol", pairs_opt->protocol,
                   "magface: MagFace eval_1v1.py's 10 folds of consecutive pairs; lfw: LFW's own "
                   "folds (blocks of 600 pairs in file order, or as pairs.txt's header says) "
                   "scored as the published LFW tables (mean of the other folds subtracted, "
                   "cosine, threshold chosen on the other folds)")
      ->check(CLI::IsMember({"magface", "lfw"}))
      ->capture_default_str();
  pairs
      ->add_option("--published", pairs_opt->published,
                   "With --protocol lfw: published per-fold accuracies (%) to print beside ours")
      ->delimiter(',');
  pairs->add_option("--folds", pairs_opt->folds, "Folds of --protocol magface")
      ->capture_default_str();
  pairs->add_option("--fmr", pairs_opt->fmrs, "False match rates for TAR@FMR")
      ->delimiter(',')
      ->capture_default_str();
  pairs->add_option("--json", pairs_opt->json, "Write every number (folds, ROC) here");

  auto erc_opt = std::make_shared<EvalErcOptions>();
  auto* erc = evalc->add_subcommand(
      "erc", "Error versus reject: FNMR as the lowest-quality pairs are dropped");
  add_pair_source_options(*erc, erc_opt->source);
  erc->add_option("--fmr", erc_opt->fmrs, "False match rates (1e-1, 1e-2, ... decades)")
      ->delimiter(',')
      ->capture_default_str();
  erc->add_option("--plot", erc_opt->plot, "Draw the curves (PNG)");
  erc->add_option("--json", erc_opt->json, "Write every step here");
  erc->add_option("--random-repeats", erc_opt->random_repeats,
                  "Shuffles averaged for the random-rejection baseline")
      ->capture_default_str();

  auto cal_opt = std::make_shared<CalibrateOptions>();
  auto* cal = app.add_subcommand("calibrate",
                                 "Thresholds for target false match rates and a quality threshold");
  add_pair_source_options(*cal, cal_opt->source);
  cal->add_option("--fmr", cal_opt->fmrs, "Target false match rates")
      ->delimiter(',')
      ->capture_default_str();
  cal->add_option("--decision-fmr", cal_opt->decision_fmr,
                  "FMR whose threshold becomes the model's same-person threshold")
      ->capture_default_str();
  cal->add_option("--reject-rate", cal_opt->reject_rate,
                  "Share of faces the quality threshold rejects")
      ->capture_default_str();
  cal->add_flag("--save", cal_opt->save, "Store the result in WEIGHTS.manifest.json");
  cal->add_option("--manifest-out", cal_opt->manifest_out, "Store the result in this manifest");

  auto ver_opt = std::make_shared<VerifyOptions>();
  auto* ver = app.add_subcommand("verify",
                                 "Are two faces the same person? Similarity, decision, qualities");
  ver->add_option("a", ver_opt->a, "First image (photo or aligned face)")->required();
  ver->add_option("b", ver_opt->b, "Second image")->required();
  add_model_options(*ver, ver_opt->model, "iresnet100");
  add_face_choice_options(*ver, ver_opt->model);
  ver->add_option("--threshold", ver_opt->threshold, "Cosine threshold (default: the manifest's)");
  ver->add_option("--fmr", ver_opt->fmr, "Use the manifest's threshold calibrated at this FMR");
  ver->add_flag("--json", ver_opt->json, "One JSON record instead of text");

  return [=]() -> int {
    if (pairs->parsed()) return run_eval_pairs(*pairs_opt);
    if (erc->parsed()) return run_eval_erc(*erc_opt);
    if (cal->parsed()) return run_calibrate(*cal_opt);
    if (ver->parsed()) return run_verify(*ver_opt);
    if (const int code = ijb(); code >= 0) return code;
    if (const int code = identify(); code >= 0) return code;
    return cluster();
  };
}

}  // namespace facemag::cli
