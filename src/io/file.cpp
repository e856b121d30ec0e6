#include "facemag/io/file.hpp"

#include <fstream>
#include <iterator>

#include "facemag/error.hpp"

namespace facemag::io {

std::string read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InvalidInput(path.string() + ": no such file");
  if (std::filesystem::is_directory(path, ec))
    throw InvalidInput(path.string() + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InvalidInput(path.string() + ": cannot open for reading");
  // Sized once from the file's length: growing a string while reading would need twice the
  // memory of a large file.
  const auto size = std::filesystem::file_size(path, ec);
  std::string bytes;
  if (!ec) {
    bytes.resize(size);
    in.read(bytes.data(), static_cast<std::streamsize>(size));
    if (static_cast<std::uintmax_t>(in.gcount()) != size)
      throw InvalidInput(path.string() + ": read error (file shorter than its size)");
  }
  // Whatever is there beyond the size (a growing file, a special file of size 0).
  bytes.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) throw InvalidInput(path.string() + ": read error");
  return bytes;
}

}  // namespace facemag::io
