// facemag.Detection, Detector, align, margin_crop, Embedder and PhotoEmbeddings: the models, bound.
// Every call that runs a network releases the GIL once its arguments are converted.
#include <pybind11/numpy.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <optional>

#include "binding.hpp"
#include "facemag/align/align.hpp"
#include "facemag/detect/json.hpp"
#include "facemag/embed/embed_matrix.hpp"
#include "facemag/embed/face_quality.hpp"
#include "facemag/embed_files.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/cluster_photos.hpp"
#include "facemag/eval/json.hpp"
#include "facemag/eval/pair_decision.hpp"
#include "facemag/io/image.hpp"
#include "facemag/model/manifest.hpp"
#include "facemag/runtime.hpp"

namespace facemag::python {
namespace {

using namespace pybind11::literals;

// ---- Detection ----

py::array_t<float> box_array(const Box& b) {
  py::array_t<float> out(4);
  auto* p = out.mutable_data();
  p[0] = b.x1, p[1] = b.y1, p[2] = b.x2, p[3] = b.y2;
  return out;
}

py::array_t<float> landmark_array(const Landmarks5& l) {
  py::array_t<float> out({5, 2});
  auto* p = out.mutable_data();
  for (int i = 0; i < 5; ++i) p[2 * i] = l[i].x, p[2 * i + 1] = l[i].y;
  return out;
}

// Five (x, y) points, Landmarks5's order, from a Detection or anything NumPy reads as 5 x 2.
Landmarks5 landmarks_of(py::handle obj) {
  if (py::isinstance<Detection>(obj)) return obj.cast<const Detection&>().landmarks;
  const auto a = float_matrix(obj, "landmarks");
  if (a.size() != 10)
    throw InvalidInput(
        "landmarks: expected 5 (x, y) points (a 5 x 2 array or a Detection), found " +
        std::to_string(a.size()) + " values");
  Landmarks5 out;
  for (int i = 0; i < 5; ++i) out[i] = {a.data()[2 * i], a.data()[2 * i + 1]};
  return out;
}

Box box_of(py::handle obj) {
  if (py::isinstance<Detection>(obj)) return obj.cast<const Detection&>().box;
  const auto a = float_matrix(obj, "box");
  if (a.size() != 4)
    throw InvalidInput("box: expected [x1, y1, x2, y2] (or a Detection), found " +
                       std::to_string(a.size()) + " values");
  return {a.data()[0], a.data()[1], a.data()[2], a.data()[3]};
}

std::string repr(const Detection& d) {
  char text[160];
  std::snprintf(text, sizeof text, "Detection(box=[%.1f, %.1f, %.1f, %.1f], score=%.5f)", d.box.x1,
                d.box.y1, d.box.x2, d.box.y2, d.score);
  return text;
}

// ---- Detector ----

PyDetector load_detector(const py::object& folder, int min_face_size,
                         const std::array<float, 3>& thresholds, double factor) {
  const std::filesystem::path given = folder.is_none() ? std::filesystem::path{} : to_path(folder);
  py::gil_scoped_release release;
  const auto where = mtcnn_folder(given);
  return PyDetector{MtcnnDetector::load(where), {min_face_size, thresholds, factor}, where};
}

// facenet-pytorch's MTCNN.detect(img, landmarks=True) of one image: (boxes N x 4, probs N,
// points N x 5 x 2), float32, largest face first; (None, [None], None) without a face.
py::tuple facenet_layout(const std::vector<Detection>& faces) {
  if (faces.empty()) {
    py::list probs;
    probs.append(py::none());
    return py::make_tuple(py::none(), probs, py::none());
  }
  const auto n = static_cast<py::ssize_t>(faces.size());
  py::array_t<float> boxes({n, py::ssize_t{4}}), probs(n),
      points({n, py::ssize_t{5}, py::ssize_t{2}});
  for (py::ssize_t i = 0; i < n; ++i) {
    const auto& f = faces[static_cast<std::size_t>(i)];
    std::memcpy(boxes.mutable_data(i), box_array(f.box).data(), 4 * sizeof(float));
    probs.mutable_data()[i] = f.score;
    std::memcpy(points.mutable_data(i), landmark_array(f.landmarks).data(), 10 * sizeof(float));
  }
  return py::make_tuple(boxes, probs, points);
}

// Per image results stacked as facenet-pytorch stacks them (np.array of the list), or, where
// NumPy cannot stack them (different face counts), an object array of the per-image results.
py::object stacked(const py::list& items) {
  const auto np = py::module_::import("numpy");
  try {
    return np.attr("array")(items);
  } catch (const py::error_already_set&) {
    py::array out = np.attr("empty")(items.size(), "dtype"_a = "object");
    for (std::size_t i = 0; i < items.size(); ++i) out.attr("__setitem__")(i, items[i]);
    return out;
  }
}

py::object detect(const PyDetector& d, py::handle images, bool bgr, bool as_arrays) {
  const auto inputs = image_inputs(images, bgr, "images");
  std::vector<std::vector<Detection>> found;
  {
    py::gil_scoped_release release;
    found = d.detector.detect_batch(decoded(inputs), d.options);
  }
  if (as_arrays) {
    if (inputs.single) return facenet_layout(found.front());
    py::list boxes, probs, points;
    for (const auto& faces : found) {
      const auto t = facenet_layout(faces);
      boxes.append(t[0]), probs.append(t[1]), points.append(t[2]);
    }
    return py::make_tuple(stacked(boxes), stacked(probs), stacked(points));
  }
  if (inputs.single) return py::cast(found.front());
  return py::cast(found);
}

// ---- alignment ----

// An image argument for a geometric call: arrays keep their channel order (the warp does not
// care), a path is decoded and handed back in RGB, or BGR with `bgr`.
struct PassThrough {
  cv::Mat pixels;
  bool from_path = false;
  py::object borrowed;
};
PassThrough pixels_of(py::handle image, const std::string& what) {
  const auto inputs = image_inputs(image, /*bgr=*/true, what);
  if (!inputs.single) throw InvalidInput(what + ": expected one image (H x W x 3 array or a path)");
  const auto& item = inputs.items.front();
  if (!item.path.empty()) {
    py::gil_scoped_release release;
    return {io::read_image_bgr(item.path), true, {}};
  }
  return {item.bgr, false, inputs.borrowed.front()};
}

py::array handed_back(const cv::Mat& out, const PassThrough& in, bool bgr) {
  return image_to_array(out, !in.from_path || bgr);
}

// ---- Embedder ----

PyEmbedder load_embedder(const py::object& arch, const py::object& weights, const py::object& model,
                         const py::object& manifest, const std::string& precision, int threads,
                         int batch, bool flip, bool prewhiten, bool verify,
                         const py::object& int8_calibration, bool clustering) {
  if (batch < 1) throw InvalidInput("batch must be at least 1, found " + std::to_string(batch));
  ModelRequest request;
  if (!arch.is_none()) request.architecture = arch.cast<std::string>();
  request.architecture_given = !arch.is_none();
  if (!weights.is_none()) request.weights = to_path(weights);
  if (!model.is_none()) request.store_name = model.cast<std::string>();
  if (!manifest.is_none()) request.manifest = to_path(manifest);
  request.concat_flipped = flip;
  request.prewhiten = prewhiten;
  EmbedderOptions options{
      parse_precision(precision), verify,
      int8_calibration.is_none() ? std::filesystem::path{} : to_path(int8_calibration)};
  py::gil_scoped_release release;
  configure_runtime(threads);
  ResolvedModel resolved = resolve_model(request);
  if (clustering) resolved.manifest = eval::clustering_manifest(std::move(resolved.manifest));
  Embedder embedder = Embedder::load(resolved, options);
  return PyEmbedder{std::move(embedder), std::move(resolved), batch};
}

PyEmbedder formula_embedder(const std::string& arch, const std::string& precision, int threads,
                            int batch, bool flip) {
  if (batch < 1) throw InvalidInput("batch must be at least 1, found " + std::to_string(batch));
  ModelManifest manifest = builtin_manifest(arch);
  manifest.concat_flipped = flip;
  const EmbedderOptions options{parse_precision(precision), true, {}};
  py::gil_scoped_release release;
  configure_runtime(threads);
  Embedder embedder = Embedder::with_formula_weights(manifest, options);
  ResolvedModel model{{}, embedder.manifest(), {}, "formula weights"};
  return PyEmbedder{std::move(embedder), std::move(model), batch};
}

// Aligned crops of the model's input size; InvalidInput naming the first that is not.
void check_aligned(const PyEmbedder& e, const std::vector<cv::Mat>& faces,
                   const ImageInputs& inputs) {
  const auto& m = e.embedder.manifest();
  for (std::size_t i = 0; i < faces.size(); ++i) {
    if (faces[i].rows == m.input_height && faces[i].cols == m.input_width) continue;
    throw InvalidInput(inputs.items[i].name + ": image is " + std::to_string(faces[i].cols) + "x" +
                       std::to_string(faces[i].rows) + ", an aligned face for " + m.name + " is " +
                       std::to_string(m.input_width) + "x" + std::to_string(m.input_height) +
                       " (width x height; embed_photos() detects and aligns faces in photos)");
  }
}

// N x D raw embeddings of aligned faces, `batch` faces per network pass (as the CLI's --batch),
// each chunk's matrix copied once into the result.
// The raw embeddings of aligned crops; with `qualities`, also each face's quality
// (face_quality.hpp: the model's rule, from its magnitude and its crop).
py::array_t<float> embed(const PyEmbedder& e, py::handle faces, bool bgr,
                         std::vector<float>* qualities = nullptr) {
  const auto inputs = image_inputs(faces, bgr, "faces");
  const auto n = static_cast<py::ssize_t>(inputs.items.size());
  const auto dim = static_cast<py::ssize_t>(e.embedder.output_size());
  py::array_t<float> out({n, dim});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    const auto mats = decoded(inputs);
    check_aligned(e, mats, inputs);
    const auto batch = static_cast<std::size_t>(e.batch);
    for (std::size_t start = 0; start < mats.size(); start += batch) {
      const std::vector<cv::Mat> chunk(mats.begin() + start,
                                       mats.begin() + std::min(mats.size(), start + batch));
      const auto features = embed_matrix(e.embedder, chunk);
      std::memcpy(dst + start * dim, features.data_ptr<float>(),
                  chunk.size() * dim * sizeof(float));
      if (!qualities) continue;
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        const float* row = dst + (start + i) * dim;
        qualities->push_back(face_quality(e.embedder.manifest(),
                                          embedding_magnitude({row, static_cast<std::size_t>(dim)}),
                                          chunk[i]));
      }
    }
  }
  return out;
}

// One face of a photo in PhotoEmbeddings: which input it came from and where it is there.
struct PhotoFace {
  std::size_t photo = 0;           // index of the input
  std::string source;              // the path, or "photos[i]" for an array
  std::size_t index = 0;           // in the detector's order (largest first)
  std::size_t faces_in_photo = 0;  // faces the detector found there
  Detection detection;
  float quality = 0;  // Embedding::quality
};

struct PhotoEmbeddings {
  py::array_t<float> embeddings;  // N x D, row i of faces[i]
  std::vector<PhotoFace> faces;
  std::vector<std::pair<std::string, std::string>> failures;  // (input, reason)
  std::vector<std::size_t> faceless;                          // inputs without a face
  std::size_t photos = 0;
};

struct FaceRow {
  PhotoFace face;
  std::vector<float> raw;
};

PhotoEmbeddings assemble(std::vector<FaceRow> rows, PhotoEmbeddings out, std::size_t dim) {
  out.embeddings =
      py::array_t<float>({static_cast<py::ssize_t>(rows.size()), static_cast<py::ssize_t>(dim)});
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.embeddings.mutable_data(static_cast<py::ssize_t>(i)), rows[i].raw.data(),
                dim * sizeof(float));
    out.faces.push_back(std::move(rows[i].face));
  }
  return out;
}

PhotoEmbeddings embed_photos(const PyEmbedder& e, py::handle photos, const PyDetector* detector,
                             const std::string& keep_name, bool bgr) {
  const KeepFaces keep = keep_of(keep_name);
  const auto inputs = image_inputs(photos, bgr, "photos");
  std::optional<PyDetector> own;
  if (!detector) detector = &own.emplace(default_detector());
  const bool all_paths = std::all_of(inputs.items.begin(), inputs.items.end(),
                                     [](const ImageInput& i) { return !i.path.empty(); });
  std::vector<FaceRow> rows;
  PhotoEmbeddings out;
  out.photos = inputs.items.size();
  {
    py::gil_scoped_release release;
    if (all_paths) {
      // Files: the library's FileEmbedder, exactly what `facemag embed` runs (chunks of --batch).
      std::vector<std::filesystem::path> paths;
      for (const auto& item : inputs.items) paths.push_back(item.path);
      EmbedFilesOptions options;
      options.keep = keep;
      options.detection = detector->options;
      options.chunk = static_cast<std::size_t>(e.batch);
      const FileEmbedder files(e.embedder, &detector->detector, std::move(options));
      auto embedded = files.embed(paths);
      // Faces and faceless photos come in input order: a cursor maps each back to its input.
      const auto cursor_to = [&paths](std::size_t& cursor, const std::string& path) {
        while (cursor < paths.size() && paths[cursor].string() != path) ++cursor;
        return cursor;
      };
      std::size_t cursor = 0;
      for (auto& f : embedded.faces) {
        const std::size_t at = cursor_to(cursor, f.path);
        const FoundFace found = f.found.value_or(FoundFace{});
        rows.push_back(
            {{at, f.path, found.index, found.faces_in_photo, found.detection, f.embedding.quality},
             std::move(f.embedding.raw)});
      }
      cursor = 0;
      for (const auto& path : embedded.faceless) out.faceless.push_back(cursor_to(cursor, path));
      for (auto& failure : embedded.failures)
        out.failures.emplace_back(std::move(failure.path), std::move(failure.reason));
    } else {
      // Arrays (and paths among them, decoded first): the library's FacePipeline, --batch photos
      // detected together, as FileEmbedder runs it on decoded files.
      const auto mats = decoded(inputs);
      const FacePipeline pipeline(detector->detector, e.embedder, detector->options);
      const auto batch = static_cast<std::size_t>(e.batch);
      for (std::size_t start = 0; start < mats.size(); start += batch) {
        const std::vector<cv::Mat> chunk(mats.begin() + start,
                                         mats.begin() + std::min(mats.size(), start + batch));
        auto found = pipeline.process_batch(chunk, keep);
        for (std::size_t k = 0; k < found.size(); ++k) {
          if (found[k].empty()) out.faceless.push_back(start + k);
          for (auto& r : found[k]) {
            rows.push_back({{start + k, inputs.items[start + k].name, r.index, r.faces_in_photo,
                             r.detection, r.embedding.quality},
                            std::move(r.embedding.raw)});
          }
        }
      }
    }
  }
  return assemble(std::move(rows), std::move(out),
                  static_cast<std::size_t>(e.embedder.output_size()));
}

Embedding embedding_of(py::handle obj, const std::string& what) {
  const auto a = float_matrix(obj, what);
  if (a.ndim() > 2 || (a.ndim() == 2 && a.shape(0) != 1))
    throw InvalidInput(what + ": expected one embedding (D values or 1 x D)");
  Embedding out;
  out.raw.assign(a.data(), a.data() + a.size());
  out.magnitude = embedding_magnitude(out.raw);
  out.quality = out.magnitude;  // a bare vector has no crop: its quality is its magnitude
  return out;
}

const char* kDetectionDoc = R"doc(A face found by the detector.

box: float32 array [x1, y1, x2, y2] in pixels of its image (x right, y down).
score: the detector's face probability (0..1).
landmarks: float32 array 5 x 2 of (x, y): left eye, right eye, nose tip, left mouth corner,
    right mouth corner, as seen in the image (image left first, not the subject's left).)doc";

const char* kDetectorDoc =
    R"doc(MTCNN face detection exactly as facenet-pytorch's MTCNN (same weights, pyramid,
thresholds, NMS, landmarks), faces ordered largest first.

Detector(mtcnn_dir=None, min_face_size=20, thresholds=(0.6, 0.7, 0.7), factor=0.709)
    mtcnn_dir: folder with pnet.pt, rnet.pt, onet.pt (facenet-pytorch's files); default
    $FACEMAG_HOME/mtcnn (~/.facemag/mtcnn), where the quick start puts them.
    Raises ModelLoadError when the weights cannot be read.

A loaded Detector is immutable and may be shared by threads; detect() releases the GIL.)doc";

const char* kDetectDoc = R"doc(detect(images, *, bgr=False, as_arrays=False)

images: one image or several. An image is a NumPy uint8 array H x W x 3 (C-contiguous; RGB, or
    BGR with bgr=True as OpenCV reads them) or a path (str / os.PathLike; any format facemag
    decodes, EXIF orientation applied). Several: a list of those, or an N x H x W x 3 array.
    Images of one size are detected in one batch.
Returns: for one image a list of Detection (largest face first, [] when none); for several a
    list of such lists. With as_arrays=True, facenet-pytorch's MTCNN.detect(img, landmarks=True)
    layout: (boxes N x 4, probs N, points N x 5 x 2) float32 per image, (None, [None], None) for an
    image without a face; for several images those stacked as np.array stacks them (an object
    array of per-image results when the face counts differ).
Raises InvalidInputError for a wrong dtype, shape, a grayscale (2-D) or non-contiguous array, an
    unreadable or missing file.)doc";

const char* kEmbedderDoc =
    R"doc(A face recognition model: aligned face crops in, raw embeddings out.

Embedder(arch=None, weights=None, model=None, manifest=None, precision="fp32", threads=0,
         batch=16, flip=False, prewhiten=False, verify=True, int8_calibration=None,
         clustering=False)
    arch: "iresnet18" | "iresnet34" | "iresnet50" | "iresnet100" (MagFace) | "mobilefacenet" |
        "inception_resnet_v1" (FaceNet).
    weights: the checkpoint (torch.save file, loaded strictly); model: a name of the model store
        ($FACEMAG_HOME/models, `facemag models list`); neither: the store's default model.
    manifest: a manifest JSON (default: WEIGHTS.manifest.json beside the weights, else built in).
    precision: "fp32" (default), "bf16", "int8" or "reference" (PyTorch's ops one by one).
    threads: LibTorch threads, process-wide (0 = all cores), as the CLI's --threads.
    batch: faces (and photos, in embed_photos) per network pass: the CLI's --batch; the same
        batch gives the CLI's results bit for bit.
    flip: concatenate the mirror image's embedding (MobileFaceNet's protocol).
    clustering: embed as `facemag cluster` does, for its clustering threshold (MobileFaceNet:
        with the mirror image's embedding).
    Raises ModelLoadError for an unreadable or mismatched checkpoint (also a SHA-256 other than
    the manifest's unless verify=False), InvalidInputError for unknown names.

Inputs (embed, quality): aligned crops of exactly the model's input size (manifest
"input_width" x "input_height": 112 x 112 for iResNet, 96 x 112 for MobileFaceNet, 160 x 160 for
FaceNet), uint8 0..255, H x W x 3 in RGB order (bgr=True for OpenCV's BGR); the model's own colour
order and normalisation (manifest "color_order", "pixel_offset", "pixel_scale") are applied
inside. Outputs: float32 raw embeddings, never normalised: their L2 norm is the MagFace quality
(meaningful only where manifest["magnitude_is_quality"]).

A loaded Embedder is immutable and may be shared by threads; every call that runs the network
releases the GIL.)doc";

}  // namespace

PyDetector default_detector() { return load_detector(py::none(), 20, {0.6f, 0.7f, 0.7f}, 0.709); }

void bind_models(py::module_& m) {
  m.def(
      "set_threads", [](int threads) { return configure_runtime(threads); }, "threads"_a,
      "Sets LibTorch's thread count for the process (0 = all cores); returns the count in effect.");
  m.def("cpu_model_name", &cpu_model_name, "The CPU's model name as the kernel reports it.");
  m.def("cpu_kernel_family", &cpu_kernel_family,
        "The instruction-set family oneDNN runs its kernels on here (avx2, avx512_core, ...).");
  m.def("peak_rss_mb", &peak_rss_mb, "This process's peak resident memory so far, in MiB.");

  py::class_<Detection>(m, "Detection", kDetectionDoc)
      .def(py::init([](py::handle box, float score, py::handle landmarks) {
             return Detection{box_of(box), score, landmarks_of(landmarks)};
           }),
           "box"_a, "score"_a, "landmarks"_a)
      .def_property_readonly("box", [](const Detection& d) { return box_array(d.box); })
      .def_property_readonly("score", [](const Detection& d) { return d.score; })
      .def_property_readonly("landmarks",
                             [](const Detection& d) { return landmark_array(d.landmarks); })
      .def(
          "to_dict", [](const Detection& d) { return to_python(to_json(d)); },
          "{'box': [x1, y1, x2, y2], 'score': p, 'landmarks': [[x, y] x 5]}: the CLI's JSON form.")
      .def("__repr__", [](const Detection& d) { return repr(d); });

  py::class_<PyDetector>(m, "Detector", kDetectorDoc)
      .def(py::init(&load_detector), "mtcnn_dir"_a = py::none(), "min_face_size"_a = 20,
           "thresholds"_a = std::array<float, 3>{0.6f, 0.7f, 0.7f}, "factor"_a = 0.709)
      .def("detect", &detect, "images"_a, py::kw_only(), "bgr"_a = false, "as_arrays"_a = false,
           kDetectDoc)
      .def_property_readonly("mtcnn_dir", [](const PyDetector& d) { return d.folder.string(); })
      .def_property_readonly("min_face_size",
                             [](const PyDetector& d) { return d.options.min_face_size; })
      .def_property_readonly("thresholds", [](const PyDetector& d) { return d.options.thresholds; })
      .def_property_readonly("factor", [](const PyDetector& d) { return d.options.factor; })
      .def("__repr__", [](const PyDetector& d) {
        return "Detector(mtcnn_dir='" + d.folder.string() +
               "', min_face_size=" + std::to_string(d.options.min_face_size) + ")";
      });

  m.def(
      "align",
      [](py::handle image, py::handle landmarks, const std::string& name, bool bgr,
         bool return_matrix) -> py::object {
        const auto marks = landmarks_of(landmarks);
        const auto& tmpl = alignment_template(name);
        const auto in = pixels_of(image, "image");
        AlignedFace face;
        {
          py::gil_scoped_release release;
          face = align_face(in.pixels, marks, tmpl);
        }
        auto crop = handed_back(face.image, in, bgr);
        if (!return_matrix) return crop;
        py::array_t<double> matrix({2, 3});
        for (int r = 0; r < 2; ++r)
          for (int c = 0; c < 3; ++c) *matrix.mutable_data(r, c) = face.matrix(r, c);
        return py::make_tuple(crop, matrix);
      },
      "image"_a, "landmarks"_a, py::kw_only(), "template"_a = "arcface-112x112", "bgr"_a = false,
      "return_matrix"_a = false,
      R"doc(align(image, landmarks, *, template="arcface-112x112", bgr=False, return_matrix=False)

The crop whose five landmarks land on the template by a least-squares similarity transform
(Umeyama) and a bilinear warp, black outside the image: what MagFace / insightface feed iResNet.
image: H x W x 3 uint8 array (kept in its channel order) or a path (returned in RGB, or BGR with
    bgr=True). landmarks: a Detection or a 5 x 2 array of (x, y) in Detection's order.
template: "arcface-112x112" (112 x 112) or "sphereface-96x112" (96 wide, 112 high; MobileFaceNet).
Returns the crop (template height x width x 3 uint8), and with return_matrix the 2 x 3 float64
image -> crop transform.)doc");

  m.def(
      "crop_sharpness",
      [](py::handle crop, bool bgr) {
        const auto inputs = image_inputs(crop, bgr, "crop");
        if (inputs.items.size() != 1) throw InvalidInput("crop: expected one image");
        py::gil_scoped_release release;
        return crop_sharpness(decoded(inputs).at(0));
      },
      "crop"_a, py::kw_only(), "bgr"_a = false,
      "crop_sharpness(crop, *, bgr=False) -> float: the variance of the Laplacian of an aligned "
      "crop's grey levels, measured at 112 rows: the sharpness in the quality of models that are "
      "not MagFace-trained (quality = magnitude * min(1, sharpness / 69)). crop: H x W x 3 uint8 "
      "(RGB, or BGR with bgr=True) or a path.");

  m.def(
      "margin_crop",
      [](py::handle image, py::handle box, int image_size, int margin, bool bgr) {
        const auto b = box_of(box);
        const auto in = pixels_of(image, "image");
        cv::Mat crop;
        {
          py::gil_scoped_release release;
          crop = margin_crop(in.pixels, b, image_size, margin);
        }
        return handed_back(crop, in, bgr);
      },
      "image"_a, "box"_a, py::kw_only(), "image_size"_a = 160, "margin"_a = 0, "bgr"_a = false,
      R"doc(margin_crop(image, box, *, image_size=160, margin=0, bgr=False)

facenet-pytorch's extract_face: the box (a Detection or [x1, y1, x2, y2]) widened by `margin`
pixels of the output, clipped to the image, resized to image_size x image_size (area
interpolation): FaceNet's input. Channel order as align().)doc");

  py::class_<PhotoFace>(m, "PhotoFace",
                        "A face of PhotoEmbeddings: the input it came from and where it is there.")
      .def_readonly("photo", &PhotoFace::photo, "Index of the input photo.")
      .def_readonly("source", &PhotoFace::source, "The path, or 'photos[i]' for an array.")
      .def_readonly("index", &PhotoFace::index, "The face's index in the detector's order.")
      .def_readonly("faces_in_photo", &PhotoFace::faces_in_photo,
                    "Faces the detector found in the photo (before keep= chose).")
      .def_readonly("detection", &PhotoFace::detection)
      .def_readonly("quality", &PhotoFace::quality,
                    "The face's quality (Embedder.quality_source says what it measures).")
      .def("__repr__", [](const PhotoFace& f) {
        return "PhotoFace(photo=" + std::to_string(f.photo) + ", source='" + f.source +
               "', index=" + std::to_string(f.index) + ", quality=" + std::to_string(f.quality) +
               ")";
      });

  py::class_<PhotoEmbeddings>(m, "PhotoEmbeddings",
                              "What Embedder.embed_photos found: one row per kept face.")
      .def_readonly("embeddings", &PhotoEmbeddings::embeddings,
                    "N x D float32 raw embeddings, row i of faces[i].")
      .def_property_readonly(
          "qualities",
          [](const PhotoEmbeddings& r) {
            py::array_t<float> q(static_cast<py::ssize_t>(r.faces.size()));
            for (std::size_t i = 0; i < r.faces.size(); ++i)
              q.mutable_data()[i] = r.faces[i].quality;
            return q;
          },
          "N float32: each face's quality (Embedder.quality_source says what it measures).")
      .def_property_readonly(
          "photo",
          [](const PhotoEmbeddings& r) {
            py::array_t<std::int64_t> p(static_cast<py::ssize_t>(r.faces.size()));
            for (std::size_t i = 0; i < r.faces.size(); ++i)
              p.mutable_data()[i] = static_cast<std::int64_t>(r.faces[i].photo);
            return p;
          },
          "N int64: the input each row came from.")
      .def_readonly("faces", &PhotoEmbeddings::faces, "PhotoFace per row.")
      .def_readonly("failures", &PhotoEmbeddings::failures,
                    "(input, reason) for each input that could not be read.")
      .def_readonly("faceless", &PhotoEmbeddings::faceless,
                    "Indices of the inputs in which no face was found.")
      .def("__len__", [](const PhotoEmbeddings& r) { return r.faces.size(); })
      .def("__repr__", [](const PhotoEmbeddings& r) {
        return "PhotoEmbeddings(" + std::to_string(r.faces.size()) + " faces of " +
               std::to_string(r.photos) + " photos, " + std::to_string(r.failures.size()) +
               " failed, " + std::to_string(r.faceless.size()) + " without a face)";
      });

  py::class_<PyEmbedder>(m, "Embedder", kEmbedderDoc)
      .def(py::init(&load_embedder), "arch"_a = py::none(), "weights"_a = py::none(),
           "model"_a = py::none(), "manifest"_a = py::none(), "precision"_a = "fp32",
           "threads"_a = 0, "batch"_a = 16, "flip"_a = false, "prewhiten"_a = false,
           "verify"_a = true, "int8_calibration"_a = py::none(), "clustering"_a = false)
      .def_static("formula", &formula_embedder, "arch"_a, "precision"_a = "fp32", "threads"_a = 0,
                  "batch"_a = 16, "flip"_a = false,
                  "An Embedder of `arch` with the deterministic formula weights of the goldens "
                  "(tests, benchmarks; untrained).")
      .def(
          "embed",
          [](const PyEmbedder& e, py::handle faces, bool bgr) { return embed(e, faces, bgr); },
          "faces"_a, py::kw_only(), "bgr"_a = false,
          R"doc(embed(faces, *, bgr=False) -> numpy.ndarray

faces: aligned crops of the model's input size: an N x H x W x 3 uint8 array, one H x W x 3 array,
    or a list of arrays and paths (RGB arrays, or BGR with bgr=True; files are decoded as BGR).
Returns an N x D float32 array (always 2-D; D = output_size) of raw embeddings: the network's
    output as is, never normalised; row norms are the MagFace qualities. The same numbers as
    `facemag embed --aligned --npy` on the same crops.
Raises InvalidInputError for a crop of another size, a wrong dtype/shape, a non-contiguous array,
    a missing file. Releases the GIL while the network runs.)doc")
      .def(
          "quality",
          [](const PyEmbedder& e, py::handle faces, bool bgr) {
            std::vector<float> qualities;
            embed(e, faces, bgr, &qualities);
            return py::array_t<float>(static_cast<py::ssize_t>(qualities.size()), qualities.data());
          },
          "faces"_a, py::kw_only(), "bgr"_a = false,
          "quality(faces, *, bgr=False) -> N float32: each face's quality, as the CLI's: the "
          "magnitude of its raw embedding for a MagFace model (computed in double), else the "
          "magnitude times the crop's sharpness factor (quality_source). Inputs as embed().")
      .def("embed_photos", &embed_photos, "photos"_a, py::kw_only(),
           "detector"_a = static_cast<const PyDetector*>(nullptr), "keep"_a = "center",
           "bgr"_a = false,
           R"doc(embed_photos(photos, *, detector=None, keep="center", bgr=False) -> PhotoEmbeddings

The whole pipeline: detect (MTCNN), align as the model expects (manifest "alignment_template"),
embed. photos: as Detector.detect takes images (paths or uint8 H x W x 3 arrays, RGB unless bgr).
keep: which faces of a photo: "center" (the face the photo is about: largest box nearest the
    centre), "largest", "best" (highest magnitude) or "all".
detector: a Detector (default: Detector() with its defaults, loaded for the call).
For paths this is exactly `facemag embed --keep KEEP --npy` (same chunks, same bits); a file that
cannot be read is listed in .failures and the others go on. Releases the GIL.)doc")
      .def(
          "crop",
          [](const PyEmbedder& e, py::handle image, py::handle detection, bool bgr) {
            if (!py::isinstance<Detection>(detection))
              throw InvalidInput("detection: expected a facemag.Detection (Detector.detect's)");
            const auto face = detection.cast<const Detection&>();
            const auto in = pixels_of(image, "image");
            cv::Mat crop;
            {
              py::gil_scoped_release release;
              crop = crop_for_model(in.pixels, face, e.embedder.manifest());
            }
            return handed_back(crop, in, bgr);
          },
          "image"_a, "detection"_a, py::kw_only(), "bgr"_a = false,
          "crop(image, detection, *, bgr=False): the model's input crop of a detected face "
          "(similarity alignment or FaceNet's margin crop, as its manifest says); channel order "
          "as align().")
      .def(
          "verify",
          [](const PyEmbedder& e, py::handle a, py::handle b, std::optional<double> threshold,
             double fmr) {
            const auto ea = embedding_of(a, "a"), eb = embedding_of(b, "b");
            return to_python(
                eval::to_json(eval::decide_pair(ea, eb, e.embedder.manifest(), {threshold, fmr})));
          },
          "a"_a, "b"_a, py::kw_only(), "threshold"_a = py::none(), "fmr"_a = 0.0,
          R"doc(verify(a, b, *, threshold=None, fmr=0) -> dict

The 1:1 decision of `facemag verify` on two raw embeddings: {"similarity" (cosine), "threshold",
"threshold_basis", "decision" ("same" | "different" | "undecided": a face below the manifest's
quality threshold), "quality_a", "quality_b"}. threshold: a cosine to decide by; fmr: the
manifest's threshold calibrated at that false match rate; neither: its same-person threshold.)doc")
      .def_property_readonly(
          "manifest",
          [](const PyEmbedder& e) {
            return to_python(nlohmann::json::parse(manifest_to_json(e.embedder.manifest())));
          },
          "The model's manifest as a dict: name, architecture, input_width/height, color_order, "
          "pixel_offset/scale, alignment_template, embedding_size, thresholds, sha256, source...")
      .def_property_readonly(
          "cluster_threshold",
          [](const PyEmbedder& e) { return clustering_threshold(e.embedder.manifest()); },
          "The mean cosine at which grouping faces stops (`facemag cluster`'s default cut): the "
          "manifest's cluster_threshold, else its same_person_threshold.")
      .def_property_readonly("name", [](const PyEmbedder& e) { return e.embedder.manifest().name; })
      .def_property_readonly(
          "quality_source",
          [](const PyEmbedder& e) { return quality_source(e.embedder.manifest()); },
          "What quality() and embed_photos() qualities measure: \"magnitude\" (MagFace models) or "
          "\"magnitude*sharpness\" (the magnitude times the crop's sharpness factor).")
      .def_property_readonly("architecture",
                             [](const PyEmbedder& e) { return e.embedder.manifest().architecture; })
      .def_property_readonly(
          "precision", [](const PyEmbedder& e) { return precision_name(e.embedder.precision()); })
      .def_property_readonly(
          "output_size", [](const PyEmbedder& e) { return e.embedder.output_size(); },
          "Values per embedding (embedding_size, doubled with flip).")
      .def_property_readonly(
          "input_size",
          [](const PyEmbedder& e) {
            const auto& m = e.embedder.manifest();
            return py::make_tuple(m.input_height, m.input_width);
          },
          "(height, width) of an aligned crop.")
      .def_property_readonly(
          "weights", [](const PyEmbedder& e) { return e.model.weights.string(); },
          "The checkpoint loaded ('' for formula weights).")
      .def_property_readonly("batch", [](const PyEmbedder& e) { return e.batch; })
      .def("__repr__", [](const PyEmbedder& e) {
        return "Embedder(" + e.embedder.manifest().name + ", " +
               e.embedder.manifest().architecture + ", " + precision_name(e.embedder.precision()) +
               ", " + std::to_string(e.embedder.output_size()) + "-d)";
      });
}

}  // namespace facemag::python
