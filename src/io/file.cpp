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
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InvalidInput(path.string() + ": read error");
  return bytes;
}

}  // namespace facemag::io
