#include "facemag/io/checkpoint.hpp"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>
#include <zip.h>

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <unordered_map>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"

namespace facemag::io {
namespace {

using pickle::Value;
using pickle::ValuePtr;

[[noreturn]] void fail(const std::string& source, const std::string& message) {
  throw ModelLoadError(source + ": " + message);
}

std::string read_file(const std::filesystem::path& path) {
  try {
    return read_file_bytes(path);
  } catch (const InvalidInput& e) {
    throw ModelLoadError(e.what());
  }
}

struct StoragePid {
  torch::ScalarType dtype;
  std::string key;
  std::int64_t numel;
};

// ('storage', torch.FloatStorage, key, location, numel[, view_metadata]) -> its parts.
StoragePid parse_storage_pid(const Value& pid, const std::string& source) {
  const auto& items = pid.as_sequence("persistent id");
  if (items.empty()) fail(source, "empty persistent id");
  const std::string& tag = items[0]->as_string("persistent id tag");
  if (tag == "module") {
    fail(source, "holds a pickled nn.Module; facemag reads state dicts (save model.state_dict())");
  }
  if (tag != "storage" || items.size() < 5) fail(source, "unknown persistent id '" + tag + "'");
  const auto* g = std::get_if<pickle::Global>(&items[1]->data);
  if (!g) fail(source, "storage type is a " + items[1]->type_name());
  const auto dtype = pickle::dtype_of_storage_class(g->name);
  if (g->module != "torch" || !dtype) {
    fail(source, "unsupported storage type " + g->module + "." + g->name);
  }
  StoragePid out{*dtype, items[2]->as_string("storage key"), items[4]->as_int("storage size")};
  if (out.numel < 0) fail(source, "negative storage size");
  if (g->name == "UntypedStorage") out.dtype = torch::kUInt8;
  return out;
}

std::int64_t checked_nbytes(std::int64_t numel, torch::ScalarType dtype,
                            const std::string& source) {
  std::int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<std::int64_t>(c10::elementSize(dtype)), &nbytes)) {
    fail(source, "storage size overflows");
  }
  return nbytes;
}

// ---------------------------------------------------------------------------------------
// zip format

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};

class ZipArchive {
 public:
  ZipArchive(std::string_view bytes, std::string source) : source_(std::move(source)) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (!src) fail(source_, std::string("zip: ") + zip_error_strerror(&error));
    zip_t* z = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &error);
    if (!z) {
      zip_source_free(src);
      const std::string why = zip_error_strerror(&error);
      zip_error_fini(&error);
      fail(source_, "not a readable zip archive (" + why + "); truncated or corrupt checkpoint?");
    }
    zip_.reset(z);
    archive_size_ = bytes.size();
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    const zip_int64_t n = zip_get_num_entries(zip_.get(), 0);
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* name = zip_get_name(zip_.get(), i, 0);
      if (name) out.emplace_back(name);
    }
    return out;
  }

  bool has(const std::string& name) const {
    return zip_name_locate(zip_.get(), name.c_str(), 0) >= 0;
  }

  std::uint64_t size_of(const std::string& name) const { return stat(name).size; }

  // Reads a record into `out`, which must hold exactly the record's size.
  void read_into(const std::string& name, void* out, std::uint64_t expected) const {
    const zip_stat_t st = stat(name);
    if (st.size != expected) {
      fail(source_, "record " + name + " holds " + std::to_string(st.size) + " bytes, expected " +
                        std::to_string(expected));
    }
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(zip_fopen_index(zip_.get(), st.index, 0),
                                                           zip_fclose);
    if (!file) fail(source_, "cannot open record " + name + ": " + zip_strerror(zip_.get()));
    auto* dst = static_cast<char*>(out);
    std::uint64_t done = 0;
    while (done < expected) {
      const zip_int64_t got = zip_fread(file.get(), dst + done, expected - done);
      if (got <= 0) fail(source_, "record " + name + " is truncated or corrupt");
      done += static_cast<std::uint64_t>(got);
    }
  }

  std::string read(const std::string& name) const {
    const std::uint64_t size = size_of(name);
    std::string out(size, '\0');
    read_into(name, out.data(), size);
    return out;
  }

 private:
  zip_stat_t stat(const std::string& name) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat(zip_.get(), name.c_str(), 0, &st) != 0) fail(source_, "missing record " + name);
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE)) {
      fail(source_, "record " + name + " has no size");
    }
    // Sizes are declared by the file: bound them before anything is allocated. A stored record
    // (what torch.save writes) is as large as its bytes in the archive; deflate cannot expand
    // more than about 1032:1 (zip bombs declare more).
    const bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    if (st.comp_size > archive_size_ || (stored && st.size != st.comp_size) ||
        (!stored && st.size / 1032 > st.comp_size + 1)) {
      fail(source_, "record " + name + " declares " + std::to_string(st.size) +
                        " bytes, impossible in a " + std::to_string(archive_size_) + "-byte file");
    }
    return st;
  }

  std::string source_;
  std::unique_ptr<zip_t, ZipCloser> zip_;
  std::uint64_t archive_size_ = 0;
};

Checkpoint load_zip(std::string_view bytes, const std::string& source) {
  ZipArchive archive(bytes, source);
  std::string prefix;
  bool torchscript = false;
  for (const auto& name : archive.names()) {
    const auto slash = name.find('/');
    if (slash == std::string::npos) continue;
    const std::string rest = name.substr(slash + 1);
    if (rest == "data.pkl") prefix = name.substr(0, slash + 1);
    if (rest == "constants.pkl" || rest.rfind("code/", 0) == 0) torchscript = true;
  }
  if (prefix.empty()) {
    if (torchscript) {
      fail(source, "is a TorchScript archive (torch.jit.save); facemag reads torch.save files");
    }
    fail(source, "zip archive without a data.pkl record: not a torch.save checkpoint");
  }
  if (archive.has(prefix + "byteorder") && archive.read(prefix + "byteorder") != "little") {
    fail(source, "big-endian checkpoints are not supported");
  }

  std::unordered_map<std::string, torch::Tensor> storages;
  pickle::UnpickleOptions options;
  options.source = source + ":" + prefix + "data.pkl";
  options.persistent_load = [&](const Value& pid) -> ValuePtr {
    const StoragePid p = parse_storage_pid(pid, source);
    auto it = storages.find(p.key);
    if (it == storages.end()) {
      const std::string record = prefix + "data/" + p.key;
      if (p.key.find('/') != std::string::npos || !archive.has(record)) {
        fail(source, "storage " + p.key + " has no record " + record);
      }
      const std::int64_t nbytes = checked_nbytes(p.numel, p.dtype, source);
      if (archive.size_of(record) != static_cast<std::uint64_t>(nbytes)) {
        fail(source, "record " + record + " holds " + std::to_string(archive.size_of(record)) +
                         " bytes, the tensor storage needs " + std::to_string(nbytes));
      }
      torch::Tensor flat = torch::empty({p.numel}, torch::TensorOptions().dtype(p.dtype));
      archive.read_into(record, flat.data_ptr(), static_cast<std::uint64_t>(nbytes));
      it = storages.emplace(p.key, flat).first;
    } else if (it->second.scalar_type() != p.dtype) {
      fail(source, "storage " + p.key + " is read as two different dtypes");
    }
    return Value::make(pickle::Storage{it->second});
  };
  const std::string pkl = archive.read(prefix + "data.pkl");
  return {pickle::unpickle(pkl, options), CheckpointFormat::kZip, source};
}

// ---------------------------------------------------------------------------------------
// legacy format

// One function of ~100 lines on purpose: it follows torch.serialization's legacy layout step by
// step (magic, protocol, system info, the pickle, storage keys, storages), and each step's checks
// read best beside the bytes they check.
Checkpoint load_legacy(std::string_view bytes, const std::string& source) {
  std::size_t pos = 0;
  auto next = [&](const pickle::UnpickleOptions& options) {
    std::size_t used = 0;
    auto v = pickle::unpickle(bytes.substr(pos), options, &used);
    pos += used;
    return v;
  };
  pickle::UnpickleOptions plain;
  plain.source = source;

  const auto magic = next(plain);
  static const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
  const auto* big = std::get_if<pickle::BigInt>(&magic->data);
  if (!big || big->le_bytes != kMagic) {
    fail(source, "not a PyTorch checkpoint (the legacy magic number is missing)");
  }
  const std::int64_t protocol = next(plain)->as_int("legacy protocol version");
  if (protocol != 1001) {
    throw VersionMismatch(source + ": legacy protocol version " + std::to_string(protocol) +
                          ", expected 1001");
  }
  const auto sys_info = next(plain);
  if (const auto& d = sys_info->as_dict("sys_info");
      auto le = pickle::dict_get(d, "little_endian")) {
    if (!le->as_bool("little_endian")) fail(source, "big-endian checkpoints are not supported");
  }

  struct Pending {
    torch::Tensor flat;
    bool filled = false;
  };
  std::map<std::string, Pending> storages;
  std::unordered_map<std::string, torch::Tensor> views;
  std::uint64_t declared_bytes = 0;
  pickle::UnpickleOptions options;
  options.source = source;
  options.persistent_load = [&](const Value& pid) -> ValuePtr {
    const StoragePid p = parse_storage_pid(pid, source);
    auto it = storages.find(p.key);
    if (it == storages.end()) {
      // The bytes come after the object: bound the allocation by what the file can still hold.
      const std::int64_t nbytes = checked_nbytes(p.numel, p.dtype, source);
      declared_bytes += static_cast<std::uint64_t>(nbytes);
      if (declared_bytes > bytes.size()) {
        fail(source, "storages declare " + std::to_string(declared_bytes) +
                         " bytes, more than the file's " + std::to_string(bytes.size()));
      }
      it = storages
               .emplace(p.key,
                        Pending{torch::empty({p.numel}, torch::TensorOptions().dtype(p.dtype))})
               .first;
    }
    torch::Tensor flat = it->second.flat;
    const auto& items = pid.as_sequence("persistent id");
    if (items.size() > 5 && !items[5]->is_none()) {  // view_metadata: (view_key, offset, size)
      const auto& view = items[5]->as_sequence("storage view");
      if (view.size() != 3) fail(source, "malformed storage view");
      const std::string& view_key = view[0]->as_string("view key");
      auto v = views.find(view_key);
      if (v == views.end()) {
        const std::int64_t offset = view[1]->as_int("view offset");
        const std::int64_t size = view[2]->as_int("view size");
        if (offset < 0 || size < 0 || offset > flat.numel() || size > flat.numel() - offset) {
          fail(source, "storage view outside its storage");
        }
        v = views.emplace(view_key, flat.narrow(0, offset, size)).first;
      }
      flat = v->second;
    }
    return Value::make(pickle::Storage{flat});
  };
  auto root = next(options);
  const auto keys = next(plain);
  for (const auto& key_value : keys->as_sequence("storage keys")) {
    const std::string& key = key_value->as_string("storage key");
    auto it = storages.find(key);
    if (it == storages.end()) fail(source, "storage " + key + " is listed but never used");
    if (bytes.size() - pos < 8) fail(source, "truncated: storage " + key + " has no size");
    std::int64_t numel = 0;
    std::memcpy(&numel, bytes.data() + pos, 8);
    pos += 8;
    torch::Tensor& flat = it->second.flat;
    if (numel != flat.numel()) {
      fail(source, "storage " + key + " holds " + std::to_string(numel) + " elements, expected " +
                       std::to_string(flat.numel()));
    }
    const auto nbytes = static_cast<std::size_t>(flat.nbytes());
    if (bytes.size() - pos < nbytes) {
      fail(source, "truncated: storage " + key + " needs " + std::to_string(nbytes) + " bytes, " +
                       std::to_string(bytes.size() - pos) + " remain");
    }
    std::memcpy(flat.data_ptr(), bytes.data() + pos, nbytes);
    pos += nbytes;
    it->second.filled = true;
  }
  for (const auto& [key, pending] : storages) {
    if (!pending.filled) fail(source, "truncated: storage " + key + " has no data");
  }
  return {root, CheckpointFormat::kLegacy, source};
}

}  // namespace

Checkpoint load_checkpoint_bytes(std::string_view bytes, const std::string& source) {
  try {
    if (bytes.size() >= 4 && bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4)) {
      return load_zip(bytes, source);
    }
    if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x80) {
      return load_legacy(bytes, source);
    }
    if (bytes.size() > 262 && bytes.substr(257, 5) == "ustar") {
      fail(source, "is a tar-format checkpoint (PyTorch < 0.4); re-save it with a newer PyTorch");
    }
    fail(source, bytes.empty() ? "empty file, not a PyTorch checkpoint"
                               : "not a PyTorch checkpoint (neither zip nor legacy pickle)");
  } catch (const ModelLoadError&) {
    throw;
  } catch (const VersionMismatch&) {
    throw;
  } catch (const Error& e) {
    throw ModelLoadError(e.what());
  } catch (const c10::Error& e) {
    throw ModelLoadError(source + ": " + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw ModelLoadError(source + ": out of memory while reading");
  }
}

Checkpoint load_checkpoint(const std::filesystem::path& path) {
  return load_checkpoint_bytes(read_file(path), path.string());
}

void save_checkpoint(const std::filesystem::path& path, const pickle::Value& root) {
  // Storages are identified by their StorageImpl so that views keep sharing them.
  std::unordered_map<const void*, std::string> keys;
  std::vector<torch::Tensor> storage_tensors;
  auto storage_pid = [&](const torch::Tensor& t) -> ValuePtr {
    if (!t.device().is_cpu()) throw Error("save_checkpoint: tensors must be on the CPU");
    const void* impl = t.storage().unsafeGetStorageImpl();
    auto it = keys.find(impl);
    const std::int64_t itemsize = static_cast<std::int64_t>(t.element_size());
    const std::int64_t numel = static_cast<std::int64_t>(t.storage().nbytes()) / itemsize;
    if (it == keys.end()) {
      it = keys.emplace(impl, std::to_string(keys.size())).first;
      storage_tensors.push_back(t);
    }
    pickle::Tuple pid;
    pid.items = {
        Value::make(std::string("storage")),
        Value::make(pickle::Global{"torch", pickle::storage_class_of_dtype(t.scalar_type())}),
        Value::make(it->second), Value::make(std::string("cpu")), Value::make(numel)};
    return Value::make(std::move(pid));
  };
  const std::string pkl = pickle::pickle_dumps(root, storage_pid);
  try {
    caffe2::serialize::PyTorchStreamWriter writer(path.string());
    writer.writeRecord("data.pkl", pkl.data(), pkl.size());
    for (std::size_t i = 0; i < storage_tensors.size(); ++i) {
      const auto& storage = storage_tensors[i].storage();
      writer.writeRecord("data/" + std::to_string(i), storage.data(), storage.nbytes());
    }
    writer.writeEndOfFile();
  } catch (const c10::Error& e) {
    throw Error(path.string() + ": cannot write checkpoint: " + e.what_without_backtrace());
  }
}

NamedTensors find_state_dict(const Checkpoint& checkpoint) {
  const Value* dict_value = checkpoint.root.get();
  if (!dict_value->is<pickle::Dict>()) {
    fail(checkpoint.source, "the saved value is a '" + dict_value->type_name() +
                                "', expected a dict (a state dict, or a checkpoint holding one)");
  }
  for (const char* entry : {"state_dict", "net_state_dict", "model"}) {
    if (auto v = pickle::dict_get(dict_value->as_dict(), entry); v && v->is<pickle::Dict>()) {
      dict_value = v.get();
      break;
    }
  }
  NamedTensors out;
  for (const auto& [key, value] : dict_value->as_dict().items) {
    const auto* name = std::get_if<std::string>(&key->data);
    if (!name) fail(checkpoint.source, "state dict key of type " + key->type_name());
    if (!value->is<torch::Tensor>()) {
      fail(checkpoint.source,
           "state dict entry '" + *name + "' is a " + value->type_name() + ", expected a tensor");
    }
    out.emplace_back(*name, value->as_tensor());
  }
  return out;
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return "float32";
    case torch::kFloat64:
      return "float64";
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kInt64:
      return "int64";
    case torch::kInt32:
      return "int32";
    case torch::kInt16:
      return "int16";
    case torch::kInt8:
      return "int8";
    case torch::kUInt8:
      return "uint8";
    case torch::kBool:
      return "bool";
    case torch::kComplexFloat:
      return "complex64";
    case torch::kComplexDouble:
      return "complex128";
    default:
      return c10::toString(dtype);
  }
}

pickle::ValuePtr make_state_dict_value(const NamedTensors& tensors) {
  pickle::Dict dict;
  dict.ordered = true;
  for (const auto& [name, tensor] : tensors) {
    pickle::dict_set(dict, Value::make(name), Value::make(tensor));
  }
  return Value::make(std::move(dict));
}

}  // namespace facemag::io
