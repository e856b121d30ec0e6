#include "facemag/io/file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  const auto folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec))
    throw InvalidInput(path.string() + ": the folder " + folder.string() + " does not exist");
  auto temporary = path;
  temporary += ".part-" + std::to_string(::getpid());
  const auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    std::filesystem::remove(temporary, ec);
    throw Error(path.string() + ": " + what + " (" + reason + ")");
  };
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create " + temporary.string());
  std::size_t written = 0;
  while (written < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      fail("write failed");
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) fail("write failed");
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    errno = ec.value();
    fail("cannot rename " + temporary.string() + " into place");
  }
}

}  // namespace facemag::io
