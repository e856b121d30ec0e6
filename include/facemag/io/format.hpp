// printf-style formatting into a std::string, for the text forms of results (eval/text.hpp,
// gallery/text.hpp): the same conversions the CLI printed with, so the text stays byte-identical.
#pragma once

#include <string>

namespace facemag::io {

// Appends printf's formatting of `format` and the arguments to `out`.
[[gnu::format(printf, 2, 3)]] void append_printf(std::string& out, const char* format, ...);

}  // namespace facemag::io
