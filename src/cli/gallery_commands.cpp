// `facemag gallery ...`: a persistent 1:N gallery (create, enroll, search, list, show, remove,
// rename, export, import, check, reembed) and `facemag eval identify` over it. Each runner turns
// its flags into the library's options (gallery/photos.hpp, gallery/evaluate.hpp), makes the call
// and prints what it hands back.
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/gallery/archive.hpp"
#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/evaluate.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/photos.hpp"
#include "facemag/pipeline.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

using gallery::binding_of;
using gallery::Gallery;
using gallery::ModelBinding;

// ---- the model of a gallery ----

// The options that load the gallery's model: the user's, or (without --weights) the
// architecture, weights and mirror features the gallery was created with.
ModelOptions gallery_model_options(ModelOptions given, const ModelBinding& binding,
                                   bool arch_given) {
  if (given.weights.empty() && given.manifest.empty()) {
    const auto own = gallery::model_request_of(binding);
    given.weights = own.weights.string();
    given.arch = own.architecture;
    given.flip = own.concat_flipped;
  } else if (!arch_given) {
    given.arch = binding.architecture;
  }
  return given;
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

// Detection and embedding of photos, loaded once per command.
struct PhotoFaces {
  MtcnnDetector detector;
  FacePipeline pipeline;
  PhotoFaces(const Embedder& embedder, const ModelOptions& opt)
      : detector(load_detector(opt.detector)),
        pipeline(detector, embedder, to_mtcnn_options(opt.detector)) {}
  PhotoFaces(const PhotoFaces&) = delete;  // the pipeline refers to the detector
};

// A photo or face the library left out, on stderr; the flags that change the outcome named.
void report_failure(const gallery::PhotoFailure& f) {
  using Kind = gallery::PhotoFailure::Kind;
  if (f.kind == Kind::kNoPersonFolder) {
    report_skipped(f.path, "--by-folder needs photos in one sub-folder per person");
  } else if (f.kind == Kind::kTooPoor) {
    report_skipped(f.path, f.reason + " (--force keeps it, --min-quality sets the bar)");
  } else if (f.face_id) {
    report_skipped(f.path + " (face " + std::to_string(*f.face_id) + ", " + f.person + ")",
                   f.reason);
  } else {
    report_skipped(f.path, f.reason);
  }
}

// ---- create ----

int run_create(const GalleryOptions& opt) {
  const auto files = resolve_model_files(opt.model);
  const Embedder embedder = load_model(files, opt.model);
  const auto& weights = files.weights;
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

// One line per committed face: {"enrolled", "person", "quality", "face_id"|"already_enrolled"}.
void print_acknowledgements(const std::vector<gallery::EnrolledFace>& faces) {
  if (faces.empty()) return;
  for (const auto& f : faces) {
    nlohmann::json ack{{"enrolled", f.source_path}, {"person", f.person}, {"quality", f.quality}};
    if (f.face_id)
      ack["face_id"] = *f.face_id;
    else
      ack["already_enrolled"] = true;
    std::cout << ack << "\n";
  }
  std::cout.flush();
}

int run_enroll(const EnrollOptions& opt) {
  if (opt.person.empty() == !opt.by_folder)
    throw InvalidInput("say who the photos show: --person NAME, or --by-folder");
  auto open = open_with_model(opt.g.db, opt.g.model, opt.g.arch_given());
  auto& gallery = open.gallery;
  const auto files = input_files(opt.inputs);
  const PhotoFaces photo_faces(open.embedder, open.model);
  gallery::EnrolPhotosOptions how;
  if (!opt.by_folder) how.person = opt.person;
  how.min_quality = opt.min_quality;
  how.force = opt.force;
  how.keep = keep_option_value(opt.g.model.keep);
  gallery::EnrolPhotosResult done;
  {
    ProgressBar progress(files.size(), "enroll");
    done = gallery::enrol_photos(gallery, photo_faces.pipeline, files, how, report_failure,
                                 [&](const gallery::EnrolChunk& chunk) {
                                   print_acknowledgements(chunk.faces);
                                   progress.advance(chunk.inputs);
                                 });
  }
  spdlog::info(
      "{} face(s) enrolled, {} already there, {} refused for quality; {} now holds {} "
      "people",
      done.added, done.duplicates, done.refused, gallery.location(), gallery.persons().size());
  return finish_batch(done.failed_photos + done.refused, files.size());
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

nlohmann::json search_record(const gallery::FaceAnswer& answer) {
  const auto& r = answer.face;
  const auto& found = answer.identification;
  nlohmann::json out{{"path", answer.photo->path.string()},
                     {"face", r.index},
                     {"box", box_json(r.detection)},
                     {"quality", r.embedding.magnitude}};
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : found.candidates)
    list.push_back({{"person", c.person},
                    {"similarity", c.template_similarity},
                    {"best_face_similarity", c.best_face_similarity},
                    {"best_face_id", c.best_face_id},
                    {"faces", c.faces}});
  out["candidates"] = list;
  if (found.person) out["person"] = *found.person;
  out["decision"] = gallery::decision_name(found.decision);
  out["threshold"] = found.threshold;
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

// Searches the photos, printing each chunk's answers as they come (a table on a terminal, JSON
// Lines otherwise). Returns the number of photos that failed.
std::size_t search_and_print(const Gallery& gallery, const FacePipeline& pipeline,
                             const std::vector<io::InputFile>& files,
                             const gallery::SearchPhotosOptions& how, bool table) {
  ProgressBar progress(files.size(), "search");
  return gallery::search_photos(gallery, pipeline, files, how, report_failure,
                                [&](const gallery::SearchChunk& chunk) {
                                  for (const auto& answer : chunk.answers) {
                                    const auto rec = search_record(answer);
                                    if (table) {
                                      print_search_row(rec);
                                    } else {
                                      std::cout << rec << "\n";
                                    }
                                  }
                                  std::cout.flush();
                                  progress.advance(chunk.inputs);
                                });
}

int run_search(const SearchOptions& opt) {
  auto open = open_with_model(opt.g.db, opt.g.model, opt.g.arch_given(),
                              gallery::parse_index_kind(opt.index));
  const auto& gallery = open.gallery;
  gallery::SearchPhotosOptions how;
  how.top_k = opt.top_k;
  how.min_quality = opt.min_quality;
  if (opt.threshold > -2) how.same_person_threshold = opt.threshold;
  const bool table = isatty(STDOUT_FILENO);
  // Every face of a probe photo is searched unless --keep chooses one.
  how.keep = opt.keep_given() ? keep_option_value(opt.g.model.keep) : KeepFaces::kAll;
  const PhotoFaces photo_faces(open.embedder, open.model);
  if (opt.from_stdin) {
    // One photo path per line, answered as it comes (a long-running searcher sees other
    // processes' enrolments: the index follows the store's generation).
    std::size_t failures = 0;
    for (std::string line; std::getline(std::cin, line);) {
      if (line.empty()) continue;
      const std::vector<io::InputFile> one{{line, std::filesystem::path(line).filename()}};
      failures += search_and_print(gallery, photo_faces.pipeline, one, how, table);
    }
    return failures ? kExitSomeInputsFailed : kExitOk;
  }
  const auto files = input_files(opt.inputs);
  const auto failures = search_and_print(gallery, photo_faces.pipeline, files, how, table);
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

int run_export(const TransferOptions& opt) {
  const auto exported = gallery::export_gallery(Gallery::open(opt.g.db), opt.path);
  std::printf("exported %zu faces to %s.npy, %s.jsonl, %s.model.json\n", exported.faces,
              opt.path.c_str(), opt.path.c_str(), opt.path.c_str());
  return kExitOk;
}

int run_import(const TransferOptions& opt) {
  const auto imported = gallery::import_gallery(opt.path, opt.g.db);
  std::printf("imported %d faces (%d already there) into %s\n", imported.added, imported.duplicates,
              imported.location.c_str());
  return kExitOk;
}

// ---- reembed ----

struct ReembedOptions {
  GalleryOptions g;
  std::string out;
};

// A new gallery for another model from the stored source photos (gallery::reembed_gallery).
int run_reembed(const ReembedOptions& opt) {
  const auto old = Gallery::open(opt.g.db);
  if (opt.g.model.weights.empty()) throw InvalidInput("reembed needs the new model's --weights");
  const auto files = resolve_model_files(opt.g.model);
  const Embedder embedder = load_model(files, opt.g.model);
  const auto binding = binding_of(embedder, files.weights);
  std::optional<ProgressBar> progress;
  const auto done = gallery::reembed_gallery(old, embedder, binding, opt.out, report_failure,
                                             [&](std::size_t, std::size_t total) {
                                               if (!progress) progress.emplace(total, "reembed");
                                               progress->advance();
                                             });
  progress.reset();
  std::printf("%s: %zu of %zu faces re-embedded for %s; %zu left out\n", opt.out.c_str(),
              done.faces - done.left_out, done.faces, binding.describe().c_str(), done.left_out);
  return done.left_out ? kExitSomeInputsFailed : kExitOk;
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

// One row of the table (rank-1, rank-5, FNIR at each FPIR) and its JSON.
nlohmann::json print_identification_row(const std::string& label,
                                        const eval::IdentificationResult& r) {
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
  return {{"set", label},      {"probes", r.probes}, {"mated", r.mated}, {"non_mated", r.non_mated},
          {"rank1", r.cmc[0]}, {"rank5", r.cmc[1]},  {"open_set", open}};
}

void print_identification(const gallery::IdentificationEvaluation& e, const std::string& location,
                          const std::string& json) {
  std::printf("%zu probe faces against %zu enrolled people of %s\n", e.probes, e.enrolled_people,
              location.c_str());
  std::printf("  %-30s %6s %6s  %6s %6s  %14s %14s\n", "", "probes", "mated", "rank-1", "rank-5",
              "FNIR@FPIR=1e-1", "FNIR@FPIR=1e-2");
  nlohmann::json result = nlohmann::json::array();
  result.push_back(print_identification_row("all probes", e.all));
  if (e.gated) {
    char label[64];
    std::snprintf(label, sizeof label, "quality >= %.3f (%.1f %% kept)", e.quality_gate,
                  100.0 * double(e.kept) / double(std::max<std::size_t>(1, e.probes)));
    result.push_back(print_identification_row(label, *e.gated));
  }
  std::printf("(n/a: fewer than 1 / FPIR non-mated probes)\n");
  if (!json.empty()) {
    std::ofstream out(json);
    out << nlohmann::json{{"gallery", location},
                          {"quality_gate", e.quality_gate},
                          {"results", result}}
               .dump(2)
        << "\n";
  }
}

int run_eval_identify(const IdentifyOptions& opt) {
  std::vector<gallery::IdentificationProbe> probes;
  std::optional<OpenGallery> open_model;
  std::optional<Gallery> features_only;
  if (!opt.features.empty()) {
    if (opt.labels.empty()) throw InvalidInput("--features needs --labels (one name per row)");
    features_only = Gallery::open(opt.g.db);
    probes = gallery::probes_from_features(eval::read_labelled_features(opt.features, opt.labels));
  } else {
    if (!opt.by_folder) throw InvalidInput("probe photos need --by-folder (sub-folder = person)");
    open_model.emplace(open_with_model(opt.g.db, opt.g.model, opt.g.arch_given()));
    const auto files = input_files(opt.probes);
    const PhotoFaces photo_faces(open_model->embedder, open_model->model);
    const auto keep = keep_option_value(opt.g.model.keep);
    ProgressBar progress(files.size(), "probes");
    probes = gallery::probes_from_photos(photo_faces.pipeline, files, keep, report_failure,
                                         [&](std::size_t inputs) { progress.advance(inputs); });
  }
  const Gallery& gallery = open_model ? open_model->gallery : *features_only;
  gallery::IdentificationEvalOptions how;
  how.min_quality = opt.min_quality;
  how.reject_rate = opt.reject_rate;
  print_identification(gallery::evaluate_identification(gallery, probes, how), gallery.location(),
                       opt.json);
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
  const auto files = resolve_model_files(opt);
  Embedder embedder = load_model(files, opt);
  const auto binding = binding_of(embedder, files.weights);
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

namespace {

// A declared subcommand and the runner of its options.
struct Subcommand {
  CLI::App* app;
  Runner run;
};

Subcommand add_enroll(CLI::App& cmd) {
  auto opt = std::make_shared<EnrollOptions>();
  auto* c = cmd.add_subcommand("enroll", "Enrol people from photos");
  add_gallery_options(*c, opt->g, true);
  c->add_option("photos", opt->inputs, "Photos, folders or @list.txt")->required();
  c->add_option("--person", opt->person, "Who the photos show");
  c->add_flag("--by-folder", opt->by_folder, "Each sub-folder is a person");
  c->add_option("--min-quality", opt->min_quality,
                "Refuse faces below this magnitude (default: the model's quality threshold "
                "for MagFace models)");
  c->add_flag("--force", opt->force, "Enrol faces below the quality bar too");
  return {c, [opt] { return run_enroll(*opt); }};
}

Subcommand add_search(CLI::App& cmd) {
  auto opt = std::make_shared<SearchOptions>();
  auto* c = cmd.add_subcommand("search", "Who is this? The nearest enrolled people");
  add_gallery_options(*c, opt->g, true);
  opt->keep_option = c->get_option("--keep");
  c->add_option("photos", opt->inputs, "Photos, folders or @list.txt");
  c->add_option("--top-k", opt->top_k, "Candidates per face")->capture_default_str();
  c->add_option("--threshold", opt->threshold,
                "Cosine for a match (default: the model's same-person threshold)");
  c->add_option("--min-quality", opt->min_quality,
                "Faces below this magnitude are 'too poor to decide'");
  c->add_flag("--stdin", opt->from_stdin,
              "Read photo paths from standard input, one per line, answering each");
  c->add_option("--index", opt->index, "exact, hnsw or ivf")
      ->check(CLI::IsMember({"exact", "hnsw", "ivf"}))
      ->capture_default_str();
  return {c, [opt] { return run_search(*opt); }};
}

// A subcommand whose options are the gallery's (and, `with_model`, its model's) alone.
Subcommand add_plain(CLI::App& cmd, const std::string& name, const std::string& description,
                     bool with_model, int (*run)(const GalleryOptions&)) {
  auto opt = std::make_shared<GalleryOptions>();
  auto* c = cmd.add_subcommand(name, description);
  add_gallery_options(*c, *opt, with_model);
  return {c, [opt, run] { return run(*opt); }};
}

// show, remove, rename: who, by name (or face id).
std::vector<Subcommand> add_person_commands(CLI::App& cmd) {
  auto show = std::make_shared<ShowOptions>();
  auto* c_show = cmd.add_subcommand("show", "One person's faces");
  add_gallery_options(*c_show, show->g, false);
  c_show->add_option("person", show->person, "Name")->required();

  auto remove = std::make_shared<RemoveOptions>();
  auto* c_remove = cmd.add_subcommand("remove", "Remove a person, or one face (--face ID)");
  add_gallery_options(*c_remove, remove->g, false);
  c_remove->add_option("person", remove->person, "Name");
  c_remove->add_option("--face", remove->face, "Face id (from show or search)");

  auto rename = std::make_shared<RenameOptions>();
  auto* c_rename = cmd.add_subcommand("rename", "Rename a person");
  add_gallery_options(*c_rename, rename->g, false);
  c_rename->add_option("from", rename->from, "Current name")->required();
  c_rename->add_option("to", rename->to, "New name")->required();
  return {{c_show, [show] { return run_show(*show); }},
          {c_remove, [remove] { return run_remove(*remove); }},
          {c_rename, [rename] { return run_rename(*rename); }}};
}

Subcommand add_transfer(CLI::App& cmd, const std::string& name, const std::string& description,
                        const std::string& path_name, const std::string& path_description,
                        int (*run)(const TransferOptions&)) {
  auto opt = std::make_shared<TransferOptions>();
  auto* c = cmd.add_subcommand(name, description);
  add_gallery_options(*c, opt->g, false);
  c->add_option(path_name, opt->path, path_description)->required();
  return {c, [opt, run] { return run(*opt); }};
}

Subcommand add_reembed(CLI::App& cmd) {
  auto opt = std::make_shared<ReembedOptions>();
  auto* c = cmd.add_subcommand("reembed", "A new gallery for another model from the stored photos");
  add_gallery_options(*c, opt->g, true);
  c->add_option("--out", opt->out, "The new gallery")->required();
  return {c, [opt] { return run_reembed(*opt); }};
}

}  // namespace

Runner add_gallery_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("gallery", "A persistent, quality-aware 1:N gallery");
  cmd->require_subcommand(1);
  std::vector<Subcommand> subs;
  subs.push_back(add_plain(*cmd, "create", "A new gallery bound to one model", true, run_create));
  subs.push_back(add_enroll(*cmd));
  subs.push_back(add_search(*cmd));
  subs.push_back(
      add_plain(*cmd, "list", "Enrolled people, their face counts and quality", false, run_list));
  for (auto& s : add_person_commands(*cmd)) subs.push_back(std::move(s));
  subs.push_back(add_transfer(*cmd, "export", "OUT.npy (raw embeddings), OUT.jsonl, OUT.model.json",
                              "out", "Output name (without extension)", run_export));
  subs.push_back(add_transfer(*cmd, "import", "Add an export's faces (creating the gallery)", "in",
                              "Export name (without extension)", run_import));
  subs.push_back(
      add_plain(*cmd, "check", "Every row decodes, templates and index agree", false, run_check));
  subs.push_back(add_reembed(*cmd));
  return [subs]() -> int {
    for (const auto& s : subs) {
      if (s.app->parsed()) return s.run();
    }
    return -1;
  };
}

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
