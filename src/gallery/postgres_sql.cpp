#include <pqxx/pqxx>

#include <optional>

#include "facemag/gallery/gallery.hpp"
#include "sql.hpp"

namespace facemag::gallery {
namespace {

// `?` placeholders numbered as PostgreSQL's $1, $2, ... (no statement here has a literal `?`).
std::string numbered(const std::string& statement) {
  std::string out;
  int n = 0;
  for (const char c : statement) {
    if (c == '?') {
      out += "$" + std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

std::string hex_bytea(const std::string& bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + 2 * bytes.size());
  for (const unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// Describes a connection URL without its password.
std::string redacted(const std::string& url) {
  const auto at = url.find('@');
  const auto scheme = url.find("://");
  if (at == std::string::npos || scheme == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon) + ":***" + url.substr(at);
}

class PostgresSql : public Sql {
 public:
  explicit PostgresSql(const std::string& url) : location_(redacted(url)) {
    try {
      connection_.emplace(url);
    } catch (const std::exception& e) {
      throw GalleryError(location_ + ": cannot connect: " + e.what());
    }
  }

  Dialect dialect() const override { return Dialect::kPostgres; }
  const std::string& location() const override { return location_; }

  std::vector<SqlRow> run(const std::string& statement,
                          const std::vector<SqlValue>& params = {}) override {
    std::vector<std::string> text;
    std::vector<bool> is_blob;
    for (const auto& p : params) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int64_t>) {
              text.push_back(std::to_string(v));
            } else if constexpr (std::is_same_v<T, double>) {
              char buf[32];
              std::snprintf(buf, sizeof buf, "%.17g", v);
              text.emplace_back(buf);
            } else if constexpr (std::is_same_v<T, std::string>) {
              text.push_back(v);
            } else {
              text.push_back(hex_bytea(v.bytes));
            }
          },
          p);
    }
    try {
      pqxx::result result;
      const auto sql = numbered(statement);
      if (work_) {
        result = work_->exec_params(sql, pqxx::prepare::make_dynamic_params(text));
      } else {
        pqxx::nontransaction once(*connection_);
        result = once.exec_params(sql, pqxx::prepare::make_dynamic_params(text));
      }
      std::vector<SqlRow> rows;
      for (const auto& r : result) {
        SqlRow row;
        for (const auto& field : r) {
          const auto type = field.type();
          if (type == 17) {  // bytea
            const pqxx::binarystring bytes(field);
            row.emplace_back(Blob{bytes.str()});
          } else if (type == 20 || type == 23 || type == 21) {  // int8, int4, int2
            row.emplace_back(field.as<std::int64_t>());
          } else if (type == 701 || type == 700 || type == 1700) {  // float8, float4, numeric
            row.emplace_back(field.as<double>());
          } else {
            row.emplace_back(field.as<std::string>());
          }
        }
        rows.push_back(std::move(row));
      }
      return rows;
    } catch (const pqxx::sql_error& e) {
      throw GalleryError(location_ + ": " + std::string(e.what()).substr(0, 300));
    } catch (const pqxx::broken_connection& e) {
      throw GalleryError(location_ + ": connection lost: " + e.what());
    }
  }

  void begin() override { work_.emplace(*connection_); }
  void commit() override {
    try {
      work_->commit();
    } catch (const std::exception& e) {
      work_.reset();
      throw GalleryError(location_ + ": commit failed: " + e.what());
    }
    work_.reset();
  }
  void rollback() noexcept override {
    try {
      if (work_) work_->abort();
    } catch (...) {
    }
    work_.reset();
  }

 private:
  std::string location_;
  std::optional<pqxx::connection> connection_;
  std::optional<pqxx::work> work_;
};

}  // namespace

std::unique_ptr<Sql> open_postgres(const std::string& url) {
  return std::make_unique<PostgresSql>(url);
}

}  // namespace facemag::gallery
