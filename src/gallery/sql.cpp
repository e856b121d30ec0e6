#include "sql.hpp"

#include "facemag/gallery/gallery.hpp"

namespace facemag::gallery {

bool is_postgres_url(const std::string& location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

std::int64_t as_int(const SqlValue& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<std::int64_t>(*d);
  if (const auto* s = std::get_if<std::string>(&v)) return std::stoll(*s);
  throw GalleryError("expected an integer column, got a blob");
}
double as_real(const SqlValue& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* s = std::get_if<std::string>(&v)) return std::stod(*s);
  throw GalleryError("expected a real column, got a blob");
}
const std::string& as_text(const SqlValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  throw GalleryError("expected a text column");
}
const std::string& as_blob(const SqlValue& v) {
  if (const auto* b = std::get_if<Blob>(&v)) return b->bytes;
  throw GalleryError("expected a blob column");
}

}  // namespace facemag::gallery
