#include "facemag/io/npy.hpp"

#include <torch/torch.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <regex>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"

namespace facemag::io {
namespace {

struct NpyType {
  const char* descr;
  torch::ScalarType dtype;
};
constexpr NpyType kTypes[] = {
    {"<f4", torch::kFloat32}, {"<f8", torch::kFloat64}, {"<f2", torch::kFloat16},
    {"<i8", torch::kInt64},   {"<i4", torch::kInt32},   {"<i2", torch::kInt16},
    {"|i1", torch::kInt8},    {"|u1", torch::kUInt8},   {"|b1", torch::kBool},
};

[[noreturn]] void fail(const std::string& source, const std::string& message) {
  throw InvalidInput(source + ": " + message);
}

struct NpyLayout {
  torch::ScalarType dtype;
  std::vector<std::int64_t> shape;
  bool fortran = false;
  std::size_t data_start = 0;
};

NpyLayout parse_npy(std::string_view bytes, const std::string& source) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != "\x93NUMPY") fail(source, "not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(source, "truncated .npy header");
    std::uint32_t n;
    std::memcpy(&n, bytes.data() + 8, 4);
    header_len = n;
    header_start = 12;
  } else {
    throw VersionMismatch(source + ": .npy format version " + std::to_string(major) +
                          " is not supported");
  }
  if (header_len > bytes.size() - header_start) fail(source, "truncated .npy header");
  const std::string header(bytes.substr(header_start, header_len));
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']*)')")))
    fail(source, "no descr in .npy header");
  const std::string descr = m[1];
  if (!std::regex_search(header, m, std::regex(R"('fortran_order'\s*:\s*(True|False))"))) {
    fail(source, "no fortran_order in .npy header");
  }
  const bool fortran = m[1] == "True";
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))")))
    fail(source, "no shape in .npy header");
  std::vector<std::int64_t> shape;
  const std::string dims = m[1];
  std::int64_t numel = 1;
  static const std::regex kDigits(R"(\d+)");
  for (std::sregex_iterator it(dims.begin(), dims.end(), kDigits), end; it != end; ++it) {
    const std::int64_t d = std::stoll(it->str());
    if (__builtin_mul_overflow(numel, d, &numel)) fail(source, "shape overflows");
    shape.push_back(d);
  }
  std::optional<torch::ScalarType> dtype;
  for (const auto& t : kTypes) {
    if (descr == t.descr || (descr.size() == 3 && descr[0] == '=' &&
                             descr.substr(1) == std::string(t.descr).substr(1))) {
      dtype = t.dtype;
    }
  }
  if (!dtype) fail(source, "unsupported .npy dtype '" + descr + "' (big-endian or object arrays?)");
  const std::size_t data_start = header_start + header_len;
  std::int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<std::int64_t>(c10::elementSize(*dtype)), &nbytes) ||
      static_cast<std::uint64_t>(nbytes) != bytes.size() - data_start) {
    fail(source, "data holds " + std::to_string(bytes.size() - data_start) +
                     " bytes, the header's shape needs " + std::to_string(nbytes));
  }
  return {*dtype, shape, fortran, data_start};
}

// The array in C order: a Fortran-ordered file's storage is the transposed shape.
torch::Tensor in_c_order(torch::Tensor storage, const NpyLayout& layout) {
  if (!layout.fortran || layout.shape.size() < 2) return storage;
  std::vector<std::int64_t> perm(layout.shape.size());
  for (std::size_t i = 0; i < perm.size(); ++i)
    perm[i] = static_cast<std::int64_t>(perm.size() - 1 - i);
  return storage.permute(perm).contiguous();
}

std::vector<std::int64_t> storage_shape(const NpyLayout& layout) {
  std::vector<std::int64_t> shape = layout.shape;
  if (layout.fortran) std::reverse(shape.begin(), shape.end());
  return shape;
}

}  // namespace

torch::Tensor read_npy_bytes(std::string_view bytes, const std::string& source) {
  const auto layout = parse_npy(bytes, source);
  torch::Tensor t = torch::empty(storage_shape(layout), torch::TensorOptions().dtype(layout.dtype));
  std::memcpy(t.data_ptr(), bytes.data() + layout.data_start, bytes.size() - layout.data_start);
  return in_c_order(t, layout);
}

torch::Tensor read_npy(const std::filesystem::path& path) {
  // The file is mapped copy-on-write and the tensor points into the mapping: a large matrix is
  // paged in as it is read, never copied, and a caller writing into it copies only those pages.
  // Anything but a non-empty regular file (missing, a folder, a pipe) is read as bytes, whose
  // reader names the problem.
  const auto read_whole = [&] { return read_npy_bytes(read_file_bytes(path), path.string()); };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return read_whole();
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    ::close(fd);
    return read_whole();
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) return read_whole();
  const auto unmap = [mapped, size](void*) { ::munmap(mapped, size); };
  const std::string_view bytes(static_cast<const char*>(mapped), size);
  NpyLayout layout;
  try {
    layout = parse_npy(bytes, path.string());
  } catch (...) {
    unmap(nullptr);
    throw;
  }
  char* data = static_cast<char*>(mapped) + layout.data_start;
  if (reinterpret_cast<std::uintptr_t>(data) % c10::elementSize(layout.dtype) != 0) {
    const auto t = read_npy_bytes(bytes, path.string());  // misaligned data: copy it
    unmap(nullptr);
    return t;
  }
  auto storage = torch::from_blob(data, storage_shape(layout), unmap,
                                  torch::TensorOptions().dtype(layout.dtype));
  return in_c_order(storage, layout);
}

void write_npy(const std::filesystem::path& path, const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.contiguous().cpu();
  const char* descr = nullptr;
  for (const auto& type : kTypes) {
    if (type.dtype == t.scalar_type()) descr = type.descr;
  }
  if (!descr)
    throw InvalidInput(path.string() + ": cannot write dtype " +
                       std::string(c10::toString(t.scalar_type())) + " to .npy");
  std::string shape;  // Python tuple syntax: "()", "(3,)", "(3, 4)"
  for (std::int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
  if (t.dim() == 1) shape += ",";
  std::string header =
      "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  // Written beside and renamed over the target: a reader's mapping of the old file (read_npy)
  // keeps the old contents, and a killed writer leaves the old file whole.
  auto temporary = path;
  temporary += ".part-" + std::to_string(::getpid());
  std::ofstream out(temporary, std::ios::binary);
  if (!out) throw InvalidInput(path.string() + ": cannot open for writing");
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<std::uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xFF));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  out.close();
  std::error_code ec;
  if (!out || (std::filesystem::rename(temporary, path, ec), ec)) {
    std::filesystem::remove(temporary, ec);
    throw InvalidInput(path.string() + ": write failed");
  }
}

}  // namespace facemag::io
