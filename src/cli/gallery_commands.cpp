// `facemag gallery ...`: a persistent 1:N gallery (create, enroll, search, list, show, remove,
// rename, export, import, check, reembed) and `facemag eval identify` over it.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/align/align.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/verification.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/io/image.hpp"
#include "facemag/io/npy.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/pipeline.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

using gallery::Gallery;
using gallery::ModelBinding;

// ---- the model of a gallery ----

// The options that load the gallery's model: the user's, or (without --weights) the
// architecture, weights and mirror features the gallery was created with.
ModelOptions gallery_model_options(ModelOptions given, const ModelBinding& binding,
                                   bool arch_given) {
  if (given.weights.empty() && given.manifest.empty()) {
    given.weights = binding.weights_path;
    given.arch = binding.architecture;
    given.flip =
        binding.embedding_size == 2 * builtin_manifest(binding.architecture).embedding_size;
  } else if (!arch_given) {
    given.arch = binding.architecture;
  }
  return given;
}

ModelBinding binding_of(const Embedder& embedder, const std::filesystem::path& weights) {
  const auto& m = embedder.manifest();
  ModelBinding b;
  b.model_name = m.name;
  b.architecture = m.architecture;
  b.embedding_size = embedder.output_size();
  // Verified while loading where the manifest has it (a model of the store): not hashed twice.
  b.weights_sha256 = m.sha256.empty() ? io::sha256_file(weights) : m.sha256;
  b.magnitude_is_quality = m.magnitude_is_quality;
  b.same_person_threshold = m.same_person_threshold;
  b.quality_threshold = m.quality_threshold;
  b.weights_path = std::filesystem::absolute(weights).lexically_normal().string();
  return b;
}

struct GalleryOptions {
  std::string db;
  ModelOptions model;
  CLI::Option* arch_option = nullptr;
  bool arch_given() const { return arch_option && arch_option->count() > 0; }
};

void add_gallery_options(CLI::App& cmd, GalleryOptions& opt, bool with_model) {
  cmd.add_option("db", opt.db, "Gallery: a SQLite file, or postgresql://user@host/db")->required();
  if (!with_model) return;
  add_model_options(cmd, opt.model, "mobilefacenet");
  opt.arch_option = cmd.get_option("--arch");
  add_face_choice_options(cmd, opt.model);
}

double quality_gate(const ModelBinding& m, double min_quality) {
  if (min_quality > 0) return min_quality;
  return m.magnitude_is_quality ? m.quality_threshold : 0.0;
}

// Detection and embedding of photos, loaded once per command.
struct PhotoFaces {
  MtcnnDetector detector;
  FacePipeline pipeline;
  PhotoFaces(const Embedder& embedder, const ModelOptions& opt)
      : detector(load_detector(opt.detector)),
        pipeline(detector, embedder, to_mtcnn_options(opt.detector)) {}
  PhotoFaces(const PhotoFaces&) = delete;  // the pipeline refers to the detector
};

// for_each_photo_chunk, with photos without a face reported and counted as failures.
template <class F>
std::size_t for_each_photo_face(const std::vector<io::InputFile>& files, const PhotoFaces& faces,
                                KeepFaces keep, const char* label, F per_chunk) {
  std::size_t faceless = 0;
  const auto unreadable =
      for_each_photo_chunk(files, faces.pipeline, keep, label,
                           [&](const std::vector<const io::InputFile*>& which,
                               std::vector<std::vector<FaceRecord>>& records) {
                             for (std::size_t k = 0; k < records.size(); ++k) {
                               if (records[k].empty()) {
                                 report_skipped(which[k]->path.string(), "no face found");
                                 ++faceless;
                               }
                             }
                             per_chunk(which, records);
                           });
  return unreadable + faceless;
}

// ---- create ----

int run_create(const GalleryOptions& opt) {
  const Embedder embedder = load_model(opt.model);
  const auto weights = resolve_weights(opt.model.weights, embedder.manifest().name);
  const auto g = Gallery::create(opt.db, binding_of(embedder, weights));
  std::printf("created %s for %s\n", g.location().c_str(), g.model().describe().c_str());
  return kExitOk;
}

// ---- enroll ----

struct EnrollOptions {
  GalleryOptions g;
  std::vector<std::string> inputs;
  std::string person;
  bool by_folder = false;
  double min_quality = 0;
  bool force = false;
};

int run_enroll(const EnrollOptions& opt) {
  if (opt.person.empty() == !opt.by_folder)
    throw InvalidInput("say who the photos show: --person NAME, or --by-folder");
  auto open = open_with_model(opt.g.db, opt.g.model, opt.g.arch_given());
  auto& gallery = open.gallery;
  const double gate = quality_gate(gallery.model(), opt.min_quality);
  const auto files = input_files(opt.inputs);
  std::size_t enrolled = 0, refused = 0, duplicates = 0;
  const PhotoFaces photo_faces(open.embedder, open.model);
  const auto failures = for_each_photo_face(
      files, photo_faces, keep_option_value(opt.g.model.keep), "enroll",
      [&](const std::vector<const io::InputFile*>& which,
          const std::vector<std::vector<FaceRecord>>& records) {
        std::vector<gallery::NewFace> faces;
        std::vector<float> qualities;  // of faces, for the acknowledgements
        for (std::size_t k = 0; k < which.size(); ++k) {
          if (records[k].empty()) continue;
          std::string person = opt.person;
          if (opt.by_folder) {
            const auto parent = which[k]->name.parent_path();
            if (parent.empty()) {
              report_skipped(which[k]->path.string(),
                             "--by-folder needs photos in one sub-folder per person");
              continue;
            }
            person = parent.begin()->string();
          }
          const auto sha = io::sha256_file(which[k]->path);
          const auto path = std::filesystem::absolute(which[k]->path).lexically_normal().string();
          for (const auto& r : records[k]) {
            if (gate > 0 && r.embedding.magnitude < gate && !opt.force) {
              report_skipped(path, "face quality " + std::to_string(r.embedding.magnitude) +
                                       " is below " + std::to_string(gate) +
                                       " (--force keeps it, --min-quality sets the bar)");
              ++refused;
              continue;
            }
            faces.push_back({person, path, sha, r.detection, r.embedding.raw, /*enrolled_at=*/{}});
            qualities.push_back(r.embedding.magnitude);
          }
        }
        if (faces.empty()) return;
        const auto result = gallery.enroll(faces);  // one transaction per chunk
        enrolled += result.added;
        duplicates += result.duplicates;
        // Acknowledge what is committed, as it is committed.
        for (std::size_t i = 0; i < faces.size(); ++i) {
          const auto& f = faces[i];
          nlohmann::json ack{
              {"enrolled", f.source_path}, {"person", f.person}, {"quality", qualities[i]}};
          if (result.face_ids[i])
            ack["face_id"] = *result.face_ids[i];
          else
            ack["already_enrolled"] = true;
          std::cout << ack << "\n";
        }
        std::cout.flush();
      });
  spdlog::info(
      "{} face(s) enrolled, {} already there, {} refused for quality; {} now holds {} "
      "people",
      enrolled, duplicates, refused, gallery.location(), gallery.persons().size());
  return finish_batch(failures + refused, files.size());
}

// ---- search ----

struct SearchOptions {
  GalleryOptions g;
  std::vector<std::string> inputs;
  int top_k = 5;
  double threshold = -2;
  double min_quality = 0;
  bool from_stdin = false;
  std::string index = "exact";
  CLI::Option* keep_option = nullptr;
  bool keep_given() const { return keep_option && keep_option->count() > 0; }
};

nlohmann::json search_record(const Gallery& gallery, const std::string& path, const FaceRecord& r,
                             int top_k, double threshold, double gate) {
  const auto candidates = gallery.search(r.embedding.raw, top_k);
  nlohmann::json out{{"path", path},
                     {"face", r.index},
                     {"box", box_json(r.detection)},
                     {"quality", r.embedding.magnitude}};
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : candidates)
    list.push_back({{"person", c.person},
                    {"similarity", c.template_similarity},
                    {"best_face_similarity", c.best_face_similarity},
                    {"best_face_id", c.best_face_id},
                    {"faces", c.faces}});
  out["candidates"] = list;
  std::string decision = "unknown";
  if (gate > 0 && r.embedding.magnitude < gate) {
    decision = "too poor to decide";
  } else if (!candidates.empty() && candidates[0].template_similarity >= threshold) {
    decision = "match";
    out["person"] = candidates[0].person;
  }
  out["decision"] = decision;
  out["threshold"] = threshold;
  return out;
}

void print_search_row(const nlohmann::json& r) {
  std::printf("%-40s face %zu  quality %6.2f  -> %-18s", r["path"].get<std::string>().c_str(),
              r["face"].get<std::size_t>(), r["quality"].get<double>(),
              r["decision"].get<std::string>().c_str());
  for (const auto& c : r["candidates"])
    std::printf("  %s %.3f", c["person"].get<std::string>().c_str(), c["similarity"].get<double>());
  std::printf("\n");
}

int run_search(const SearchOptions& opt) {
  auto open = open_with_model(opt.g.db, opt.g.model, opt.g.arch_given(),
                              gallery::parse_index_kind(opt.index));
  const auto& gallery = open.gallery;
  const double threshold =
      opt.threshold > -2 ? opt.threshold : gallery.model().same_person_threshold;
  const double gate = quality_gate(gallery.model(), opt.min_quality);
  const bool table = isatty(STDOUT_FILENO);
  // Every face of a probe photo is searched unless --keep chooses one.
  const KeepFaces keep = opt.keep_given() ? keep_option_value(opt.g.model.keep) : KeepFaces::kAll;
  const auto answer = [&](const std::vector<const io::InputFile*>& which,
                          const std::vector<std::vector<FaceRecord>>& records) {
    for (std::size_t k = 0; k < which.size(); ++k) {
      for (const auto& r : records[k]) {
        const auto rec =
            search_record(gallery, which[k]->path.string(), r, opt.top_k, threshold, gate);
        if (table) {
          print_search_row(rec);
        } else {
          std::cout << rec << "\n";
        }
      }
    }
    std::cout.flush();
  };
  const PhotoFaces photo_faces(open.embedder, open.model);
  if (opt.from_stdin) {
    // One photo path per line, answered as it comes (a long-running searcher sees other
    // processes' enrolments: the index follows the store's generation).
    std::size_t failures = 0;
    for (std::string line; std::getline(std::cin, line);) {
      if (line.empty()) continue;
      const std::vector<io::InputFile> one{{line, std::filesystem::path(line).filename()}};
      failures += for_each_photo_face(one, photo_faces, keep, "search", answer);
    }
    return failures ? kExitSomeInputsFailed : kExitOk;
  }
  const auto files = input_files(opt.inputs);
  const auto failures = for_each_photo_face(files, photo_faces, keep, "search", answer);
  return finish_batch(failures, files.size());
}

// ---- list / show / remove / rename / check ----

int run_list(const GalleryOptions& opt) {
  const auto g = Gallery::open(opt.db);
  const auto people = g.persons();
  std::size_t faces = 0;
  for (const auto& p : people) {
    std::cout << nlohmann::json{{"person", p.name},
                                {"faces", p.faces},
                                {"mean_quality", p.mean_quality}}
              << "\n";
    faces += static_cast<std::size_t>(p.faces);
  }
  spdlog::info("{}: {} people, {} faces, model {}", g.location(), people.size(), faces,
               g.model().describe());
  return kExitOk;
}

nlohmann::json face_json(const gallery::StoredFace& f, bool with_embedding) {
  nlohmann::json marks = nlohmann::json::array();
  for (const auto& p : f.detection.landmarks.points) marks.push_back({p.x, p.y});
  nlohmann::json j{{"id", f.id},
                   {"person", f.person},
                   {"source", f.source_path},
                   {"image_sha256", f.image_sha256},
                   {"box", box_json(f.detection)},
                   {"landmarks", marks},
                   {"score", f.detection.score},
                   {"quality", f.quality},
                   {"enrolled_at", f.enrolled_at}};
  if (with_embedding) j["embedding"] = f.embedding;
  return j;
}

struct ShowOptions {
  GalleryOptions g;
  std::string person;
};

int run_show(const ShowOptions& opt) {
  const auto g = Gallery::open(opt.g.db);
  for (const auto& f : g.faces(opt.person)) std::cout << face_json(f, false) << "\n";
  return kExitOk;
}

struct RemoveOptions {
  GalleryOptions g;
  std::string person;
  std::int64_t face = -1;
};

int run_remove(const RemoveOptions& opt) {
  auto g = Gallery::open(opt.g.db);
  if ((opt.face >= 0) == !opt.person.empty())
    throw InvalidInput("remove one person (PERSON) or one face (--face ID)");
  if (opt.face >= 0) {
    g.remove_face(opt.face);
    std::printf("removed face %lld\n", static_cast<long long>(opt.face));
  } else {
    g.remove_person(opt.person);
    std::printf("removed %s\n", opt.person.c_str());
  }
  return kExitOk;
}

struct RenameOptions {
  GalleryOptions g;
  std::string from, to;
};

int run_rename(const RenameOptions& opt) {
  auto g = Gallery::open(opt.g.db);
  g.rename_person(opt.from, opt.to);
  std::printf("renamed %s to %s\n", opt.from.c_str(), opt.to.c_str());
  return kExitOk;
}

int run_check(const GalleryOptions& opt) {
  const auto g = Gallery::open(opt.db);
  const auto problems = g.check();
  for (const auto& p : problems) std::printf("%s\n", p.c_str());
  const auto people = g.persons();
  std::size_t faces = 0;
  for (const auto& p : people) faces += static_cast<std::size_t>(p.faces);
  std::printf(
      "%s: %zu people, %zu faces, schema version %d: %s\n", g.location().c_str(), people.size(),
      faces, g.schema_version(),
      problems.empty() ? "sound" : (std::to_string(problems.size()) + " problem(s)").c_str());
  return problems.empty() ? kExitOk : kExitSomeInputsFailed;
}

// ---- export / import ----

struct TransferOptions {
  GalleryOptions g;
  std::string path;  // OUT (writes OUT.npy, OUT.jsonl, OUT.model.json) or IN
};

std::filesystem::path with_suffix(const std::string& base, const std::string& suffix) {
  return base + suffix;
}

nlohmann::json binding_json(const ModelBinding& m) {
  return {{"model_name", m.model_name},
          {"architecture", m.architecture},
          {"embedding_size", m.embedding_size},
          {"weights_sha256", m.weights_sha256},
          {"magnitude_is_quality", m.magnitude_is_quality},
          {"same_person_threshold", m.same_person_threshold},
          {"quality_threshold", m.quality_threshold},
          {"weights_path", m.weights_path}};
}

int run_export(const TransferOptions& opt) {
  const auto g = Gallery::open(opt.g.db);
  const auto faces = g.faces();
  std::vector<float> matrix;
  std::ofstream index(with_suffix(opt.path, ".jsonl"));
  if (!index) throw InvalidInput(opt.path + ".jsonl: cannot write");
  for (std::size_t row = 0; row < faces.size(); ++row) {
    auto j = face_json(faces[row], false);
    j["row"] = row;
    index << j << "\n";
    matrix.insert(matrix.end(), faces[row].embedding.begin(), faces[row].embedding.end());
  }
  const auto dim = static_cast<std::int64_t>(g.model().embedding_size);
  io::write_npy(with_suffix(opt.path, ".npy"),
                torch::from_blob(matrix.data(), {static_cast<std::int64_t>(faces.size()), dim},
                                 torch::kFloat32));
  std::ofstream(with_suffix(opt.path, ".model.json")) << binding_json(g.model()).dump(2) << "\n";
  std::printf("exported %zu faces to %s.npy, %s.jsonl, %s.model.json\n", faces.size(),
              opt.path.c_str(), opt.path.c_str(), opt.path.c_str());
  return kExitOk;
}

int run_import(const TransferOptions& opt) {
  std::ifstream model_file(with_suffix(opt.path, ".model.json"));
  if (!model_file) throw InvalidInput(opt.path + ".model.json: no such export");
  const auto j = nlohmann::json::parse(model_file);
  ModelBinding m;
  m.model_name = j.at("model_name");
  m.architecture = j.at("architecture");
  m.embedding_size = j.at("embedding_size");
  m.weights_sha256 = j.at("weights_sha256");
  m.magnitude_is_quality = j.at("magnitude_is_quality");
  m.same_person_threshold = j.at("same_person_threshold");
  m.quality_threshold = j.at("quality_threshold");
  m.weights_path = j.value("weights_path", "");
  const bool exists = Gallery::exists(opt.g.db);
  auto g = exists ? Gallery::open(opt.g.db, m) : Gallery::create(opt.g.db, m);
  const auto matrix = io::read_npy(with_suffix(opt.path, ".npy")).to(torch::kFloat32).contiguous();
  std::ifstream index(with_suffix(opt.path, ".jsonl"));
  std::vector<gallery::NewFace> faces;
  std::size_t number = 0;
  for (std::string line; std::getline(index, line);) {
    ++number;
    if (line.empty()) continue;
    const auto r = nlohmann::json::parse(line);
    const auto row = r.at("row").get<std::int64_t>();
    if (row < 0 || row >= matrix.size(0) || matrix.size(1) != m.embedding_size)
      throw InvalidInput(opt.path + ".jsonl:" + std::to_string(number) + ": row " +
                         std::to_string(row) + " is not in " + opt.path + ".npy");
    gallery::NewFace f;
    f.person = r.at("person");
    f.source_path = r.at("source");
    f.image_sha256 = r.at("image_sha256");
    const auto box = r.at("box");
    f.detection.box = {box[0], box[1], box[2], box[3]};
    for (int i = 0; i < 5; ++i)
      f.detection.landmarks[i] = {r.at("landmarks")[i][0], r.at("landmarks")[i][1]};
    f.detection.score = r.at("score");
    f.enrolled_at = r.value("enrolled_at", "");
    const float* v = matrix[row].data_ptr<float>();
    f.embedding.assign(v, v + m.embedding_size);
    faces.push_back(std::move(f));
  }
  const auto result = g.enroll(faces);
  std::printf("imported %d faces (%d already there) into %s\n", result.added, result.duplicates,
              g.location().c_str());
  return kExitOk;
}

// ---- reembed ----

struct ReembedOptions {
  GalleryOptions g;
  std::string out;
};

// A new gallery for another model from the stored source photos: each face is re-aligned from
// its stored landmarks (no detection, so the same face), embedded by the new model. The old
// gallery is only read; the new one is written under a temporary name and renamed when complete.
int run_reembed(const ReembedOptions& opt) {
  const auto old = Gallery::open(opt.g.db);
  if (opt.g.model.weights.empty()) throw InvalidInput("reembed needs the new model's --weights");
  const Embedder embedder = load_model(opt.g.model);
  const auto binding =
      binding_of(embedder, resolve_weights(opt.g.model.weights, embedder.manifest().name));
  const bool sqlite = !gallery::is_database_url(opt.out);
  const std::string building = sqlite ? opt.out + ".partial" : opt.out;
  if (sqlite) {
    if (std::filesystem::exists(opt.out)) throw InvalidInput(opt.out + ": exists already");
    std::filesystem::remove(building);
  }
  const auto faces = old.faces();
  std::size_t gone = 0;
  {
    auto fresh = Gallery::create(building, binding);
    std::vector<gallery::NewFace> batch;
    std::vector<cv::Mat> crops;
    const auto flush = [&] {
      if (batch.empty()) return;
      const auto embeddings = embedder.embed(crops);  // one forward pass per 64 faces
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i].embedding = embeddings[i].raw;
      fresh.enroll(batch);
      batch.clear();
      crops.clear();
    };
    ProgressBar progress(faces.size(), "reembed");
    for (const auto& f : faces) {
      progress.advance();
      try {
        if (!std::filesystem::exists(f.source_path)) throw InvalidInput("the source photo is gone");
        if (io::sha256_file(f.source_path) != f.image_sha256)
          throw InvalidInput("the source photo changed since it was enrolled");
        const cv::Mat photo = io::read_image_bgr(f.source_path);
        crops.push_back(crop_for_model(photo, f.detection, embedder.manifest()));
        batch.push_back({f.person, f.source_path, f.image_sha256, f.detection, {}, f.enrolled_at});
        if (batch.size() == 64) flush();
      } catch (const InvalidInput& e) {
        report_skipped(f.source_path + " (face " + std::to_string(f.id) + ", " + f.person + ")",
                       e.what());
        ++gone;
      }
    }
    flush();
  }  // closed: SQLite folds its write-ahead log into the file before it is renamed
  if (sqlite) std::filesystem::rename(building, opt.out);
  std::printf("%s: %zu of %zu faces re-embedded for %s; %zu left out\n", opt.out.c_str(),
              faces.size() - gone, faces.size(), binding.describe().c_str(), gone);
  return gone ? kExitSomeInputsFailed : kExitOk;
}

// ---- eval identify ----

struct IdentifyOptions {
  GalleryOptions g;
  std::vector<std::string> probes;
  bool by_folder = false;
  std::string features, labels;
  double min_quality = 0;
  double reject_rate = 0;
  std::string json;
};

int run_eval_identify(const IdentifyOptions& opt) {
  struct Probe {
    std::string person;
    std::vector<float> embedding;
    double quality = 0;
  };
  std::vector<Probe> probes;
  std::optional<OpenGallery> open_model;
  std::optional<Gallery> features_only;
  if (!opt.features.empty()) {
    if (opt.labels.empty()) throw InvalidInput("--features needs --labels (one name per row)");
    features_only = Gallery::open(opt.g.db);
    const auto matrix = io::read_npy(opt.features).to(torch::kFloat32).contiguous();
    std::ifstream in(opt.labels);
    if (!in) throw InvalidInput(opt.labels + ": cannot open");
    std::vector<std::string> names;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) names.push_back(line);
    }
    if (matrix.dim() != 2 || static_cast<std::int64_t>(names.size()) != matrix.size(0))
      throw InvalidInput(opt.labels + ": " + std::to_string(names.size()) + " names for " +
                         std::to_string(matrix.size(0)) + " rows of " + opt.features);
    for (std::size_t i = 0; i < names.size(); ++i) {
      const float* v = matrix[static_cast<std::int64_t>(i)].data_ptr<float>();
      Probe p{names[i], std::vector<float>(v, v + matrix.size(1)), 0.0};
      double sum = 0;
      for (const float x : p.embedding) sum += double(x) * x;
      p.quality = std::sqrt(sum);
      probes.push_back(std::move(p));
    }
  } else {
    if (!opt.by_folder) throw InvalidInput("probe photos need --by-folder (sub-folder = person)");
    open_model.emplace(open_with_model(opt.g.db, opt.g.model, opt.g.arch_given()));
    const auto files = input_files(opt.probes);
    const PhotoFaces photo_faces(open_model->embedder, open_model->model);
    for_each_photo_face(
        files, photo_faces, keep_option_value(opt.g.model.keep), "probes",
        [&](const std::vector<const io::InputFile*>& which,
            const std::vector<std::vector<FaceRecord>>& records) {
          for (std::size_t k = 0; k < which.size(); ++k) {
            const auto parent = which[k]->name.parent_path();
            if (records[k].empty() || parent.empty()) continue;
            for (const auto& r : records[k])
              probes.push_back({parent.begin()->string(), r.embedding.raw, r.embedding.magnitude});
          }
        });
  }
  const Gallery& gallery = open_model ? open_model->gallery : *features_only;
  std::set<std::string> enrolled;
  for (const auto& p : gallery.persons()) enrolled.insert(p.name);
  const std::vector<int> ranks{1, 5};
  const std::vector<double> fpirs{1e-1, 1e-2};
  const int depth = *std::max_element(ranks.begin(), ranks.end());
  std::vector<eval::ProbeOutcome> all, kept;
  double gate = quality_gate(gallery.model(), opt.min_quality);
  if (opt.reject_rate > 0) {
    std::vector<double> qualities;
    for (const auto& p : probes) qualities.push_back(p.quality);
    gate = eval::quality_threshold(qualities, opt.reject_rate);
  }
  for (const auto& p : probes) {
    eval::ProbeOutcome o;
    o.mated = enrolled.count(p.person) > 0;
    const auto candidates = gallery.search(p.embedding, depth);
    if (!candidates.empty()) o.top_score = candidates.front().template_similarity;
    for (std::size_t r = 0; r < candidates.size(); ++r) {
      if (candidates[r].person == p.person) {
        o.rank = static_cast<int>(r + 1);
        break;
      }
    }
    all.push_back(o);
    if (gate <= 0 || p.quality >= gate) kept.push_back(o);
  }
  std::printf("%zu probe faces against %zu enrolled people of %s\n", probes.size(), enrolled.size(),
              gallery.location().c_str());
  std::printf("  %-30s %6s %6s  %6s %6s  %14s %14s\n", "", "probes", "mated", "rank-1", "rank-5",
              "FNIR@FPIR=1e-1", "FNIR@FPIR=1e-2");
  nlohmann::json result = nlohmann::json::array();
  const auto report = [&](const std::string& label, const std::vector<eval::ProbeOutcome>& set) {
    const auto r = eval::identification_metrics(set, ranks, fpirs);
    std::printf("  %-30s %6zu %6zu  %6.4f %6.4f", label.c_str(), r.probes, r.mated, r.cmc[0],
                r.cmc[1]);
    nlohmann::json open = nlohmann::json::array();
    for (const auto& point : r.open_set) {
      if (point.threshold) {
        std::printf("  %14.4f", 1 - point.tpir);
        open.push_back(
            {{"fpir", point.fpir}, {"fnir", 1 - point.tpir}, {"threshold", *point.threshold}});
      } else {
        std::printf("  %14s", "n/a");
        open.push_back({{"fpir", point.fpir}, {"fnir", nullptr}});
      }
    }
    std::printf("\n");
    result.push_back({{"set", label},
                      {"probes", r.probes},
                      {"mated", r.mated},
                      {"non_mated", r.non_mated},
                      {"rank1", r.cmc[0]},
                      {"rank5", r.cmc[1]},
                      {"open_set", open}});
  };
  report("all probes", all);
  if (gate > 0) {
    char label[64];
    std::snprintf(label, sizeof label, "quality >= %.3f (%.1f %% kept)", gate,
                  100.0 * double(kept.size()) / double(std::max<std::size_t>(1, all.size())));
    report(label, kept);
  }
  std::printf("(n/a: fewer than 1 / FPIR non-mated probes)\n");
  if (!opt.json.empty()) {
    std::ofstream out(opt.json);
    out << nlohmann::json{{"gallery", gallery.location()},
                          {"quality_gate", gate},
                          {"results", result}}
               .dump(2)
        << "\n";
  }
  return kExitOk;
}

}  // namespace

OpenGallery open_with_model(const std::string& location, const ModelOptions& given, bool arch_given,
                            gallery::IndexKind index) {
  auto g = Gallery::open(location, std::nullopt, index);
  const ModelOptions opt = gallery_model_options(given, g.model(), arch_given);
  if (opt.weights.empty())
    throw InvalidInput(location +
                       ": the gallery does not say where its weights are: give --weights");
  Embedder embedder = load_model(opt);
  const auto binding = binding_of(embedder, resolve_weights(opt.weights, embedder.manifest().name));
  g.require_model(binding);
  return {std::move(g), std::move(embedder), opt};
}

ModelWithGallery load_model_with_gallery(const std::string& gallery, const ModelOptions& given,
                                         bool arch_given) {
  ModelWithGallery out;
  if (gallery.empty()) {
    out.own.emplace(load_model(given));
    out.model = given;
  } else {
    out.opened.emplace(open_with_model(gallery, given, arch_given));
    out.model = out.opened->model;
  }
  return out;
}

Runner add_gallery_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("gallery", "A persistent, quality-aware 1:N gallery");
  cmd->require_subcommand(1);

  auto create = std::make_shared<GalleryOptions>();
  auto* c_create = cmd->add_subcommand("create", "A new gallery bound to one model");
  add_gallery_options(*c_create, *create, true);

  auto enroll = std::make_shared<EnrollOptions>();
  auto* c_enroll = cmd->add_subcommand("enroll", "Enrol people from photos");
  add_gallery_options(*c_enroll, enroll->g, true);
  c_enroll->add_option("photos", enroll->inputs, "Photos, folders or @list.txt")->required();
  c_enroll->add_option("--person", enroll->person, "Who the photos show");
  c_enroll->add_flag("--by-folder", enroll->by_folder, "Each sub-folder is a person");
  c_enroll->add_option("--min-quality", enroll->min_quality,
                       "Refuse faces below this magnitude (default: the model's quality threshold "
                       "for MagFace models)");
  c_enroll->add_flag("--force", enroll->force, "Enrol faces below the quality bar too");

  auto search = std::make_shared<SearchOptions>();
  auto* c_search = cmd->add_subcommand("search", "Who is this? The nearest enrolled people");
  add_gallery_options(*c_search, search->g, true);
  search->keep_option = c_search->get_option("--keep");
  c_search->add_option("photos", search->inputs, "Photos, folders or @list.txt");
  c_search->add_option("--top-k", search->top_k, "Candidates per face")->capture_default_str();
  c_search->add_option("--threshold", search->threshold,
                       "Cosine for a match (default: the model's same-person threshold)");
  c_search->add_option("--min-quality", search->min_quality,
                       "Faces below this magnitude are 'too poor to decide'");
  c_search->add_flag("--stdin", search->from_stdin,
                     "Read photo paths from standard input, one per line, answering each");
  c_search->add_option("--index", search->index, "exact, hnsw or ivf")
      ->check(CLI::IsMember({"exact", "hnsw", "ivf"}))
      ->capture_default_str();

  auto list = std::make_shared<GalleryOptions>();
  auto* c_list = cmd->add_subcommand("list", "Enrolled people, their face counts and quality");
  add_gallery_options(*c_list, *list, false);

  auto show = std::make_shared<ShowOptions>();
  auto* c_show = cmd->add_subcommand("show", "One person's faces");
  add_gallery_options(*c_show, show->g, false);
  c_show->add_option("person", show->person, "Name")->required();

  auto remove = std::make_shared<RemoveOptions>();
  auto* c_remove = cmd->add_subcommand("remove", "Remove a person, or one face (--face ID)");
  add_gallery_options(*c_remove, remove->g, false);
  c_remove->add_option("person", remove->person, "Name");
  c_remove->add_option("--face", remove->face, "Face id (from show or search)");

  auto rename = std::make_shared<RenameOptions>();
  auto* c_rename = cmd->add_subcommand("rename", "Rename a person");
  add_gallery_options(*c_rename, rename->g, false);
  c_rename->add_option("from", rename->from, "Current name")->required();
  c_rename->add_option("to", rename->to, "New name")->required();

  auto exp = std::make_shared<TransferOptions>();
  auto* c_export =
      cmd->add_subcommand("export", "OUT.npy (raw embeddings), OUT.jsonl, OUT.model.json");
  add_gallery_options(*c_export, exp->g, false);
  c_export->add_option("out", exp->path, "Output name (without extension)")->required();

  auto imp = std::make_shared<TransferOptions>();
  auto* c_import = cmd->add_subcommand("import", "Add an export's faces (creating the gallery)");
  add_gallery_options(*c_import, imp->g, false);
  c_import->add_option("in", imp->path, "Export name (without extension)")->required();

  auto check = std::make_shared<GalleryOptions>();
  auto* c_check = cmd->add_subcommand("check", "Every row decodes, templates and index agree");
  add_gallery_options(*c_check, *check, false);

  auto reembed = std::make_shared<ReembedOptions>();
  auto* c_reembed =
      cmd->add_subcommand("reembed", "A new gallery for another model from the stored photos");
  add_gallery_options(*c_reembed, reembed->g, true);
  c_reembed->add_option("--out", reembed->out, "The new gallery")->required();

  return [=]() -> int {
    if (c_create->parsed()) return run_create(*create);
    if (c_enroll->parsed()) return run_enroll(*enroll);
    if (c_search->parsed()) return run_search(*search);
    if (c_list->parsed()) return run_list(*list);
    if (c_show->parsed()) return run_show(*show);
    if (c_remove->parsed()) return run_remove(*remove);
    if (c_rename->parsed()) return run_rename(*rename);
    if (c_export->parsed()) return run_export(*exp);
    if (c_import->parsed()) return run_import(*imp);
    if (c_check->parsed()) return run_check(*check);
    if (c_reembed->parsed()) return run_reembed(*reembed);
    return -1;
  };
}

}  // namespace facemag::cli

namespace facemag::cli {

Runner add_eval_identify_command(CLI::App& evalc) {
  auto opt = std::make_shared<IdentifyOptions>();
  auto* cmd = evalc.add_subcommand(
      "identify", "1:N against a gallery: rank-1/5 (CMC) and FNIR at FPIR, with the quality gate");
  cmd->add_option("--gallery", opt->g.db, "The gallery (file or postgresql:// URL)")->required();
  cmd->add_option("probes", opt->probes, "Probe photos (with --by-folder: sub-folder = person)");
  cmd->add_flag("--by-folder", opt->by_folder, "Each sub-folder of the probe folders is a person");
  cmd->add_option("--features", opt->features, "Probe embeddings (.npy) instead of photos");
  cmd->add_option("--labels", opt->labels, "With --features: one person name per row");
  cmd->add_option("--min-quality", opt->min_quality,
                  "Quality gate (default: the model's threshold for MagFace models)");
  cmd->add_option("--reject-rate", opt->reject_rate,
                  "Quality gate at this fraction of the probes (the lowest-quality ones), instead "
                  "of --min-quality")
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--json", opt->json, "Write every number here");
  add_model_options(*cmd, opt->g.model, "mobilefacenet");
  opt->g.arch_option = cmd->get_option("--arch");
  add_face_choice_options(*cmd, opt->g.model);
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_identify(*opt) : -1; };
}

}  // namespace facemag::cli
