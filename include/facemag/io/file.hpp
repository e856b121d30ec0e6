// Reading whole files, with the error messages every reader gives.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace facemag::io {

// A whole file's bytes. InvalidInput naming the path when it is missing, a directory or
// unreadable.
std::string read_file_bytes(const std::filesystem::path& path);

// Writes `bytes` to PATH.part-<pid> beside it, flushes it to disk and renames it over `path`: a
// reader (or a kill at any moment) sees the old file or the whole new one, never part of it.
// InvalidInput naming the folder when it does not exist; Error when writing fails (the temporary
// file is removed).
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

}  // namespace facemag::io
