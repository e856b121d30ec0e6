// The embedding cache (`facemag cluster --cache`): resume after SIGKILL, a grown folder, a cache of
// another model, damaged chunks; and input folders reached through symbolic links.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "facemag/embedding_cache.hpp"
#include "facemag/io/image.hpp"
#include "test_support.hpp"

namespace facemag {
namespace {

namespace fs = std::filesystem;

EmbeddingCacheIdentity test_identity(const std::string& name = "test-model") {
  EmbeddingCacheIdentity id;
  id.model_name = name;
  id.architecture = "mobilefacenet";
  id.embedding_size = 4;
  id.precision = "fp32";
  id.weights_sha256 = std::string(64, 'a');
  id.detector_sha256 = std::string(64, 'b');
  return id;
}

// A face with values that do not survive a round trip through a careless float format.
FaceRecord face(std::size_t index, std::size_t of, float seed) {
  FaceRecord r;
  r.index = index;
  r.faces_in_photo = of;
  r.detection.box = {seed + 0.1f, seed / 3, seed * 7.3f, 1e-7f * seed};
  r.detection.score = 0.99999994f;
  for (int i = 0; i < 5; ++i) r.detection.landmarks[i] = {seed * i / 7.0f, -seed / (i + 1.0f)};
  r.embedding.raw = {seed, seed / 3, -seed * 1e-30f, 1.0f / 3};
  r.embedding.magnitude = seed * 1.2345678f;
  return r;
}

PhotoKey key(const std::string& path, std::uintmax_t size = 100) {
  return {path, size, 1'700'000'000'123'456'789};
}

void expect_same(const FaceRecord& a, const FaceRecord& b) {
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.faces_in_photo, b.faces_in_photo);
  EXPECT_EQ(a.embedding.raw, b.embedding.raw);  // bit for bit
  EXPECT_EQ(a.embedding.magnitude, b.embedding.magnitude);
  EXPECT_EQ(a.detection.score, b.detection.score);
  EXPECT_EQ(a.detection.box.x1, b.detection.box.x1);
  EXPECT_EQ(a.detection.box.y2, b.detection.box.y2);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(a.detection.landmarks[i].x, b.detection.landmarks[i].x);
    EXPECT_EQ(a.detection.landmarks[i].y, b.detection.landmarks[i].y);
  }
}

TEST(EmbeddingCache, KeepsFacesBitForBitAcrossOpens) {
  test::TempDir tmp;
  const auto dir = tmp / "cache";
  {
    auto cache = EmbeddingCache::open(dir, test_identity());
    EXPECT_EQ(cache.photos(), 0u);
    cache.append({key("/p/a.jpg"), key("/p/b.jpg")}, {{face(0, 2, 1.5f), face(1, 2, 2.5f)}, {}});
    cache.append({key("/p/c.jpg")}, {{face(0, 1, 3.25f)}});
    EXPECT_EQ(cache.chunks(), 2u);
  }
  auto cache = EmbeddingCache::open(dir, test_identity());
  EXPECT_EQ(cache.photos(), 3u);
  EXPECT_EQ(cache.faces(), 3u);
  EXPECT_TRUE(cache.contains(key("/p/b.jpg")));      // a photo without a face is known
  EXPECT_FALSE(cache.contains(key("/p/a.jpg", 7)));  // same path, another size: not the photo
  EXPECT_FALSE(cache.contains(key("/p/d.jpg")));
  const auto got = cache.faces_of(
      {key("/p/c.jpg"), key("/p/d.jpg"), key("/p/a.jpg"), key("/p/b.jpg"), key("/p/a.jpg")});
  ASSERT_EQ(got.size(), 5u);
  ASSERT_TRUE(got[0] && got[2] && got[3] && got[4]);
  EXPECT_FALSE(got[1]);
  ASSERT_EQ(got[0]->size(), 1u);
  expect_same((*got[0])[0], face(0, 1, 3.25f));
  ASSERT_EQ(got[2]->size(), 2u);
  expect_same((*got[2])[0], face(0, 2, 1.5f));
  expect_same((*got[2])[1], face(1, 2, 2.5f));
  EXPECT_TRUE(got[3]->empty());
  EXPECT_EQ(got[4]->size(), 2u);  // asked twice, given twice

  // A changed photo (same path, new size) is a new record; the latest counts.
  cache.append({key("/p/a.jpg", 200)}, {{face(0, 1, 9.0f)}});
  EXPECT_EQ(cache.photos(), 3u);
  EXPECT_EQ(cache.faces(), 2u);
  EXPECT_FALSE(cache.contains(key("/p/a.jpg")));
  expect_same((*cache.faces_of({key("/p/a.jpg", 200)})[0])[0], face(0, 1, 9.0f));
}

TEST(EmbeddingCache, RefusesAnotherModelNamingBoth) {
  test::TempDir tmp;
  { EmbeddingCache::open(tmp / "cache", test_identity("magface-iresnet100")); }
  try {
    EmbeddingCache::open(tmp / "cache", test_identity("mobilefacenet-casia"));
    FAIL() << "a cache of another model was opened";
  } catch (const EmbeddingCacheError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("holds embeddings of magface-iresnet100 (mobilefacenet, 4-d, fp32"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("not of mobilefacenet-casia ("), std::string::npos) << what;
  }
  // Other detector settings are another identity too.
  auto other = test_identity("magface-iresnet100");
  other.detection.min_face_size = 40;
  EXPECT_THROW(EmbeddingCache::open(tmp / "cache", other), EmbeddingCacheError);
}

TEST(EmbeddingCache, OneProcessAtATime) {
  test::TempDir tmp;
  auto held = EmbeddingCache::open(tmp / "cache", test_identity());
  // flock locks belong to the open file description: a second open() in this process conflicts
  // as another process's would.
  try {
    EmbeddingCache::open(tmp / "cache", test_identity());
    FAIL() << "opened twice";
  } catch (const EmbeddingCacheError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another facemag process"), std::string::npos)
        << e.what();
  }
}

TEST(EmbeddingCache, IgnoresWhatAKillLeavesAndReportsDamage) {
  test::TempDir tmp;
  const auto dir = tmp / "cache";
  {
    auto cache = EmbeddingCache::open(dir, test_identity());
    cache.append({key("/p/a.jpg")}, {{face(0, 1, 1.0f)}});
  }
  // What a kill can leave: a temporary file, and an .npy whose .jsonl was never written.
  test::write_file(dir / "chunk-00000001.jsonl.part-12345", "{\"path\": ");
  test::write_file(dir / "chunk-00000001.npy", "half a chunk");
  {
    auto cache = EmbeddingCache::open(dir, test_identity());
    EXPECT_EQ(cache.chunks(), 1u);
    EXPECT_EQ(cache.photos(), 1u);
    EXPECT_FALSE(fs::exists(dir / "chunk-00000001.jsonl.part-12345"));
    cache.append({key("/p/b.jpg")}, {{face(0, 1, 2.0f)}});  // overwrites the orphan .npy
  }
  EXPECT_EQ(EmbeddingCache::open(dir, test_identity()).photos(), 2u);

  // What a kill cannot leave: a chunk whose .npy lost bytes (disk trouble, an edit).
  const auto npy = dir / "chunk-00000001.npy";
  const auto bytes = test::read_file(npy);
  test::write_file(npy, bytes.substr(0, bytes.size() - 4));
  try {
    EmbeddingCache::open(dir, test_identity());
    FAIL() << "a damaged chunk was read";
  } catch (const EmbeddingCacheError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(npy.string() + ": unreadable"), std::string::npos) << what;
    EXPECT_NE(what.find("data holds 12 bytes, the header's shape needs 16"), std::string::npos)
        << what;
    EXPECT_NE(what.find("delete " + (dir / "chunk-00000001.*").string()), std::string::npos)
        << what;
  }
  // Rows that do not match the records.
  test::write_file(npy, bytes);
  test::write_file(
      dir / "chunk-00000001.jsonl",
      test::read_file(dir / "chunk-00000001.jsonl") +
          R"({"path":"/p/c.jpg","size":1,"mtime_ns":2,"faces":[{"box":[0,0,1,1],"score":0.9,)"
          R"("landmarks":[[0,0],[0,0],[0,0],[0,0],[0,0]],"index":0,)"
          R"("faces_in_photo":1,"magnitude":1}]})"
          "\n");
  try {
    EmbeddingCache::open(dir, test_identity());
    FAIL() << "a chunk with too few rows was read";
  } catch (const EmbeddingCacheError& e) {
    EXPECT_NE(std::string(e.what()).find("expected float32 2 x 4 (the faces of "
                                         "chunk-00000001.jsonl), found Float 1 x 4"),
              std::string::npos)
        << e.what();
  }
  // Deleting the damaged chunk, as the message says: its photo is embedded again; the next chunk
  // takes a new number.
  fs::remove(dir / "chunk-00000001.npy");
  fs::remove(dir / "chunk-00000001.jsonl");
  auto cache = EmbeddingCache::open(dir, test_identity());
  EXPECT_EQ(cache.photos(), 1u);
  EXPECT_FALSE(cache.contains(key("/p/b.jpg")));
  cache.append({key("/p/b.jpg")}, {{face(0, 1, 2.0f)}});
  EXPECT_TRUE(fs::exists(dir / "chunk-00000001.jsonl"));
  EXPECT_EQ(cache.chunks(), 2u);
}

}  // namespace
}  // namespace facemag

namespace facemag {
namespace {

namespace fs = std::filesystem;

void touch(const fs::path& file) {
  fs::create_directories(file.parent_path());
  test::write_file(file, "not decoded here");
}

TEST(ExpandInputs, FollowsLinkedFoldersOnce) {
  test::TempDir tmp;
  const auto people = tmp / "people";
  touch(people / "anna" / "1.jpg");
  touch(people / "anna" / "2.jpg");
  touch(people / "notes.txt");
  touch(tmp / "elsewhere" / "bob" / "1.jpg");
  touch(tmp / "elsewhere" / "bob" / "sub" / "2.png");
  fs::create_directory_symlink("..", people / "anna" / "up");  // a loop
  fs::create_directory_symlink("../elsewhere/bob", people / "bob");
  fs::create_directory_symlink("../elsewhere/bob", people / "bob2");  // a second link to bob
  fs::create_directory_symlink("anna", people / "alias");             // a link into the tree
  fs::create_directory_symlink("../../people", tmp / "elsewhere" / "bob" / "back");  // a loop
  std::vector<std::string> names, paths;
  for (const auto& f : io::expand_inputs({people.string()})) {
    names.push_back(f.name.string());
    paths.push_back(f.path.string());
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"anna/1.jpg", "anna/2.jpg", "bob/1.jpg", "bob/sub/2.png"}));
  EXPECT_EQ(paths[2], (people / "bob" / "1.jpg").string());  // as reached, through the link

  // A folder of linked person folders only (what gave "no image files found" before).
  fs::create_directories(tmp / "linked");
  fs::create_directory_symlink(tmp / "elsewhere" / "bob", tmp / "linked" / "bob");
  // bob's link back to people/ leads to anna once; people's own links lead nowhere new.
  names.clear();
  for (const auto& f : io::expand_inputs({(tmp / "linked").string()}))
    names.push_back(f.name.string());
  EXPECT_EQ(names, (std::vector<std::string>{"bob/1.jpg", "bob/back/anna/1.jpg",
                                             "bob/back/anna/2.jpg", "bob/sub/2.png"}));
}

// ---- `facemag cluster --cache` on real photos (faces-casia: 45 photos, 46 faces) ----

fs::path casia() { return test::shared_dir() / "data" / "faces-casia"; }

std::string cluster_command(const std::string& tail) {
  return "cluster --weights " +
         (test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt").string() + " --mtcnn " +
         (test::shared_dir() / "weights" / "mtcnn").string() + " " + tail;
}

#define FACEMAG_REQUIRE_CASIA()                                                        \
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mobilefacenet" / "068.ckpt"); \
  FACEMAG_REQUIRE_FILE(test::shared_dir() / "weights" / "mtcnn" / "onet.pt");          \
  FACEMAG_REQUIRE_FILE(casia() / "bruce" / "015.jpg")

// An uninterrupted run without a cache over faces-casia: its stdout and --out file (one run,
// shared by the tests below).
struct Reference {
  std::string out;
  std::string records;
};
const Reference& reference() {
  static const Reference ref = [] {
    test::TempDir tmp;
    const auto r = test::run_cli(
        cluster_command("--out " + (tmp / "ref.jsonl").string() + " " + casia().string()), tmp);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Reference{r.out, test::read_file(tmp / "ref.jsonl")};
  }();
  return ref;
}

std::size_t chunk_count(const fs::path& cache) {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache, ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind("chunk-", 0) == 0 && e.path().extension() == ".jsonl") ++n;
  }
  return n;
}

// Every photo record of the cache, chunk by chunk.
std::vector<std::vector<nlohmann::json>> cache_records(const fs::path& cache) {
  std::vector<std::vector<nlohmann::json>> out(chunk_count(cache));
  for (std::size_t c = 0; c < out.size(); ++c) {
    char name[32];
    std::snprintf(name, sizeof name, "chunk-%08zu.jsonl", c);
    out[c] = test::json_lines(test::read_file(cache / name));
  }
  return out;
}

// Starts `facemag ARGS` and SIGKILLs it once `cache` holds `chunks` chunks (0: once cache.json
// exists, i.e. while the first chunk is embedded). Returns the chunks found after the kill; fails
// the test if the run ended by itself.
std::size_t kill_after_chunks(const std::string& args, const fs::path& cache, std::size_t chunks) {
  const std::string command =
      "exec " + std::string(FACEMAG_CLI_PATH) + " " + args + " >/dev/null 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  EXPECT_GT(pid, 0);
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ADD_FAILURE() << "the run ended before it was killed (status " << status << ")";
      return chunk_count(cache);
    }
    const bool ready =
        chunks == 0 ? fs::exists(cache / "cache.json") : chunk_count(cache) >= chunks;
    if (ready) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  return chunk_count(cache);
}

TEST(ClusterCacheCli, ResumesAfterKillsAndEqualsAnUninterruptedRun) {
  FACEMAG_REQUIRE_CASIA();
  const auto& ref = reference();
  test::TempDir tmp;
  const auto cache = tmp / "cache";
  // 45 photos in chunks of 32: two chunks. Killed while the first is embedded, then while the
  // second is.
  const auto args = cluster_command("--cache " + cache.string() + " " + casia().string());
  EXPECT_EQ(kill_after_chunks(args, cache, 0), 0u);
  EXPECT_EQ(kill_after_chunks(args, cache, 1), 1u);
  const std::size_t cached = 32;

  const auto r = test::run_cli(args + " --out " + (tmp / "groups.jsonl").string(), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ref.out);  // byte for byte
  EXPECT_EQ(test::read_file(tmp / "groups.jsonl"), ref.records);
  EXPECT_NE(r.err.find(std::to_string(cached) + " photo(s) from the cache, " +
                       std::to_string(45 - cached) + " embedded now"),
            std::string::npos)
      << r.err;

  // No photo embedded twice: each of the 45 photos once in the cache, and 46 faces.
  std::map<std::string, int> seen;
  std::size_t faces = 0;
  for (const auto& chunk : cache_records(cache)) {
    for (const auto& photo : chunk) {
      ++seen[photo["path"].get<std::string>()];
      faces += photo["faces"].size();
    }
  }
  EXPECT_EQ(seen.size(), 45u);
  for (const auto& [path, n] : seen) EXPECT_EQ(n, 1) << path;
  EXPECT_EQ(faces, 46u);
}

TEST(ClusterCacheCli, GrownFolderEmbedsOnlyTheNewPhotos) {
  FACEMAG_REQUIRE_CASIA();
  const auto& ref = reference();
  test::TempDir tmp;
  const auto cache = tmp / "cache";
  // A library of linked person folders (links are followed), growing by one person.
  const auto lib = tmp / "lib";
  fs::create_directories(lib);
  fs::create_directory_symlink(casia() / "neil", lib / "neil");
  fs::create_directory_symlink(casia() / "pam", lib / "pam");
  const auto args = cluster_command("--cache " + cache.string() + " " + lib.string());
  const auto first = test::run_cli(args, tmp);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.err.find("0 photo(s) from the cache, 30 embedded now"), std::string::npos)
      << first.err;
  const auto chunks_before = chunk_count(cache);

  fs::create_directory_symlink(casia() / "bruce", lib / "bruce");
  const auto grown_out = tmp / "grown.jsonl";
  const auto grown = test::run_cli(args + " --out " + grown_out.string(), tmp);
  ASSERT_EQ(grown.exit_code, 0) << grown.err;
  EXPECT_NE(grown.err.find("30 photo(s) from the cache, 15 embedded now"), std::string::npos)
      << grown.err;
  const auto records = cache_records(cache);
  ASSERT_GT(records.size(), chunks_before);
  std::size_t added = 0;
  for (std::size_t c = chunks_before; c < records.size(); ++c) {
    for (const auto& photo : records[c]) {
      EXPECT_NE(photo["path"].get<std::string>().find("/lib/bruce/"), std::string::npos);
      ++added;
    }
  }
  EXPECT_EQ(added, 15u);
  // The answer of a run without a cache: the same faces in the same order, groups, verdicts and
  // next groups. The photos were detected beside other photos than in that run, which moves
  // MTCNN's landmarks in the last bits, so similarities agree to float rounding (measured on
  // faces-casia: up to 5e-5 with the photos in other chunks, 4e-4 one photo at a time).
  const auto expected = test::json_lines(ref.records);
  const auto got = test::json_lines(test::read_file(grown_out));
  ASSERT_EQ(got.size(), expected.size());
  const auto tail = [](const nlohmann::json& rec) {  // "neil/001.jpg"
    const fs::path p = rec["path"].get<std::string>();
    return (p.parent_path().filename() / p.filename()).string();
  };
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(tail(got[i]), tail(expected[i])) << i;
    EXPECT_EQ(got[i]["face"], expected[i]["face"]) << i;
    EXPECT_EQ(got[i]["group"], expected[i]["group"]) << i;
    EXPECT_EQ(got[i]["verdict"], expected[i]["verdict"]) << i;
    EXPECT_EQ(got[i].value("next_group", -1), expected[i].value("next_group", -1)) << i;
    EXPECT_NEAR(got[i]["similarity"].get<double>(), expected[i]["similarity"].get<double>(), 1e-3)
        << i;
  }
  EXPECT_EQ(grown.out.substr(0, grown.out.find("\n\n")), ref.out.substr(0, ref.out.find("\n\n")));

  // Nothing new: nothing embedded, nothing appended, the same answer bit for bit.
  const auto again = test::run_cli(args + " --out " + (tmp / "again.jsonl").string(), tmp);
  EXPECT_NE(again.err.find("45 photo(s) from the cache, 0 embedded now"), std::string::npos)
      << again.err;
  EXPECT_EQ(again.out, grown.out);
  EXPECT_EQ(test::read_file(tmp / "again.jsonl"), test::read_file(grown_out));
  EXPECT_EQ(chunk_count(cache), records.size());

  // A person gone from the folder is not clustered (the cache keeps their faces).
  fs::remove(lib / "pam");
  const auto fewer = test::run_cli(args + " --out " + (tmp / "fewer.jsonl").string(), tmp);
  ASSERT_EQ(fewer.exit_code, 0) << fewer.err;
  std::size_t without_pam = 0;
  for (const auto& rec : test::json_lines(ref.records))
    without_pam += rec["path"].get<std::string>().find("/pam/") == std::string::npos;
  const auto fewer_records = test::json_lines(test::read_file(tmp / "fewer.jsonl"));
  EXPECT_EQ(fewer_records.size(), without_pam);
  for (const auto& rec : fewer_records)
    EXPECT_EQ(rec["path"].get<std::string>().find("/pam/"), std::string::npos);
}

TEST(ClusterCacheCli, RefusesACacheOfAnotherModel) {
  FACEMAG_REQUIRE_CASIA();
  test::TempDir tmp;
  { EmbeddingCache::open(tmp / "cache", test_identity("magface-iresnet100")); }
  const auto r = test::run_cli(cluster_command("--cache " + (tmp / "cache").string() + " " +
                                               (casia() / "neil" / "001.jpg").string()),
                               tmp);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("holds embeddings of magface-iresnet100 (mobilefacenet, 4-d"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("not of mobilefacenet-casia (mobilefacenet, 256-d, fp32, weights sha256 "),
            std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;  // one clear line
  EXPECT_EQ(chunk_count(tmp / "cache"), 0u);                            // nothing embedded
}

}  // namespace
}  // namespace facemag
