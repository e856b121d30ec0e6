// facemag.Gallery and facemag.eval: the gallery's photo and search calls (gallery/photos.hpp,
// decide.hpp) and the evaluation functions on NumPy arrays. Results are the library's JSON forms
// as dicts, the same records the CLI writes.
#include <torch/types.h>

#include <numeric>
#include <optional>

#include "binding.hpp"
#include "facemag/embed/embed_matrix.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster_evaluation.hpp"
#include "facemag/eval/erc.hpp"
#include "facemag/eval/ijb.hpp"
#include "facemag/eval/json.hpp"
#include "facemag/eval/knn_cluster.hpp"
#include "facemag/eval/pair_source.hpp"
#include "facemag/gallery/decide.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/gallery/json.hpp"
#include "facemag/gallery/photos.hpp"
#include "facemag/io/image.hpp"

namespace facemag::python {
namespace {

using namespace pybind11::literals;
using gallery::Gallery;

struct PyGallery {
  Gallery gallery;
};

// Photo arguments as the CLI takes them: files, folders (searched recursively) or @list.txt.
std::vector<io::InputFile> photo_files(py::handle photos) {
  std::vector<std::string> inputs;
  if (is_path(photos)) {
    inputs.push_back(to_path(photos).string());
  } else {
    for (const auto item : py::iter(photos)) {
      if (!is_path(item))
        throw InvalidInput("photos: expected paths (files, folders or @list.txt), found " +
                           std::string(py::str(py::type::of(item).attr("__name__"))));
      inputs.push_back(to_path(item).string());
    }
  }
  return io::expand_inputs(inputs);
}

const PyDetector& detector_or_default(const PyDetector* given, std::optional<PyDetector>& own) {
  return given ? *given : own.emplace(default_detector());
}

const char* kind_name(gallery::PhotoFailure::Kind kind) {
  using Kind = gallery::PhotoFailure::Kind;
  switch (kind) {
    case Kind::kUnreadable:
      return "unreadable";
    case Kind::kNoFace:
      return "no face";
    case Kind::kNoPersonFolder:
      return "no person folder";
    case Kind::kTooPoor:
      return "too poor";
    case Kind::kSourceGone:
      return "source gone";
    case Kind::kSourceChanged:
      return "source changed";
  }
  return "";
}

nlohmann::json failure_json(const gallery::PhotoFailure& f) {
  return {{"path", f.path}, {"reason", f.reason}, {"kind", kind_name(f.kind)}};
}

py::dict binding_dict(const gallery::ModelBinding& b) {
  return py::dict("model_name"_a = b.model_name, "architecture"_a = b.architecture,
                  "embedding_size"_a = b.embedding_size, "weights_sha256"_a = b.weights_sha256,
                  "magnitude_is_quality"_a = b.magnitude_is_quality,
                  "same_person_threshold"_a = b.same_person_threshold,
                  "quality_threshold"_a = b.quality_threshold, "weights_path"_a = b.weights_path);
}

// ---- Gallery ----

PyGallery create_gallery(const std::string& location, const PyEmbedder& e) {
  py::gil_scoped_release release;
  return {Gallery::create(location, gallery::binding_of(e.embedder, e.model.weights))};
}

PyGallery open_gallery(const std::string& location, const PyEmbedder* e, const std::string& index,
                       const std::string& index_file) {
  const auto kind = gallery::parse_index_kind(index);
  py::gil_scoped_release release;
  std::optional<gallery::ModelBinding> expected;
  if (e) expected = gallery::binding_of(e->embedder, e->model.weights);
  return {Gallery::open(location, expected, kind, index_file)};
}

py::object enroll(PyGallery& g, py::handle photos, const PyEmbedder& e, const PyDetector* detector,
                  const std::optional<std::string>& person, const std::string& keep,
                  double min_quality, bool force) {
  gallery::EnrolPhotosOptions options{person, min_quality, force, keep_of(keep)};
  const auto files = photo_files(photos);
  std::optional<PyDetector> own;
  const PyDetector& d = detector_or_default(detector, own);
  nlohmann::json faces = nlohmann::json::array(), failures = nlohmann::json::array();
  gallery::EnrolPhotosResult result;
  {
    py::gil_scoped_release release;
    g.gallery.require_model(gallery::binding_of(e.embedder, e.model.weights));
    const FacePipeline pipeline(d.detector, e.embedder, d.options);
    result = gallery::enrol_photos(
        g.gallery, pipeline, files, options,
        [&](const gallery::PhotoFailure& f) { failures.push_back(failure_json(f)); },
        [&](const gallery::EnrolChunk& chunk) {
          for (const auto& face : chunk.faces) faces.push_back(gallery::to_json(face));
        });
  }
  return to_python({{"added", result.added},
                    {"duplicates", result.duplicates},
                    {"refused", result.refused},
                    {"failed_photos", result.failed_photos},
                    {"faces", faces},
                    {"failures", failures}});
}

py::object search(const PyGallery& g, py::handle embeddings, int top_k, double min_quality,
                  std::optional<double> threshold) {
  const auto a = float_matrix(embeddings, "embeddings");
  if (a.ndim() != 1 && a.ndim() != 2)
    throw InvalidInput("embeddings: expected one embedding (D) or N x D, found " +
                       std::to_string(a.ndim()) + " dimensions");
  const std::size_t rows = a.ndim() == 1 ? 1 : static_cast<std::size_t>(a.shape(0));
  const std::size_t dim = a.ndim() == 1 ? a.shape(0) : a.shape(1);
  nlohmann::json answers = nlohmann::json::array();
  {
    py::gil_scoped_release release;
    const auto rules = gallery::decision_rules(g.gallery.model(), min_quality, threshold);
    for (std::size_t i = 0; i < rows; ++i) {
      const std::vector<float> row(a.data() + i * dim, a.data() + (i + 1) * dim);
      answers.push_back(gallery::to_json(
          gallery::identify(g.gallery, row, embedding_magnitude(row), top_k, rules)));
    }
  }
  return to_python(a.ndim() == 1 ? answers[0] : answers);
}

py::object search_photos(const PyGallery& g, py::handle photos, const PyEmbedder& e,
                         const PyDetector* detector, int top_k, const std::string& keep,
                         double min_quality, std::optional<double> threshold) {
  const gallery::SearchPhotosOptions options{top_k, min_quality, threshold, keep_of(keep)};
  const auto files = photo_files(photos);
  std::optional<PyDetector> own;
  const PyDetector& d = detector_or_default(detector, own);
  nlohmann::json answers = nlohmann::json::array(), failures = nlohmann::json::array();
  {
    py::gil_scoped_release release;
    g.gallery.require_model(gallery::binding_of(e.embedder, e.model.weights));
    const FacePipeline pipeline(d.detector, e.embedder, d.options);
    gallery::search_photos(
        g.gallery, pipeline, files, options,
        [&](const gallery::PhotoFailure& f) { failures.push_back(failure_json(f)); },
        [&](const gallery::SearchChunk& chunk) {
          for (const auto& answer : chunk.answers) answers.push_back(gallery::to_json(answer));
        });
  }
  return to_python({{"answers", answers}, {"failures", failures}});
}

template <typename T>
py::object json_list(const std::vector<T>& items) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& item : items) out.push_back(gallery::to_json(item));
  return to_python(out);
}

// ---- eval ----

// A NumPy array as a tensor over its memory (no copy): the array must outlive the tensor.
torch::Tensor float_tensor(const py::array_t<float, py::array::c_style>& a) {
  std::vector<std::int64_t> shape(a.shape(), a.shape() + a.ndim());
  return torch::from_blob(const_cast<float*>(a.data()), shape, torch::kFloat32);
}

py::array_t<std::int64_t, py::array::c_style> int_array(py::handle obj, const std::string& what) {
  const auto given = py::array::ensure(obj);
  if (!given) throw InvalidInput(what + ": not convertible to a NumPy array");
  const char kind = given.dtype().kind();
  if (kind != 'b' && kind != 'i' && kind != 'u')
    throw InvalidInput(what + ": expected integers or booleans, found dtype " +
                       given.dtype().attr("name").cast<std::string>());
  return py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(given);
}

torch::Tensor long_tensor(const py::array_t<std::int64_t, py::array::c_style>& a) {
  std::vector<std::int64_t> shape(a.shape(), a.shape() + a.ndim());
  return torch::from_blob(const_cast<std::int64_t*>(a.data()), shape, torch::kLong);
}

// Labelled pairs from arrays, as `eval pairs --features F --labels L [--pair-index I]` reads
// them from files.
eval::LoadedPairs loaded_pairs(py::handle features, py::handle labels, py::handle pair_index) {
  const auto f = float_matrix(features, "features");
  const auto l = int_array(labels, "labels");
  std::optional<py::array_t<std::int64_t, py::array::c_style>> p;
  if (!pair_index.is_none()) p = int_array(pair_index, "pair_index");
  eval::LoadedPairs out;
  {
    py::gil_scoped_release release;
    out.pairs = eval::make_feature_pairs(float_tensor(f), long_tensor(l),
                                         p ? long_tensor(*p) : torch::Tensor{});
  }
  out.source_index.resize(out.pairs.size());
  std::iota(out.source_index.begin(), out.source_index.end(), std::size_t{0});
  out.description = "arrays";
  return out;
}

ClusterMethod cluster_method(const std::string& name) {
  if (name == "auto") return ClusterMethod::kAuto;
  for (const auto method : {ClusterMethod::kExact, ClusterMethod::kGraph}) {
    if (name == cluster_method_name(method)) return method;
  }
  throw InvalidInput("unknown clustering method '" + name + "' (auto, exact, graph)");
}

const char* kGalleryDoc =
    R"doc(A persistent 1:N gallery (SQLite file or postgresql:// URL) bound to one model: the
same store `facemag gallery ...` reads and writes.

Gallery.create(location, embedder)   a new gallery bound to the embedder's model
Gallery.open(location, embedder=None, index="auto", index_file="")   an existing one; with an
    embedder, refuses a gallery of another model (GalleryError naming both). index: "auto"
    (exact up to 20 000 people, hnsw above), "exact", "hnsw", "ivf"; index_file: where an hnsw
    index is saved and read back (default: LOCATION.index for a SQLite file, none on PostgreSQL).
The gallery follows other processes' changes before each search (index_status() says how).
Results are dicts in the CLI's JSON forms (`gallery search`, `gallery list`, `gallery show`).
Thread-safe (one writer at a time); calls that detect, embed or search release the GIL.)doc";

}  // namespace

void bind_gallery_eval(py::module_& m) {
  py::class_<PyGallery>(m, "Gallery", kGalleryDoc)
      .def_static("create", &create_gallery, "location"_a, "embedder"_a)
      .def_static("open", &open_gallery, "location"_a, "embedder"_a = nullptr, "index"_a = "auto",
                  "index_file"_a = "")
      .def_static("exists", &Gallery::exists, "location"_a, "Whether `location` holds a gallery.")
      .def(
          "enroll", &enroll, "photos"_a, "embedder"_a, py::kw_only(), "detector"_a = nullptr,
          "person"_a = py::none(), "keep"_a = "center", "min_quality"_a = 0.0, "force"_a = false,
          R"doc(enroll(photos, embedder, *, detector=None, person=None, keep="center", min_quality=0, force=False) -> dict

Enrols the faces of photos (paths: files, folders searched recursively, @list.txt), as
`facemag gallery enroll`: person=None takes each photo's first sub-folder as its person; faces
below the model's quality gate (or min_quality) are refused unless force. Returns {"added",
"duplicates", "refused", "failed_photos", "faces": [{"enrolled", "person", "quality", "face_id"
or "already_enrolled"}], "failures": [{"path", "reason", "kind"}]}.)doc")
      .def("search", &search, "embeddings"_a, py::kw_only(), "top_k"_a = 5, "min_quality"_a = 0.0,
           "threshold"_a = py::none(),
           R"doc(search(embeddings, *, top_k=5, min_quality=0, threshold=None) -> dict | list[dict]

The top_k people nearest to raw embeddings (one D-vector, or N x D) and the gallery's decision:
{"candidates": [{"person", "similarity", "best_face_similarity", "faces", "best_face_id"}],
"decision": "match" | "unknown" | "too poor to decide", "person" (a match), "threshold"}.)doc")
      .def("search_photos", &search_photos, "photos"_a, "embedder"_a, py::kw_only(),
           "detector"_a = nullptr, "top_k"_a = 5, "keep"_a = "all", "min_quality"_a = 0.0,
           "threshold"_a = py::none(),
           "search_photos(photos, embedder, *, detector=None, top_k=5, keep='all', ...) -> "
           "{'answers': [the records of `facemag gallery search`], 'failures': [...]}")
      .def(
          "persons",
          [](const PyGallery& g) {
            std::vector<gallery::PersonSummary> persons;
            {
              py::gil_scoped_release release;
              persons = g.gallery.persons();
            }
            return json_list(persons);
          },
          "[{'person', 'faces', 'mean_quality'}], as `facemag gallery list --json`.")
      .def(
          "faces",
          [](const PyGallery& g, const std::optional<std::string>& person) {
            std::vector<gallery::StoredFace> faces;
            {
              py::gil_scoped_release release;
              faces = g.gallery.faces(person);
            }
            return json_list(faces);
          },
          "person"_a = py::none(),
          "Stored faces (of one person): [{'id', 'person', 'source', 'image_sha256', 'box', "
          "'landmarks', 'score', 'quality', 'enrolled_at'}], as `facemag gallery show`.")
      .def(
          "remove",
          [](PyGallery& g, const std::string& person) {
            py::gil_scoped_release release;
            g.gallery.remove_person(person);
          },
          "person"_a, "Removes a person and their faces (GalleryError when unknown).")
      .def(
          "remove_face",
          [](PyGallery& g, std::int64_t id) {
            py::gil_scoped_release release;
            g.gallery.remove_face(id);
          },
          "face_id"_a, "Removes one stored face by its id (GalleryError when unknown).")
      .def(
          "rename",
          [](PyGallery& g, const std::string& from, const std::string& to) {
            py::gil_scoped_release release;
            g.gallery.rename_person(from, to);
          },
          "old"_a, "new"_a)
      .def(
          "check",
          [](const PyGallery& g) {
            py::gil_scoped_release release;
            return g.gallery.check();
          },
          "Problems found (one line each); [] when the store and its index are sound.")
      .def(
          "index_status",
          [](const PyGallery& g) {
            gallery::IndexStatus status;
            {
              py::gil_scoped_release release;
              status = g.gallery.index_status();
            }
            return to_python(gallery::to_json(status));
          },
          "The index after following every change in the store: {'kind', 'people', 'generation', "
          "'full_loads', 'people_followed', 'rebuilds', 'rebuilding', 'from_saved_file'}.")
      .def(
          "index_recall",
          [](const PyGallery& g, int queries, int k) {
            gallery::IndexRecall r;
            {
              py::gil_scoped_release release;
              r = g.gallery.index_recall(queries, k);
            }
            return r.recall;
          },
          "queries"_a = 200, "k"_a = 10,
          "The index's recall@k against exact search, with `queries` stored faces as queries "
          "(`facemag gallery check --recall`).")
      .def_property_readonly("model",
                             [](const PyGallery& g) { return binding_dict(g.gallery.model()); })
      .def_property_readonly("location", [](const PyGallery& g) { return g.gallery.location(); })
      .def("__len__", [](const PyGallery& g) { return g.gallery.persons().size(); })
      .def("__repr__", [](const PyGallery& g) {
        return "Gallery('" + g.gallery.location() + "', " + g.gallery.model().describe() + ")";
      });

  auto ev = m.def_submodule("_eval", "facemag.eval, bound.");
  ev.def(
      "pairs",
      [](py::handle features, py::handle labels, py::handle pair_index, const std::string& protocol,
         int folds, bool subtract_mean, std::vector<double> fmrs) {
        auto loaded = loaded_pairs(features, labels, pair_index);
        eval::PairsEvaluationOptions options;
        options.protocol = protocol;
        options.kfold.folds = folds;
        options.kfold.subtract_mean = subtract_mean;
        options.fmrs = std::move(fmrs);
        nlohmann::json out;
        {
          py::gil_scoped_release release;
          out = eval::to_json(eval::evaluate_pairs(loaded, options));
        }
        return to_python(out);
      },
      "features"_a, "labels"_a, "pair_index"_a = py::none(), py::kw_only(),
      "protocol"_a = "magface", "folds"_a = 10, "subtract_mean"_a = true,
      "fmrs"_a = std::vector<double>{1e-1, 1e-2, 1e-3, 1e-4});
  ev.def(
      "erc",
      [](py::handle features, py::handle labels, py::handle pair_index, std::vector<double> fmrs,
         int random_repeats, std::optional<std::vector<double>> quality) {
        const auto loaded = loaded_pairs(features, labels, pair_index);
        nlohmann::json out;
        {
          py::gil_scoped_release release;
          out = eval::to_json(
              quality ? eval::summarize_error_versus_reject(
                            loaded.pairs, eval::pair_qualities(loaded.pairs, *quality, "quality"),
                            "quality", fmrs, random_repeats)
                      : eval::summarize_error_versus_reject(loaded.pairs, fmrs, random_repeats));
        }
        return to_python(out);
      },
      "features"_a, "labels"_a, "pair_index"_a = py::none(), py::kw_only(),
      "fmrs"_a = std::vector<double>{1e-3}, "random_repeats"_a = 20, "quality"_a = py::none());
  ev.def(
      "ijb",
      [](py::handle features, py::handle meta, const std::string& type, bool quality_weighted) {
        const auto f = float_matrix(features, "features");
        const eval::IjbMeta where{to_path(meta), type};
        nlohmann::json out;
        {
          py::gil_scoped_release release;
          out = eval::to_json(eval::verify_ijb_templates(
              where, [&f](const eval::IjbFaceList&) { return float_tensor(f); }, quality_weighted));
        }
        return to_python(out);
      },
      "features"_a, "meta"_a, py::kw_only(), "type"_a = "c", "quality_weighted"_a = false);
  ev.def(
      "cluster",
      [](py::handle embeddings, double threshold, const std::string& method) {
        const auto f = float_matrix(embeddings, "embeddings");
        if (f.ndim() != 2) throw InvalidInput("embeddings: expected an N x D array");
        ClusterOptions options;
        options.method = cluster_method(method);
        GroupedFaces grouped;
        {
          py::gil_scoped_release release;
          grouped = group_faces(float_tensor(f), threshold, options);
        }
        py::array_t<std::int64_t> labels(static_cast<py::ssize_t>(grouped.clustering.group.size()));
        for (std::size_t i = 0; i < grouped.clustering.group.size(); ++i)
          labels.mutable_data()[i] = grouped.clustering.group[i];
        py::list groups;
        for (const auto& g : grouped.groups) {
          py::list faces;
          for (const auto& p : g.faces)
            faces.append(py::dict(
                "row"_a = p.row, "similarity"_a = p.similarity, "next_group"_a = p.next_group,
                "next_similarity"_a = p.next_similarity, "verdict"_a = verdict_name(p.verdict)));
          groups.append(py::dict("faces"_a = faces, "mean_similarity"_a = g.mean_similarity));
        }
        return py::dict("labels"_a = labels, "groups"_a = groups,
                        "method"_a = cluster_method_name(grouped.method));
      },
      "embeddings"_a, "threshold"_a, py::kw_only(), "method"_a = "auto");
  ev.def(
      "cluster_scores",
      [](py::handle predicted, py::handle truth) {
        const auto p = int_array(predicted, "predicted"), t = int_array(truth, "truth");
        if (p.size() != t.size())
          throw InvalidInput("predicted and truth: one label per face each, found " +
                             std::to_string(p.size()) + " and " + std::to_string(t.size()));
        const std::vector<int> pv(p.data(), p.data() + p.size()), tv(t.data(), t.data() + t.size());
        return to_python(eval::to_json(score_clustering(pv, tv)));
      },
      "predicted"_a, "truth"_a);
}

}  // namespace facemag::python
