// A PostgreSQL server of a test's own (tests/postgres_server.sh starts it in a folder of the
// test's temporary directory), stopped when the object goes: a real server, never a mock.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "test_support.hpp"

namespace facemag::test {

class PostgresServer {
 public:
  explicit PostgresServer(const std::filesystem::path& dir) : dir_(dir) {
    const std::string script = std::string(FACEMAG_SOURCE_DIR) + "/tests/postgres_server.sh";
    FILE* pipe = popen(("bash " + script + " start " + dir.string() + " 2>" +
                        (dir.parent_path() / "pg_start.err").string())
                           .c_str(),
                       "r");
    char buf[512];
    while (std::size_t n = fread(buf, 1, sizeof buf, pipe)) url_.append(buf, n);
    status_ = WEXITSTATUS(pclose(pipe));
    while (!url_.empty() && url_.back() == '\n') url_.pop_back();
    why_ = read_file(dir.parent_path() / "pg_start.err");
  }
  ~PostgresServer() {
    if (status_ == 0)
      std::system(("bash " + std::string(FACEMAG_SOURCE_DIR) + "/tests/postgres_server.sh stop " +
                   dir_.string())
                      .c_str());
  }
  bool absent() const { return status_ == 77; }
  bool running() const { return status_ == 0; }
  const std::string& url() const { return url_; }
  const std::string& why() const { return why_; }

 private:
  std::filesystem::path dir_;
  std::string url_, why_;
  int status_ = -1;
};

}  // namespace facemag::test

// Skips the test, saying why, where PostgreSQL is not installed; fails it where the server would
// not start.
#define FACEMAG_REQUIRE_POSTGRES(server)                   \
  do {                                                     \
    if ((server).absent()) GTEST_SKIP() << (server).why(); \
    ASSERT_TRUE((server).running()) << (server).why();     \
  } while (0)
