// The few SQL operations the gallery needs, over SQLite or PostgreSQL, so that the gallery's logic
// and schema are written once. Statements use `?` placeholders (PostgreSQL's adapter numbers
// them); values are integers, reals, text or blobs (no NULLs).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace facemag::gallery {

struct Blob {
  std::string bytes;
};
using SqlValue = std::variant<std::int64_t, double, std::string, Blob>;
using SqlRow = std::vector<SqlValue>;

enum class Dialect { kSqlite, kPostgres };

class Sql {
 public:
  virtual ~Sql() = default;
  virtual Dialect dialect() const = 0;
  // Runs one statement; rows of a SELECT (or RETURNING). GalleryError naming the location.
  virtual std::vector<SqlRow> run(const std::string& statement,
                                  const std::vector<SqlValue>& params = {}) = 0;
  // A transaction: begin, then commit or (on any exception) rollback.
  virtual void begin() = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;
  virtual const std::string& location() const = 0;
};

// SQLite file: WAL journal, foreign keys on, waits up to 30 s for another writer. `create`: make
// the file if it is missing (else a missing file is an error).
std::unique_ptr<Sql> open_sqlite(const std::string& path, bool create);
// PostgreSQL connection URL (libpqxx).
std::unique_ptr<Sql> open_postgres(const std::string& url);

bool is_postgres_url(const std::string& location);

std::int64_t as_int(const SqlValue& v);
double as_real(const SqlValue& v);
const std::string& as_text(const SqlValue& v);
const std::string& as_blob(const SqlValue& v);

}  // namespace facemag::gallery
