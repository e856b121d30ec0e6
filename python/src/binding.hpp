// What the binding's translation units share: the Python-side owners of a loaded detector and
// embedder, and the conversions between NumPy arrays / paths and the library's types. The binding
// converts and calls the library; every rule (face choice, alignment, thresholds, JSON forms) is
// the library's.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <nlohmann/json.hpp>
#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "facemag/detect/mtcnn.hpp"
#include "facemag/embed/embedder.hpp"
#include "facemag/model/resolve.hpp"
#include "facemag/pipeline.hpp"

namespace facemag::python {

namespace py = pybind11;

// facemag.Detector: a loaded MTCNN (immutable, shared by threads) and the options it runs with.
struct PyDetector {
  MtcnnDetector detector;
  MtcnnOptions options;
  std::filesystem::path folder;
};

// facemag.Embedder: a loaded model, where its files came from, and how many faces go through the
// network together (the CLI's --batch).
struct PyEmbedder {
  Embedder embedder;
  ResolvedModel model;  // weights empty for formula weights
  int batch = 16;
};

// An image argument, before decoding: a path (decoded by the library, without the GIL) or pixels.
struct ImageInput {
  std::filesystem::path path;  // set for a path
  cv::Mat bgr;                 // set for an array: BGR, over the array's memory or a converted copy
  std::string name;            // the path, or "<what>[i]" in messages
};

// Images as a call takes them, and whether they were one image or a batch.
struct ImageInputs {
  std::vector<ImageInput> items;
  bool single = false;
  // The arrays whose memory `items` borrows: kept alive (and referenced) for the call.
  std::vector<py::object> borrowed;
};

// True for str and os.PathLike.
bool is_path(py::handle obj);
std::filesystem::path to_path(py::handle obj);

// One image or several: an H x W x 3 uint8 array (RGB, or BGR with `bgr`), a path, an
// N x H x W x 3 array, or a list/tuple of arrays and paths. InvalidInput (with `what` and index)
// for anything else: another dtype, a 2-D (grayscale) or 4-channel array, a non-contiguous array.
ImageInputs image_inputs(py::handle images, bool bgr, const std::string& what);
// Decodes the path items (io::read_image_bgr); call without the GIL.
std::vector<cv::Mat> decoded(const ImageInputs& inputs);

// An H x W x 3 uint8 image (BGR) as a NumPy array in `bgr` or RGB order (a copy).
py::array image_to_array(const cv::Mat& bgr, bool to_bgr);

// A JSON value of the library (its to_json forms) as Python dicts, lists and numbers.
py::object to_python(const nlohmann::json& j);

// A float32 matrix argument (N x D, any float dtype converted): rows of embeddings.
py::array_t<float, py::array::c_style> float_matrix(py::handle obj, const std::string& what);

// Detector() with its defaults (the folder $FACEMAG_HOME/mtcnn): what a call given no detector
// uses. Call with the GIL held.
PyDetector default_detector();

// Keep-faces names ("all", "center", "largest", "best") as the library parses them.
KeepFaces keep_of(const std::string& name);

void bind_models(py::module_& m);
void bind_gallery_eval(py::module_& m);

}  // namespace facemag::python
