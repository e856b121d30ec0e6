// `facemag gallery ...`: a persistent 1:N gallery (create, enroll, search, list, show, remove,
// rename, export, import, check, reembed; assign, unassigned, merge, split, recluster) and
// `facemag eval identify` over it. Each runner turns
// its flags into the library's options (gallery/photos.hpp, gallery/evaluate.hpp), makes the call
// and prints what it hands back (JSON by gallery/json.hpp).
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/gallery/archive.hpp"
#include "facemag/gallery/assign.hpp"
#include "facemag/gallery/contents.hpp"
#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/evaluate.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/json.hpp"
#include "facemag/gallery/photos.hpp"
#include "facemag/gallery/text.hpp"
#include "gallery_model.hpp"

namespace facemag::cli {
namespace {

using gallery::binding_of;
using gallery::Gallery;

// What every gallery subcommand takes: the gallery and, for those that embed, the model options.
struct GalleryOptions {
  std::string db;
  ModelOptions model;
  bool arch_given() const { return model.arch_option && model.arch_option->count() > 0; }
};

void add_gallery_options(CLI::App& cmd, GalleryOptions& opt, bool with_model) {
  cmd.add_option("db", opt.db, "Gallery: a SQLite file, or postgresql://user@host/db")->required();
  if (!with_model) return;
  add_model_options(cmd, opt.model, "mobilefacenet");
  add_face_choice_options(cmd, opt.model);
}

// The detector of the options with the pipeline over the gallery's model, once per command.
gallery::PhotoPipeline photo_pipeline(const OpenGallery& open) {
  return gallery::PhotoPipeline(load_detector(open.model.detector), open.embedder,
                                to_mtcnn_options(open.model.detector));
}

// A photo or face the library left out, on stderr.
void report_failure(const gallery::PhotoFailure& f) {
  const auto [what, why] = gallery::describe(f);
  report_skipped(what, why);
}

// ---- create ----

int run_create(const GalleryOptions& opt) {
  const auto files = resolve_model_files(opt.model);
  const Embedder embedder = load_model(files, opt.model);
  const auto g = Gallery::create(opt.db, binding_of(embedder, files.weights));
  std::printf("created %s for %s\n", g.location().c_str(), g.model().describe().c_str());
  return kExitOk;
}

// ---- enroll ----

struct EnrollOptions : GalleryOptions {
  std::vector<std::string> inputs;
  std::string person;
  bool by_folder = false;
  gallery::EnrolPhotosOptions how;  // --min-quality, --force
  std::string shard;                // --shard: this job's part of the photos
};

int run_enroll(const EnrollOptions& opt) {
  if (opt.person.empty() == !opt.by_folder)
    throw InvalidInput("say who the photos show: --person NAME, or --by-folder");
  auto open = open_with_model(opt.db, opt.model, opt.arch_given());
  auto& gallery = open.gallery;
  const auto files = input_files(opt.inputs, opt.shard);
  const auto photos = photo_pipeline(open);
  auto how = opt.how;
  if (!opt.by_folder) how.person = opt.person;
  how.keep = keep_option_value(opt.model.keep);
  gallery::EnrolPhotosResult done;
  {
    ProgressBar progress(files.size(), "enroll");
    done = gallery::enrol_photos(gallery, photos.pipeline(), files, how, report_failure,
                                 [&](const gallery::EnrolChunk& chunk) {
                                   // One acknowledgement per committed face.
                                   for (const auto& f : chunk.faces)
                                     std::cout << gallery::to_json(f) << "\n";
                                   std::cout.flush();
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

struct SearchOptions : GalleryOptions {
  std::vector<std::string> inputs;
  gallery::SearchPhotosOptions how;  // --top-k, --min-quality
  double threshold = -2;
  bool from_stdin = false;
  GalleryIndexOptions index;
  CLI::Option* keep_option = nullptr;
  bool keep_given() const { return keep_option && keep_option->count() > 0; }
};

// Searches the photos, printing each chunk's answers as they come (a table on a terminal, JSON
// Lines otherwise). Returns the number of photos that failed.
std::size_t search_and_print(const Gallery& gallery, const FacePipeline& pipeline,
                             const std::vector<io::InputFile>& files,
                             const gallery::SearchPhotosOptions& how, bool table) {
  ProgressBar progress(files.size(), "search");
  return gallery::search_photos(gallery, pipeline, files, how, report_failure,
                                [&](const gallery::SearchChunk& chunk) {
                                  for (const auto& answer : chunk.answers) {
                                    if (table)
                                      std::fputs(gallery::to_text(answer).c_str(), stdout);
                                    else
                                      std::cout << gallery::to_json(answer) << "\n";
                                  }
                                  std::cout.flush();
                                  progress.advance(chunk.inputs);
                                });
}

int run_search(const SearchOptions& opt) {
  auto open = open_with_model(opt.db, opt.model, opt.arch_given(), opt.index);
  const auto& gallery = open.gallery;
  auto how = opt.how;
  if (opt.threshold > -2) how.same_person_threshold = opt.threshold;
  const bool table = isatty(STDOUT_FILENO);
  // Every face of a probe photo is searched unless --keep chooses one.
  how.keep = opt.keep_given() ? keep_option_value(opt.model.keep) : KeepFaces::kAll;
  const auto photos = photo_pipeline(open);
  if (opt.from_stdin) {
    // One photo path per line, answered as it comes (a long-running searcher sees other
    // processes' enrolments: the index follows the store's generation).
    std::size_t failures = 0;
    for (std::string line; std::getline(std::cin, line);) {
      if (line.empty()) continue;
      const std::vector<io::InputFile> one{{line, std::filesystem::path(line).filename()}};
      failures += search_and_print(gallery, photos.pipeline(), one, how, table);
    }
    return failures ? kExitSomeInputsFailed : kExitOk;
  }
  const auto files = input_files(opt.inputs);
  const auto failures = search_and_print(gallery, photos.pipeline(), files, how, table);
  return finish_batch(failures, files.size());
}

// ---- assign / unassigned / merge / split / recluster ----

struct AssignCommandOptions : GalleryOptions {
  std::vector<std::string> inputs;
  gallery::AssignPhotosOptions how;  // --min-quality, --min-faces
  double threshold = -2, cluster_threshold = -2;
  std::string out;
  CLI::Option* keep_option = nullptr;
  bool keep_given() const { return keep_option && keep_option->count() > 0; }
};

int run_assign(const AssignCommandOptions& opt) {
  auto open = open_with_model(opt.db, opt.model, opt.arch_given());
  auto how = opt.how;
  if (opt.threshold > -2) how.same_person_threshold = opt.threshold;
  if (opt.cluster_threshold > -2) how.cluster_threshold = opt.cluster_threshold;
  // Every face of a photo joins someone or waits unassigned, unless --keep chooses one.
  how.keep = opt.keep_given() ? keep_option_value(opt.model.keep) : KeepFaces::kAll;
  std::ofstream jsonl;
  if (!opt.out.empty()) {
    jsonl.open(opt.out);
    if (!jsonl) throw InvalidInput(opt.out + ": cannot write the records here");
  }
  const auto files = input_files(opt.inputs);
  const auto photos = photo_pipeline(open);
  gallery::AssignPhotosResult done;
  {
    ProgressBar progress(files.size(), "assign");
    done = gallery::assign_photos(open.gallery, photos.pipeline(), files, how, report_failure,
                                  [&](std::size_t inputs) { progress.advance(inputs); });
  }
  // One line per face, where it stands after the whole run.
  for (const auto& face : done.faces) {
    std::fputs(gallery::to_text(face).c_str(), stdout);
    if (jsonl.is_open()) jsonl << gallery::to_json(face) << "\n";
  }
  std::fflush(stdout);
  for (const auto& person : done.proposed)
    spdlog::info("proposed {} ({} faces): name it with `facemag gallery rename {} {} NAME`",
                 person.name, person.faces.size(), opt.db, person.name);
  spdlog::info("{}", gallery::assign_summary(done));
  return finish_batch(done.failed_photos, files.size());
}

int run_unassigned(const GalleryOptions& opt) {
  const auto g = Gallery::open(opt.db);
  for (const auto& f : g.unassigned()) std::cout << gallery::to_json(f) << "\n";
  return kExitOk;
}

struct MergeOptions : GalleryOptions {
  std::string into, from;
};

int run_merge(const MergeOptions& opt) {
  auto g = Gallery::open(opt.db);
  g.merge_persons(opt.into, opt.from);
  std::printf("merged %s into %s\n", opt.from.c_str(), opt.into.c_str());
  return kExitOk;
}

struct SplitOptions : GalleryOptions {
  std::string person;
  std::vector<std::int64_t> faces;
};

int run_split(const SplitOptions& opt) {
  auto g = Gallery::open(opt.db);
  const auto name = g.split_person(opt.person, opt.faces);
  std::printf("split %zu face(s) of %s into %s\n", opt.faces.size(), opt.person.c_str(),
              name.c_str());
  return kExitOk;
}

struct ReclusterOptions : GalleryOptions {
  gallery::AssignOptions how;  // --min-quality, --min-faces
  double cluster_threshold = -2;
};

int run_recluster(const ReclusterOptions& opt) {
  auto g = Gallery::open(opt.db);
  auto how = opt.how;
  if (opt.cluster_threshold > -2) how.cluster_threshold = opt.cluster_threshold;
  const auto done = gallery::recluster(g, how);
  for (const auto& person : done.people) std::cout << gallery::to_json(person) << "\n";
  spdlog::info(
      "{} proposed people ({} kept their names, {} new), {} dissolved; {} faces unassigned; "
      "clustering threshold {}",
      done.people.size(), done.kept.size(), done.people.size() - done.kept.size(),
      done.dissolved.size(), done.unassigned, gallery::grouping_of(g.model(), how).threshold);
  return kExitOk;
}

// ---- list / show / remove / rename / check ----

int run_list(const GalleryOptions& opt) {
  const auto g = Gallery::open(opt.db);
  const auto held = gallery::contents_of(g);
  for (const auto& p : held.persons) std::cout << gallery::to_json(p) << "\n";
  spdlog::info("{}", gallery::contents_summary(held, g));
  return kExitOk;
}

// Who (show, remove, rename): a person by name, or (remove) one face by id.
struct PersonOptions : GalleryOptions {
  std::string person, new_name;
  std::int64_t face = -1;
};

int run_show(const PersonOptions& opt) {
  const auto g = Gallery::open(opt.db);
  for (const auto& f : g.faces(opt.person)) std::cout << gallery::to_json(f) << "\n";
  return kExitOk;
}

int run_remove(const PersonOptions& opt) {
  auto g = Gallery::open(opt.db);
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

int run_rename(const PersonOptions& opt) {
  auto g = Gallery::open(opt.db);
  g.rename_person(opt.person, opt.new_name);
  std::printf("renamed %s to %s\n", opt.person.c_str(), opt.new_name.c_str());
  return kExitOk;
}

struct CheckOptions : GalleryOptions {
  GalleryIndexOptions index;
  bool recall = false;
  int recall_queries = 200;
};

int run_check(const CheckOptions& opt) {
  const auto g = open_indexed(opt.db, opt.index);
  const auto checked = gallery::check_gallery(g, opt.recall ? opt.recall_queries : 0);
  std::fputs(gallery::to_text(checked, g.location()).c_str(), stdout);
  return checked.sound() ? kExitOk : kExitSomeInputsFailed;
}

// ---- export / import / reembed ----

struct PathOptions : GalleryOptions {
  std::string path;  // export: OUT (OUT.npy, OUT.jsonl, OUT.model.json); import: IN; reembed: --out
};

int run_export(const PathOptions& opt) {
  const auto exported = gallery::export_gallery(Gallery::open(opt.db), opt.path);
  std::printf("exported %zu faces to %s.npy, %s.jsonl, %s.model.json\n", exported.faces,
              opt.path.c_str(), opt.path.c_str(), opt.path.c_str());
  return kExitOk;
}

int run_import(const PathOptions& opt) {
  const auto imported = gallery::import_gallery(opt.path, opt.db);
  std::printf("imported %d faces (%d already there) into %s\n", imported.added, imported.duplicates,
              imported.location.c_str());
  return kExitOk;
}

// A new gallery for another model from the stored source photos (gallery::reembed_gallery).
int run_reembed(const PathOptions& opt) {
  const auto old = Gallery::open(opt.db);
  if (opt.model.weights.empty()) throw InvalidInput("reembed needs the new model's --weights");
  const auto files = resolve_model_files(opt.model);
  const Embedder embedder = load_model(files, opt.model);
  const auto binding = binding_of(embedder, files.weights);
  std::optional<ProgressBar> progress;
  const auto done = gallery::reembed_gallery(old, embedder, binding, opt.path, report_failure,
                                             [&](std::size_t, std::size_t total) {
                                               if (!progress) progress.emplace(total, "reembed");
                                               progress->advance();
                                             });
  progress.reset();
  std::printf("%s: %zu of %zu faces re-embedded for %s; %zu left out\n", opt.path.c_str(),
              done.faces - done.left_out, done.faces, binding.describe().c_str(), done.left_out);
  return done.left_out ? kExitSomeInputsFailed : kExitOk;
}

// ---- eval identify ----

struct IdentifyOptions : GalleryOptions {
  std::vector<std::string> probes;
  bool by_folder = false;
  std::string features, labels;
  gallery::IdentificationEvalOptions how;  // --min-quality, --reject-rate
  std::string json;
};

int run_eval_identify(const IdentifyOptions& opt) {
  std::vector<gallery::IdentificationProbe> probes;
  std::optional<OpenGallery> open_model;
  std::optional<Gallery> features_only;
  if (!opt.features.empty()) {
    if (opt.labels.empty()) throw InvalidInput("--features needs --labels (one name per row)");
    features_only = Gallery::open(opt.db);
    probes = gallery::probes_from_features(eval::read_labelled_features(opt.features, opt.labels));
  } else {
    if (!opt.by_folder) throw InvalidInput("probe photos need --by-folder (sub-folder = person)");
    open_model.emplace(open_with_model(opt.db, opt.model, opt.arch_given()));
    const auto files = input_files(opt.probes);
    const auto photos = photo_pipeline(*open_model);
    ProgressBar progress(files.size(), "probes");
    probes = gallery::probes_from_photos(photos.pipeline(), files,
                                         keep_option_value(opt.model.keep), report_failure,
                                         [&](std::size_t inputs) { progress.advance(inputs); });
  }
  const Gallery& gallery = open_model ? open_model->gallery : *features_only;
  const auto evaluation = gallery::evaluate_identification(gallery, probes, opt.how);
  std::fputs(gallery::to_text(evaluation, gallery.location()).c_str(), stdout);
  if (!opt.json.empty())
    std::ofstream(opt.json) << gallery::to_json(evaluation, gallery.location()).dump(2) << "\n";
  return kExitOk;
}

// A declared subcommand and the runner of its options.
struct Subcommand {
  CLI::App* app;
  Runner run;
};
using Subcommands = std::vector<Subcommand>;

// Declares the subcommand `name` with the gallery's options (and, `with_model`, its model's),
// whose runner is `run`; the caller adds the subcommand's other flags to the options returned.
template <class Options>
std::pair<CLI::App*, Options*> declare(CLI::App& cmd, Subcommands& subs, const std::string& name,
                                       const std::string& description, bool with_model,
                                       int (*run)(const Options&)) {
  auto opt = std::make_shared<Options>();
  auto* c = cmd.add_subcommand(name, description);
  add_gallery_options(*c, *opt, with_model);
  subs.push_back({c, [opt, run] { return run(*opt); }});
  return {c, opt.get()};
}

// enroll and search: photos in.
void add_photo_commands(CLI::App& cmd, Subcommands& subs) {
  auto [enroll, e] = declare(cmd, subs, "enroll", "Enrol people from photos", true, run_enroll);
  enroll->add_option("photos", e->inputs, "Photos, folders or @list.txt")->required();
  enroll->add_option("--person", e->person, "Who the photos show");
  enroll->add_flag("--by-folder", e->by_folder, "Each sub-folder is a person");
  enroll->add_option("--min-quality", e->how.min_quality,
                     "Refuse faces below this magnitude (default: the model's quality threshold "
                     "for MagFace models)");
  enroll->add_flag("--force", e->how.force, "Enrol faces below the quality bar too");
  add_shard_option(*enroll, e->shard);

  auto [search, s] =
      declare(cmd, subs, "search", "Who is this? The nearest enrolled people", true, run_search);
  s->keep_option = search->get_option("--keep");
  search->add_option("photos", s->inputs, "Photos, folders or @list.txt");
  search->add_option("--top-k", s->how.top_k, "Candidates per face")->capture_default_str();
  search->add_option("--threshold", s->threshold,
                     "Cosine for a match (default: the model's same-person threshold)");
  search->add_option("--min-quality", s->how.min_quality,
                     "Faces below this magnitude are 'too poor to decide'");
  search->add_flag("--stdin", s->from_stdin,
                   "Read photo paths from standard input, one per line, answering each");
  add_gallery_index_options(*search, s->index);
}

// assign and what follows it: unassigned, merge, split, recluster.
void add_assign_commands(CLI::App& cmd, Subcommands& subs) {
  auto [assign, a] = declare(cmd, subs, "assign",
                             "New photos join known people; faces of nobody are grouped into "
                             "proposed people (unnamed-N)",
                             true, run_assign);
  a->keep_option = assign->get_option("--keep");
  assign->add_option("photos", a->inputs, "Photos, folders or @list.txt")->required();
  assign->add_option("--out", a->out, "Also write one JSON line per face here");
  assign->add_option("--threshold", a->threshold,
                     "Cosine to a person's template for a match (default: the gallery's "
                     "same-person threshold)");
  assign->add_option("--cluster-threshold", a->cluster_threshold,
                     "Average-linkage cosine that groups faces of nobody (default: the gallery's "
                     "clustering threshold)");
  assign->add_option("--min-faces", a->how.min_faces, "Faces a group needs to be proposed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  assign->add_option("--min-quality", a->how.min_quality,
                     "Faces below this magnitude are too poor: never matched, never grouped "
                     "(default: the model's quality threshold for MagFace models)");

  declare(cmd, subs, "unassigned", "Faces that matched nobody and are in no proposed person", false,
          run_unassigned);
  auto [merge, m] =
      declare(cmd, subs, "merge", "B's faces join A (A keeps its name)", false, run_merge);
  merge->add_option("a", m->into, "The person who stays")->required();
  merge->add_option("b", m->from, "The person whose faces join A")->required();
  auto [split, s] = declare(
      cmd, subs, "split", "Some faces of a person become a new proposed person", false, run_split);
  split->add_option("person", s->person, "Name")->required();
  split->add_option("--faces", s->faces, "Face ids (from show), comma-separated")
      ->delimiter(',')
      ->required();
  auto [recluster, r] =
      declare(cmd, subs, "recluster", "Regroup every face of no named person into proposed people",
              false, run_recluster);
  recluster->add_option("--cluster-threshold", r->cluster_threshold,
                        "Average-linkage cosine (default: the gallery's clustering threshold)");
  recluster->add_option("--min-faces", r->how.min_faces, "Faces a group needs to be proposed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  recluster->add_option("--min-quality", r->how.min_quality,
                        "Faces below this magnitude stay unassigned as too poor");
}

// show, remove, rename: who, by name (or face id).
void add_person_commands(CLI::App& cmd, Subcommands& subs) {
  auto [show, s] = declare(cmd, subs, "show", "One person's faces", false, run_show);
  show->add_option("person", s->person, "Name")->required();
  auto [remove, r] =
      declare(cmd, subs, "remove", "Remove a person, or one face (--face ID)", false, run_remove);
  remove->add_option("person", r->person, "Name");
  remove->add_option("--face", r->face, "Face id (from show or search)");
  auto [rename, n] =
      declare(cmd, subs, "rename", "Rename a person (naming a proposed person makes it known)",
              false, run_rename);
  rename->add_option("from", n->person, "Current name")->required();
  rename->add_option("to", n->new_name, "New name")->required();
}

}  // namespace

Runner add_gallery_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("gallery", "A persistent, quality-aware 1:N gallery");
  cmd->require_subcommand(1);
  Subcommands subs;
  declare(*cmd, subs, "create", "A new gallery bound to one model", true, run_create);
  add_photo_commands(*cmd, subs);
  declare(*cmd, subs, "list", "Enrolled people, their face counts and quality", false, run_list);
  add_person_commands(*cmd, subs);
  add_assign_commands(*cmd, subs);
  auto [out, o] = declare(*cmd, subs, "export",
                          "OUT.npy (raw embeddings), OUT.jsonl, OUT.model.json", false, run_export);
  out->add_option("out", o->path, "Output name (without extension)")->required();
  auto [in, i] = declare(*cmd, subs, "import", "Add an export's faces (creating the gallery)",
                         false, run_import);
  in->add_option("in", i->path, "Export name (without extension)")->required();
  auto [check, c] = declare(*cmd, subs, "check", "Every row decodes, templates and index agree",
                            false, run_check);
  add_gallery_index_options(*check, c->index);
  check->add_flag("--recall", c->recall,
                  "Also measure the index's recall@10 against exact search on stored faces");
  check->add_option("--recall-queries", c->recall_queries, "Stored faces --recall queries with")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  auto [reembed, r] =
      declare(*cmd, subs, "reembed", "A new gallery for another model from the stored photos", true,
              run_reembed);
  reembed->add_option("--out", r->path, "The new gallery")->required();
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
  cmd->add_option("--gallery", opt->db, "The gallery (file or postgresql:// URL)")->required();
  cmd->add_option("probes", opt->probes, "Probe photos (with --by-folder: sub-folder = person)");
  cmd->add_flag("--by-folder", opt->by_folder, "Each sub-folder of the probe folders is a person");
  cmd->add_option("--features", opt->features, "Probe embeddings (.npy) instead of photos");
  cmd->add_option("--labels", opt->labels, "With --features: one person name per row");
  cmd->add_option("--min-quality", opt->how.min_quality,
                  "Quality gate (default: the model's threshold for MagFace models)");
  cmd->add_option("--reject-rate", opt->how.reject_rate,
                  "Quality gate at this fraction of the probes (the lowest-quality ones), instead "
                  "of --min-quality")
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--json", opt->json, "Write every number here");
  add_model_options(*cmd, opt->model, "mobilefacenet");
  add_face_choice_options(*cmd, opt->model);
  return [cmd, opt]() -> int { return cmd->parsed() ? run_eval_identify(*opt) : -1; };
}

}  // namespace facemag::cli
