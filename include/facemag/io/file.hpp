// Reading whole files, with the error messages every reader gives.
#pragma once

#include <filesystem>
#include <string>

namespace facemag::io {

// A whole file's bytes. InvalidInput naming the path when it is missing, a directory or
// unreadable.
std::string read_file_bytes(const std::filesystem::path& path);

}  // namespace facemag::io
