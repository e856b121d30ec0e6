#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "facemag/gallery/gallery.hpp"
#include "sql.hpp"

namespace facemag::gallery {
namespace {

class SqliteSql : public Sql {
 public:
  SqliteSql(const std::string& path, bool create) : path_(path) {
    if (!create && !std::filesystem::exists(path))
      throw GalleryError(path + ": no such gallery (create one with `facemag gallery create`)");
    // A file this user cannot write is opened read-only (searches work, changes are refused);
    // in a folder it cannot write either, SQLite cannot make its WAL index: read it as immutable.
    const bool read_only = !create && access_denied(path);
    const auto folder = std::filesystem::absolute(path).parent_path();
    const std::string name =
        read_only ? "file:" + uri_escaped(std::filesystem::absolute(path).string()) + "?mode=ro" +
                        (access_denied(folder.string()) ? "&immutable=1" : "")
                  : path;
    const int flags = read_only ? SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
                                : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(name.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      // A read-only file opens only read-only: say so instead of SQLite's "unable to open".
      if (std::filesystem::exists(path) && access_denied(path))
        throw GalleryError(path + ": the gallery is read-only (no write permission)");
      throw GalleryError(path + ": cannot open as a gallery: " + why);
    }
    sqlite3_busy_timeout(db_, 30000);
    run("PRAGMA foreign_keys = ON");
    if (read_only) return;  // the file is in WAL mode already, made so by whoever created it
    // 16 KB pages hold a 512-d embedding (2 KB) in its row: with SQLite's default 4 KB pages a
    // row over ~1 KB spills into an overflow page of its own, and a gallery of 1M people with 2
    // faces each took 12.5 GB. Only a new, empty file takes it (before WAL is on).
    if (create) run("PRAGMA page_size = 16384");
    // WAL: readers never block the writer; synchronous=FULL: a committed batch survives a crash
    // or power loss.
    run("PRAGMA journal_mode = WAL");
    run("PRAGMA synchronous = FULL");
  }
  ~SqliteSql() override { sqlite3_close(db_); }

  Dialect dialect() const override { return Dialect::kSqlite; }
  const std::string& location() const override { return path_; }

  std::vector<SqlRow> run(const std::string& statement,
                          const std::vector<SqlValue>& params = {}) override {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, statement.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
      fail("cannot prepare '" + statement + "'");
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> guard(stmt, &sqlite3_finalize);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int k = static_cast<int>(i + 1);
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int64_t>) {
              sqlite3_bind_int64(stmt, k, v);
            } else if constexpr (std::is_same_v<T, double>) {
              sqlite3_bind_double(stmt, k, v);
            } else if constexpr (std::is_same_v<T, std::string>) {
              sqlite3_bind_text(stmt, k, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
            } else {
              sqlite3_bind_blob(stmt, k, v.bytes.data(), static_cast<int>(v.bytes.size()),
                                SQLITE_TRANSIENT);
            }
          },
          params[i]);
    }
    std::vector<SqlRow> rows;
    while (true) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) fail("'" + statement.substr(0, 60) + "...' failed");
      SqlRow row;
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<std::int64_t>(sqlite3_column_int64(stmt, c)));
            break;
          case SQLITE_FLOAT:
            row.emplace_back(sqlite3_column_double(stmt, c));
            break;
          case SQLITE_BLOB: {
            const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, c));
            row.emplace_back(Blob{std::string(data, data + sqlite3_column_bytes(stmt, c))});
            break;
          }
          default: {
            const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
            row.emplace_back(std::string(text ? text : ""));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  void begin() override { run("BEGIN IMMEDIATE"); }
  void commit() override { run("COMMIT"); }
  void rollback() noexcept override { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

 private:
  static std::string uri_escaped(const std::string& path) {
    std::string out;
    for (const char c : path) {
      if (c == '%' || c == '?' || c == '#') {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
        out += buf;
      } else {
        out += c;
      }
    }
    return out;
  }
  static bool access_denied(const std::string& path) { return ::access(path.c_str(), W_OK) != 0; }
  [[noreturn]] void fail(const std::string& what) {
    const int code = sqlite3_errcode(db_);
    const std::string message = sqlite3_errmsg(db_);
    if (code == SQLITE_READONLY)
      throw GalleryError(path_ + ": the gallery is read-only (" + message + ")");
    if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
      throw GalleryError(path_ + ": not a facemag gallery (" + message + ")");
    throw GalleryError(path_ + ": " + what + ": " + message);
  }

  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace

std::unique_ptr<Sql> open_sqlite(const std::string& path, bool create) {
  return std::make_unique<SqliteSql>(path, create);
}

}  // namespace facemag::gallery
