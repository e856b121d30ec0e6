#include "facemag/io/format.hpp"

#include <cstdarg>
#include <cstdio>

namespace facemag::io {

void append_printf(std::string& out, const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  const auto at = out.size();
  out.resize(at + static_cast<std::size_t>(n) + 1);
  std::vsnprintf(out.data() + at, static_cast<std::size_t>(n) + 1, format, again);
  va_end(again);
  out.resize(at + static_cast<std::size_t>(n));
}

}  // namespace facemag::io
