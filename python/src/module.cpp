// The module `facemag._facemag`: the exception hierarchy (facemag::Error's, with the library's
// messages), the conversions every binding shares, and the sub-binders.
#include <opencv2/imgproc.hpp>

#include <cstring>

#include "binding.hpp"
#include "facemag/error.hpp"
#include "facemag/gallery/gallery.hpp"
#include "facemag/io/image.hpp"

namespace facemag::python {
namespace {

std::string type_name(py::handle obj) { return py::str(py::type::of(obj).attr("__name__")); }

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Refuses what the library cannot read as pixels, naming what was given and what to do.
void check_pixels(const py::array& a, const std::string& what, py::ssize_t image_dims) {
  const auto dtype = a.dtype();
  if (dtype.kind() != 'u' || dtype.itemsize() != 1)
    throw InvalidInput(what + ": expected uint8 pixels (0-255), found dtype " +
                       dtype.attr("name").cast<std::string>() +
                       " (convert with .astype(np.uint8))");
  if (a.ndim() == image_dims - 1)
    throw InvalidInput(what + ": a 2-D array of shape " + shape_of(a) +
                       " (grayscale?); expected H x W x 3 colour pixels (np.dstack([gray] * 3))");
  if (a.ndim() != image_dims || a.shape(image_dims - 1) != 3)
    throw InvalidInput(what + ": expected an array of shape " +
                       (image_dims == 3 ? "(H, W, 3)" : "(N, H, W, 3)") + ", found " + shape_of(a));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 0) throw InvalidInput(what + ": an empty array of shape " + shape_of(a));
  }
  if (!(a.flags() & py::array::c_style))
    throw InvalidInput(what +
                       ": a non-contiguous array (a slice, a transposed or strided view); "
                       "pass np.ascontiguousarray(" +
                       what + ")");
}

// A BGR cv::Mat of image `index` of a checked array: over the array's memory for BGR input, a
// converted copy for RGB.
cv::Mat mat_of(const py::array& a, py::ssize_t index, bool bgr) {
  const int rows = static_cast<int>(a.shape(a.ndim() - 3));
  const int cols = static_cast<int>(a.shape(a.ndim() - 2));
  auto* data = static_cast<unsigned char*>(const_cast<void*>(a.data())) +
               static_cast<std::size_t>(index) * rows * cols * 3;
  const cv::Mat view(rows, cols, CV_8UC3, data);
  if (bgr) return view;
  cv::Mat out;
  cv::cvtColor(view, out, cv::COLOR_RGB2BGR);
  return out;
}

}  // namespace

bool is_path(py::handle obj) {
  return py::isinstance<py::str>(obj) || py::hasattr(obj, "__fspath__");
}

std::filesystem::path to_path(py::handle obj) {
  return std::filesystem::path(
      py::str(py::module_::import("os").attr("fspath")(obj)).cast<std::string>());
}

ImageInputs image_inputs(py::handle images, bool bgr, const std::string& what) {
  ImageInputs out;
  const auto add = [&](py::handle item, const std::string& name) {
    if (is_path(item)) {
      const auto path = to_path(item);
      out.items.push_back({path, {}, path.string()});
      return;
    }
    if (!py::isinstance<py::array>(item))
      throw InvalidInput(name + ": expected a NumPy uint8 array (H x W x 3) or a path, found " +
                         type_name(item));
    const auto a = py::reinterpret_borrow<py::array>(item);
    check_pixels(a, name, 3);
    out.items.push_back({{}, mat_of(a, 0, bgr), name});
    out.borrowed.push_back(a);
  };
  if (py::isinstance<py::array>(images) && py::reinterpret_borrow<py::array>(images).ndim() == 4) {
    const auto a = py::reinterpret_borrow<py::array>(images);
    check_pixels(a, what, 4);
    for (py::ssize_t i = 0; i < a.shape(0); ++i)
      out.items.push_back({{}, mat_of(a, i, bgr), what + "[" + std::to_string(i) + "]"});
    out.borrowed.push_back(a);
  } else if (is_path(images) || py::isinstance<py::array>(images)) {
    out.single = true;
    add(images, what);
  } else if (py::isinstance<py::list>(images) || py::isinstance<py::tuple>(images)) {
    const auto seq = py::reinterpret_borrow<py::sequence>(images);
    for (std::size_t i = 0; i < seq.size(); ++i) add(seq[i], what + "[" + std::to_string(i) + "]");
  } else {
    throw InvalidInput(what + ": expected a NumPy uint8 array, a path, or a list of them; found " +
                       type_name(images));
  }
  return out;
}

std::vector<cv::Mat> decoded(const ImageInputs& inputs) {
  std::vector<cv::Mat> out;
  out.reserve(inputs.items.size());
  for (const auto& item : inputs.items)
    out.push_back(item.path.empty() ? item.bgr : io::read_image_bgr(item.path));
  return out;
}

py::array image_to_array(const cv::Mat& bgr, bool to_bgr) {
  py::array_t<std::uint8_t> out({bgr.rows, bgr.cols, 3});
  cv::Mat dst(bgr.rows, bgr.cols, CV_8UC3, out.mutable_data());
  if (to_bgr)
    bgr.copyTo(dst);
  else
    cv::cvtColor(bgr, dst, cv::COLOR_BGR2RGB);
  return out;
}

py::object to_python(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

py::array_t<float, py::array::c_style> float_matrix(py::handle obj, const std::string& what) {
  if (!py::isinstance<py::array>(obj) && !py::isinstance<py::sequence>(obj))
    throw InvalidInput(what + ": expected a NumPy array of embeddings, found " + type_name(obj));
  const auto given = py::array::ensure(obj);
  if (!given) throw InvalidInput(what + ": not convertible to a NumPy array");
  const char kind = given.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u')
    throw InvalidInput(what + ": expected numbers, found dtype " +
                       given.dtype().attr("name").cast<std::string>());
  // A converted copy where needed (float64 rows, a strided view); the caller's array is unchanged.
  return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(given);
}

KeepFaces keep_of(const std::string& name) { return parse_keep_faces(name); }

}  // namespace facemag::python

PYBIND11_MODULE(_facemag, m) {
  namespace py = pybind11;
  using namespace facemag;
  m.doc() = "facemag's C++ library, bound (import facemag, not this module).";
  m.attr("__version__") = FACEMAG_VERSION;

  // The hierarchy of include/facemag/error.hpp, with its messages. InvalidInputError is also a
  // ValueError and Error a RuntimeError (std::runtime_error), so generic handlers catch them. The
  // types live as long as the interpreter: held by the module and these never-released pointers.
  const auto new_error = [&m](const char* name, PyObject* base, const char* doc) {
    PyObject* type =
        PyErr_NewExceptionWithDoc((std::string("facemag.") + name).c_str(), doc, base, nullptr);
    if (!type) throw py::error_already_set();
    m.add_object(name, py::handle(type));
    return type;
  };
  static PyObject* const error =
      new_error("Error", PyExc_RuntimeError,
                "Base of every error facemag raises on purpose (facemag::Error).");
  static PyObject* const model_load =
      new_error("ModelLoadError", error,
                "A model or checkpoint that cannot be read or does not fit its architecture.");
  static PyObject* const invalid = new_error(
      "InvalidInputError", py::make_tuple(py::handle(error), py::handle(PyExc_ValueError)).ptr(),
      "A caller's input (image, array, path, list, name) that is malformed or out of range.");
  static PyObject* const version = new_error(
      "VersionMismatchError", error, "A file written by an unsupported version of its format.");
  static PyObject* const gallery_error =
      new_error("GalleryError", error,
                "A gallery that cannot be read or written, or one bound to another model.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gallery::GalleryError& e) {
      PyErr_SetString(gallery_error, e.what());
    } catch (const InvalidInput& e) {
      PyErr_SetString(invalid, e.what());
    } catch (const ModelLoadError& e) {
      PyErr_SetString(model_load, e.what());
    } catch (const VersionMismatch& e) {
      PyErr_SetString(version, e.what());
    } catch (const Error& e) {
      PyErr_SetString(error, e.what());
    }
  });

  facemag::python::bind_models(m);
  facemag::python::bind_gallery_eval(m);
}
