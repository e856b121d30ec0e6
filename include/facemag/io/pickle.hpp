// A safe reader and writer for Python pickles as PyTorch and NumPy write them.
//
// Nothing in a pickle is ever executed: a GLOBAL names a class or function, and only a fixed set
// of known, pure reconstructors (OrderedDict, torch tensor rebuilders, _codecs.encode, set,
// bytearray, torch.Size) is interpreted. Any other class or call becomes an opaque `Object`
// value that keeps its name, arguments and state, so an unknown `argparse.Namespace` inside a
// checkpoint does not fail the whole load, and `os.system` in a hostile file is never called.
//
// Every length in the input is checked against the bytes that remain before anything is
// allocated; containers may nest at most `UnpickleOptions::max_depth` deep and may not contain
// themselves.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace facemag::pickle {

class Value;
using ValuePtr = std::shared_ptr<Value>;

// Python int that does not fit in int64: two's-complement little-endian bytes (LONG1/LONG4).
struct BigInt {
  std::string le_bytes;
};
// Python bytes (and Python 2 `str`, which is bytes: `from_python2_str` is then true).
struct Bytes {
  std::string data;
  bool from_python2_str = false;
};
struct List {
  std::vector<ValuePtr> items;
};
struct Tuple {
  std::vector<ValuePtr> items;
};
// dict or collections.OrderedDict; items keep their insertion order either way.
struct Dict {
  std::vector<std::pair<ValuePtr, ValuePtr>> items;
  bool ordered = false;  // collections.OrderedDict
  ValuePtr attributes;   // state set by BUILD (e.g. a state_dict's `_metadata`), or null
  std::unordered_map<std::string, std::size_t> index;  // hashable keys -> position in items
};
// A reference to a global (module.name) that was not resolved to a known value.
struct Global {
  std::string module;
  std::string name;
};
// A PyTorch storage: a flat tensor of the storage's dtype. Tensors viewing one storage share it.
struct Storage {
  torch::Tensor flat;
};
// An instance of a class (or the result of a call) facemag does not interpret.
struct Object {
  std::string module;
  std::string name;
  ValuePtr args;   // Tuple of constructor/call arguments
  ValuePtr state;  // what BUILD set, or null
};

class Value {
 public:
  using Variant = std::variant<std::monostate, bool, std::int64_t, BigInt, double, std::string,
                               Bytes, List, Tuple, Dict, torch::Tensor, Global, Storage, Object>;

  Value() = default;
  explicit Value(Variant v) : data(std::move(v)) {}

  template <class T>
  static ValuePtr make(T v) {
    return std::make_shared<Value>(Variant(std::move(v)));
  }

  bool is_none() const { return std::holds_alternative<std::monostate>(data); }
  template <class T>
  bool is() const {
    return std::holds_alternative<T>(data);
  }
  // Python-like type name for messages ("dict", "OrderedDict", "tensor", "object os.system").
  std::string type_name() const;

  // Typed access; each throws facemag::Error naming `what` and the actual type on mismatch.
  std::int64_t as_int(std::string_view what = "value") const;
  double as_double(std::string_view what = "value") const;  // int or float
  bool as_bool(std::string_view what = "value") const;
  // str, or Python 2 str (bytes) that is valid UTF-8.
  const std::string& as_string(std::string_view what = "value") const;
  const torch::Tensor& as_tensor(std::string_view what = "value") const;
  const Dict& as_dict(std::string_view what = "value") const;
  Dict& as_dict(std::string_view what = "value");
  // Items of a list or tuple.
  const std::vector<ValuePtr>& as_sequence(std::string_view what = "value") const;

  Variant data;
};

// Dictionary helpers. Hashable keys are str, bytes, int, bool and None.
void dict_set(Dict& dict, ValuePtr key, ValuePtr value);
// The value stored under the string key, or nullptr.
ValuePtr dict_get(const Dict& dict, std::string_view key);

struct UnpickleOptions {
  // Called for PERSID/BINPERSID with the persistent id; returns what it stands for (PyTorch
  // storages). Without it a persistent id is an error.
  std::function<ValuePtr(const Value& pid)> persistent_load;
  std::size_t max_depth = 200;
  // What a file calls itself in error messages.
  std::string source = "pickle";
};

// Unpickles one pickle from the start of `bytes`. `consumed` receives the number of bytes read
// (up to and including STOP), so that several pickles can be read from one stream.
ValuePtr unpickle(std::string_view bytes, const UnpickleOptions& options,
                  std::size_t* consumed = nullptr);

// Writes `value` as a protocol-2 pickle, the protocol torch.save uses. Tensors are written as
// torch._utils._rebuild_tensor_v2 calls whose storage is the persistent id that
// `storage_pid(tensor)` returns (a Tuple). Strings are UTF-8; Bytes are written as Python 3 does
// at protocol 2 (_codecs.encode). Objects are written back as the call that made them.
std::string pickle_dumps(const Value& value,
                         const std::function<ValuePtr(const torch::Tensor&)>& storage_pid);

// A NumPy array as NumPy pickles it (numpy.core.multiarray._reconstruct or numpy._core's, with
// the (version, shape, dtype, fortran, data) state set by BUILD), as a contiguous CPU tensor.
// Numeric and bool dtypes of either byte order; `what` names the value in errors (an object
// array, a structured dtype or a size that disagrees with the data are errors).
torch::Tensor numpy_array(const Value& value, std::string_view what = "array");
bool is_numpy_array(const Value& value);

// Names of PyTorch storage classes (torch.FloatStorage...) and their dtypes.
std::optional<torch::ScalarType> dtype_of_storage_class(std::string_view name);
std::string storage_class_of_dtype(torch::ScalarType dtype);

}  // namespace facemag::pickle
