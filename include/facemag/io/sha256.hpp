// SHA-256 digests (OpenSSL's libcrypto), as lowercase hex: the identity of a weight file or a
// photo.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace facemag::io {

std::string sha256_hex(std::string_view bytes);
// Streams the file in 1 MB blocks (a 250 MB checkpoint is never held twice). InvalidInput naming
// the path when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace facemag::io
