// `facemag embed` / `facemag quality`: embeddings and MagFace quality of aligned faces.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/io/image.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/pipeline.hpp"
#include "facemag/runtime.hpp"

namespace facemag::cli {
namespace {

struct EmbedOptions {
  std::vector<std::string> inputs;
  ModelOptions model;  // --arch, --weights, --manifest, --flip, detector, --batch, --threads...
  bool aligned = false;
  std::string out;
  std::string npy;
  bool embeddings = false;
  bool sort = false;
  std::string keep = "all";
  std::string landmarks;
  int classify = 0;  // top-k classes to print (0: no classification)
  std::string labels;
};

// One embedded face: an aligned input file, or a face found in a photo.
struct Record {
  std::string path;
  Embedding embedding;
  std::optional<FaceRecord> face;  // set for photos
  nlohmann::json classes;          // --classify: top-k {class, probability[, name]}
};

// Class names for --classify: one per line in class order; for CSV lines the last field; a
// first line naming a column ("name", "Name", "label") is a header and skipped.
std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InvalidInput(path + ": cannot open labels file");
  std::vector<std::string> labels;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    const auto comma = line.rfind(',');
    labels.push_back(comma == std::string::npos ? line : line.substr(comma + 1));
  }
  if (!labels.empty() && (labels[0] == "name" || labels[0] == "Name" || labels[0] == "label")) {
    labels.erase(labels.begin());
  }
  return labels;
}

nlohmann::json to_json(const Record& r, const std::string& model, bool with_vector) {
  nlohmann::json j{{"path", r.path}};
  if (r.face) {
    const auto& d = r.face->detection;
    j["face"] = r.face->index;
    j["box"] = box_json(d);
    j["score"] = d.score;
  }
  j["model"] = model;
  j["quality"] = r.embedding.magnitude;
  if (with_vector) j["embedding"] = r.embedding.raw;
  if (!r.classes.is_null()) j["classes"] = r.classes;
  return j;
}

int run_embed(const EmbedOptions& opt, bool vectors_by_default) {
  const ModelOptions& model = opt.model;
  const auto files = input_files(opt.inputs);
  const Embedder embedder = load_model(model);
  const ModelManifest& manifest = embedder.manifest();
  if (!manifest.magnitude_is_quality) {
    spdlog::warn("{} is not MagFace-trained: its feature magnitude is not a calibrated quality",
                 manifest.name);
  }
  std::optional<MtcnnDetector> detector;
  if (!opt.aligned) detector = load_detector(model.detector);
  const auto landmarks = read_landmarks_option(opt.landmarks);
  const KeepFaces keep = keep_option_value(opt.keep);
  std::size_t several = 0, detected = 0;

  const bool with_vector = vectors_by_default || opt.embeddings;
  if (!opt.npy.empty() && !opt.out.empty() && opt.out != "-" &&
      std::filesystem::weakly_canonical(opt.out) ==
          std::filesystem::weakly_canonical(
              std::filesystem::path(opt.npy).replace_extension(".jsonl")))
    throw InvalidInput("--out " + opt.out + " is where --npy writes its row index: choose another");
  OutputStream out(opt.out);
  std::unique_ptr<std::ofstream> index;
  if (!opt.npy.empty()) {
    auto index_path = std::filesystem::path(opt.npy).replace_extension(".jsonl");
    index = std::make_unique<std::ofstream>(index_path);
    if (!*index) throw InvalidInput(index_path.string() + ": cannot open for writing");
  }

  std::vector<Record> kept;  // for --sort
  std::vector<float> matrix;
  std::size_t failures = 0, faceless = 0;
  const auto emit = [&](Record record) {
    if (index) {
      nlohmann::json row{{"row", matrix.size() / embedder.output_size()}, {"path", record.path}};
      if (record.face) row["face"] = record.face->index;
      row["quality"] = record.embedding.magnitude;
      *index << row << "\n";
      matrix.insert(matrix.end(), record.embedding.raw.begin(), record.embedding.raw.end());
    }
    if (opt.sort) {
      kept.push_back(std::move(record));
    } else {
      out.stream() << to_json(record, manifest.name, with_vector) << "\n";
    }
  };

  // --classify: the top-k classes of each face (probabilities from the softmax of the logits).
  const std::vector<std::string> labels =
      opt.labels.empty() ? std::vector<std::string>{} : read_labels(opt.labels);
  const auto top_classes = [&](const std::vector<cv::Mat>& crops) {
    const auto probs = torch::softmax(embedder.logits(embedder.preprocess(crops)), 1);
    const auto [values, indices] =
        probs.topk(std::min<std::int64_t>(opt.classify, probs.size(1)), 1);
    nlohmann::json out = nlohmann::json::array();
    for (std::int64_t i = 0; i < values.size(0); ++i) {
      nlohmann::json top = nlohmann::json::array();
      for (std::int64_t k = 0; k < values.size(1); ++k) {
        const auto c = indices[i][k].item<std::int64_t>();
        nlohmann::json entry{{"class", c}, {"probability", values[i][k].item<float>()}};
        if (c < static_cast<std::int64_t>(labels.size()))
          entry["name"] = labels[static_cast<std::size_t>(c)];
        top.push_back(entry);
      }
      out.push_back(top);
    }
    return out;
  };
  if (opt.classify > 0 && embedder.manifest().num_classes == 0) {
    throw InvalidInput(manifest.name +
                       ": the checkpoint has no classifier layer (logits.*) for --classify");
  }

  std::optional<FacePipeline> pipeline;
  if (detector) pipeline.emplace(*detector, embedder, to_mtcnn_options(model.detector));
  // What each decoded input of a chunk yields, in input order: records ready at once (aligned
  // from landmarks), or the index of its photo among those detected together.
  struct Slot {
    std::string path;
    std::vector<Record> ready;
    std::optional<std::size_t> photo;
  };

  ProgressBar progress(files.size(), opt.npy.empty() ? "embed" : "embed -> " + opt.npy);
  for (std::size_t start = 0; start < files.size(); start += model.batch) {
    const std::size_t end = std::min(files.size(), start + static_cast<std::size_t>(model.batch));
    std::vector<cv::Mat> faces;  // aligned inputs
    std::vector<std::string> paths;
    std::vector<cv::Mat> photos;  // photos to detect, in one batch
    std::vector<Slot> slots;
    for (std::size_t i = start; i < end; ++i) {
      const std::string path = files[i].path.string();
      try {
        cv::Mat image = io::read_image_bgr(files[i].path);
        const bool aligned_size =
            image.rows == manifest.input_height && image.cols == manifest.input_width;
        if (landmarks && !aligned_size) {
          const Landmarks5* marks = landmarks->find(files[i].path);
          if (!marks) throw InvalidInput("no landmarks in " + landmarks->source().string());
          const Detection face = detection_from_landmarks(*marks);
          const cv::Mat crop = crop_for_model(image, face, manifest);
          Record record{path, embedder.embed({crop})[0], FaceRecord{0, 1, face, {}}, {}};
          record.face->embedding = record.embedding;
          if (opt.classify > 0) record.classes = top_classes({crop})[0];
          Slot slot{path, {}, std::nullopt};
          slot.ready.push_back(std::move(record));
          slots.push_back(std::move(slot));
          continue;
        }
        if (pipeline) {
          slots.push_back({path, {}, photos.size()});
          photos.push_back(std::move(image));
          continue;
        }
        if (!aligned_size) {
          throw InvalidInput(path + ": image is " + std::to_string(image.cols) + "x" +
                             std::to_string(image.rows) + ", an aligned face for " + manifest.name +
                             " is " + std::to_string(manifest.input_width) + "x" +
                             std::to_string(manifest.input_height) +
                             " (leave out --aligned to detect and align faces in photos)");
        }
        faces.push_back(std::move(image));
        paths.push_back(path);
      } catch (const InvalidInput& e) {
        report_skipped(path, e.what());
        ++failures;
      }
    }
    if (!photos.empty()) {
      const auto found = pipeline->process_batch(photos, keep);
      for (auto& slot : slots) {
        if (!slot.photo) continue;
        const auto& records = found[*slot.photo];
        if (records.empty()) {
          spdlog::info("no face in {}", slot.path);
          ++faceless;
        } else {
          ++detected;
          several += records.front().faces_in_photo > 1;
        }
        for (const auto& r : records) {
          Record record{slot.path, r.embedding, r, {}};
          if (opt.classify > 0)
            record.classes =
                top_classes({crop_for_model(photos[*slot.photo], r.detection, manifest)})[0];
          slot.ready.push_back(std::move(record));
        }
      }
    }
    for (auto& slot : slots) {
      for (auto& record : slot.ready) emit(std::move(record));
    }
    const auto embeddings = embedder.embed(faces);
    const auto classes =
        opt.classify > 0 && !faces.empty() ? top_classes(faces) : nlohmann::json::array();
    for (std::size_t i = 0; i < embeddings.size(); ++i) {
      emit(Record{paths[i], embeddings[i], std::nullopt,
                  opt.classify > 0 ? classes[i] : nlohmann::json()});
    }
    out.stream().flush();
    progress.advance(end - start);
  }
  if (opt.sort) {
    // Best quality first, as MagFace's quality listings.
    std::stable_sort(kept.begin(), kept.end(), [](const Record& a, const Record& b) {
      return a.embedding.magnitude > b.embedding.magnitude;
    });
    for (const auto& r : kept) out.stream() << to_json(r, manifest.name, with_vector) << "\n";
  }
  if (!opt.npy.empty()) {
    const auto rows = static_cast<std::int64_t>(matrix.size() / embedder.output_size());
    io::write_npy(opt.npy,
                  torch::from_blob(matrix.data(), {rows, embedder.output_size()}, torch::kFloat32));
  }
  if (faceless) spdlog::info("{} of {} photo(s) had no face", faceless, files.size());
  if (keep != KeepFaces::kAll && detected > 0)
    spdlog::info("{}", face_choice_summary(several, detected, keep));
  return finish_batch(failures, files.size());
}

void add_common_options(CLI::App& cmd, EmbedOptions& opt) {
  cmd.add_option("inputs", opt.inputs, "Image files, folders (recursive) or @list.txt")->required();
  cmd.add_flag("--aligned", opt.aligned,
               "Inputs are already aligned crops of the model's input size (MagFace 112x112, "
               "MobileFaceNet 96x112, FaceNet 160x160; else: detect and align faces in photos)");
  add_keep_all_option(cmd, opt.keep);
  add_landmarks_option(cmd, opt.landmarks);
  cmd.add_option("--classify", opt.classify,
                 "Also print the top-k classes of a model with a classifier head")
      ->capture_default_str();
  cmd.add_option("--labels", opt.labels,
                 "Class names for --classify (one per line, or CSV with the name last)");
  cmd.add_flag("--prewhiten", opt.model.prewhiten,
               "Standardise each face by its own mean and std (facenet-pytorch prewhiten)");
  add_model_options(cmd, opt.model, "iresnet100");
  cmd.add_option("--out", opt.out, "Write JSON Lines here instead of stdout");
  cmd.add_option(
      "--npy", opt.npy,
      "Also write the N x D float32 embedding matrix (.npy) and its row index (.jsonl) beside it");
  cmd.add_flag("--sort", opt.sort, "List faces by quality, best first");
}

}  // namespace

Runner add_embed_commands(CLI::App& app) {
  auto embed_opt = std::make_shared<EmbedOptions>();
  auto quality_opt = std::make_shared<EmbedOptions>();
  auto* embed = app.add_subcommand("embed", "Embeddings (raw vector and its magnitude) of faces");
  add_common_options(*embed, *embed_opt);
  auto* quality = app.add_subcommand("quality", "MagFace quality (feature magnitude) of faces");
  add_common_options(*quality, *quality_opt);
  quality->add_flag("--embeddings", quality_opt->embeddings,
                    "Include the raw vectors in the records");
  return [&app, embed, quality, embed_opt, quality_opt]() -> int {
    if (embed->parsed()) return run_embed(*embed_opt, true);
    if (quality->parsed()) return run_embed(*quality_opt, false);
    return -1;
  };
}

}  // namespace facemag::cli
