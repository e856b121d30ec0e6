#include <gtest/gtest.h>
#include <torch/torch.h>

#include "facemag/error.hpp"
#include "facemag/io/npy.hpp"
#include "test_support.hpp"

namespace facemag::io {
namespace {

TEST(Npy, RoundTripsEveryWrittenDtype) {
  test::TempDir tmp;
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32, torch::kUInt8,
                     torch::kBool}) {
    const auto t = (torch::arange(24) % 5).to(dtype).view({2, 3, 4});
    write_npy(tmp / "a.npy", t);
    const auto back = read_npy(tmp / "a.npy");
    EXPECT_EQ(back.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(back, t));
  }
  write_npy(tmp / "v.npy", torch::tensor({1.0f, 2.0f}));
  const std::string bytes = test::read_file(tmp / "v.npy");
  EXPECT_EQ(bytes.size() % 64, 8u);  // header padded to 64 bytes, then 2 floats
  EXPECT_NE(bytes.find("'shape': (2,)"), std::string::npos);
}

TEST(Npy, ReadsFortranOrder) {
  // np.asfortranarray(np.arange(6, dtype='<i8').reshape(2, 3)) saved with np.save
  std::string header = "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string bytes =
      std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size()) + '\0' + header;
  for (std::int64_t v : {0, 3, 1, 4, 2, 5}) bytes.append(reinterpret_cast<const char*>(&v), 8);
  const auto t = read_npy_bytes(bytes, "f.npy");
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kInt64).view({2, 3})));
}

TEST(Npy, RejectsTruncatedAndForeignFiles) {
  EXPECT_THROW(read_npy_bytes("", "e.npy"), InvalidInput);
  EXPECT_THROW(read_npy_bytes("PK\x03\x04 not npy", "z.npy"), InvalidInput);
  test::TempDir tmp;
  write_npy(tmp / "a.npy", torch::ones({4, 4}));
  const std::string full = test::read_file(tmp / "a.npy");
  EXPECT_THROW(read_npy_bytes(full.substr(0, full.size() - 1), "cut.npy"), InvalidInput);
}

TEST(Npy, AMappedMatrixKeepsItsValuesWhenItsFileIsRewrittenAndWritesDoNotReachTheFile) {
  test::TempDir tmp;
  const auto path = tmp / "m.npy";
  const auto original = torch::arange(12, torch::kFloat32).view({3, 4});
  write_npy(path, original);
  auto mapped = read_npy(path);
  write_npy(path, torch::zeros({5, 4}));  // a new file, renamed over the old one
  EXPECT_TRUE(torch::equal(mapped, original));
  mapped.mul_(2);  // copy-on-write: the caller's change stays in the caller's memory
  EXPECT_TRUE(torch::equal(read_npy(path), torch::zeros({5, 4})));
  EXPECT_THROW(read_npy(tmp / "missing.npy"), InvalidInput);
  EXPECT_THROW(read_npy(tmp.path()), InvalidInput);  // a folder
}

TEST(NpyGolden, ReadsTheGoldenFeatureMatrices) {
  const auto path = test::golden_dir() / "iresnet" / "iresnet18.npy";
  FACEMAG_REQUIRE_FILE(path);
  const auto t = read_npy(path);
  EXPECT_EQ(t.sizes().vec(), (std::vector<std::int64_t>{10, 512}));
  const auto golden = test::read_json(test::golden_dir() / "iresnet" / "iresnet18.json");
  EXPECT_EQ(t[0][0].item<float>(), golden["first8"][0][0].get<float>());
}

}  // namespace
}  // namespace facemag::io
