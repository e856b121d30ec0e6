// Checkpoint reader and writer against ../shared/golden/ckpt (files written by torch.save 1.13)
// and the real MTCNN weight files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "test_support.hpp"

namespace facemag::io {
namespace {

using nlohmann::json;
using pickle::Value;

torch::ScalarType dtype_from_name(const std::string& name) {
  static const std::map<std::string, torch::ScalarType> kNames = {
      {"float32", torch::kFloat32},   {"float16", torch::kFloat16}, {"float64", torch::kFloat64},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kInt64},     {"int32", torch::kInt32},
      {"int16", torch::kInt16},       {"int8", torch::kInt8},       {"uint8", torch::kUInt8},
      {"bool", torch::kBool}};
  return kNames.at(name);
}

// Compares a loaded value with the golden JSON description, recursively; `storages` maps the
// golden storage numbers to the StorageImpl they must share.
class GoldenMatcher {
 public:
  void match(const Value& v, const json& g, const std::string& where) {
    if (g.is_object() && g.contains("__tensor__")) return match_tensor(v, g, where);
    if (g.is_object() && g.contains("__type__")) {
      ASSERT_TRUE(v.is<pickle::Dict>()) << where << ": expected a dict, found " << v.type_name();
      const auto& d = v.as_dict();
      EXPECT_EQ(d.ordered, g["__type__"] == "OrderedDict") << where;
      ASSERT_EQ(d.items.size(), g["items"].size()) << where;
      for (std::size_t i = 0; i < d.items.size(); ++i) {
        const auto& [key, value] = g["items"][i].get<std::pair<json, json>>();
        match(*d.items[i].first, key, where + " key " + std::to_string(i));
        match(*d.items[i].second, value, where + "[" + key.dump() + "]");
      }
      return;
    }
    if (g.is_array()) {
      const auto& items = v.as_sequence(where);
      ASSERT_EQ(items.size(), g.size()) << where;
      for (std::size_t i = 0; i < items.size(); ++i)
        match(*items[i], g[i], where + "[" + std::to_string(i) + "]");
      return;
    }
    if (g.is_string()) {
      EXPECT_EQ(v.as_string(where), g.get<std::string>()) << where;
    } else if (g.is_boolean()) {
      EXPECT_EQ(v.as_bool(where), g.get<bool>()) << where;
    } else if (g.is_number_integer()) {
      ASSERT_TRUE(v.is<std::int64_t>()) << where << ": " << v.type_name();
      EXPECT_EQ(v.as_int(where), g.get<std::int64_t>()) << where;
    } else if (g.is_number_float()) {
      ASSERT_TRUE(v.is<double>()) << where << ": " << v.type_name();
      EXPECT_EQ(v.as_double(where), g.get<double>()) << where;
    } else if (g.is_null()) {
      EXPECT_TRUE(v.is_none()) << where;
    } else {
      FAIL() << where << ": golden value " << g.dump() << " not understood";
    }
  }

  std::size_t storage_count() const { return storages_.size(); }

 private:
  void match_tensor(const Value& v, const json& g, const std::string& where) {
    ASSERT_TRUE(v.is<torch::Tensor>()) << where << ": expected a tensor, found " << v.type_name();
    const torch::Tensor& t = v.as_tensor();
    EXPECT_EQ(t.scalar_type(), dtype_from_name(g["dtype"])) << where;
    EXPECT_EQ(t.sizes().vec(), g["shape"].get<std::vector<std::int64_t>>()) << where;
    EXPECT_EQ(t.strides().vec(), g["stride"].get<std::vector<std::int64_t>>()) << where;
    EXPECT_EQ(t.storage_offset(), g["storage_offset"].get<std::int64_t>()) << where;
    EXPECT_EQ(static_cast<std::int64_t>(t.storage().nbytes() / t.element_size()),
              g["storage_numel"].get<std::int64_t>())
        << where;
    EXPECT_EQ(t.is_contiguous(), g["contiguous"].get<bool>()) << where;
    const int storage_id = g["storage"];
    const void* impl = t.storage().unsafeGetStorageImpl();
    auto [it, inserted] = storages_.emplace(storage_id, impl);
    EXPECT_EQ(it->second, impl) << where << ": storage " << storage_id << " is not shared";
    for (const auto& [id, other] : storages_) {
      if (id != storage_id)
        EXPECT_NE(other, impl) << where << ": storages " << id << " and " << storage_id
                               << " merged";
    }
    const auto flat = t.contiguous().flatten();
    const auto& values = g["values"];
    ASSERT_EQ(flat.numel(), static_cast<std::int64_t>(values.size())) << where;
    if (t.is_floating_point()) {
      const auto d = flat.to(torch::kFloat64);
      for (std::int64_t i = 0; i < flat.numel(); ++i) {
        const double expected = values[i].get<double>();
        EXPECT_EQ(d[i].item<double>(), expected) << where << " element " << i;
        EXPECT_EQ(std::signbit(d[i].item<double>()), std::signbit(expected))
            << where << " element " << i;
      }
    } else {
      const auto l = flat.to(torch::kInt64);
      for (std::int64_t i = 0; i < flat.numel(); ++i) {
        EXPECT_EQ(l[i].item<std::int64_t>(), values[i].get<std::int64_t>())
            << where << " element " << i;
      }
    }
  }

  std::map<int, const void*> storages_;
};

class CheckpointGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckpointGolden, ReadsExactlyWhatTorchSaveWrote) {
  const auto dir = test::golden_dir() / "ckpt";
  FACEMAG_REQUIRE_FILE(dir / (GetParam() + ".pth"));
  const json golden = test::read_json(dir / (GetParam() + ".json"));
  const Checkpoint c = load_checkpoint(dir / (GetParam() + ".pth"));
  EXPECT_EQ(c.format,
            golden["zip_records"].is_null() ? CheckpointFormat::kLegacy : CheckpointFormat::kZip);
  GoldenMatcher m;
  m.match(*c.root, golden["object"], GetParam());
  EXPECT_EQ(m.storage_count(), golden["storages"].get<std::size_t>());
}

TEST_P(CheckpointGolden, WriterOutputReadsBackIdentically) {
  const auto dir = test::golden_dir() / "ckpt";
  FACEMAG_REQUIRE_FILE(dir / (GetParam() + ".pth"));
  const json golden = test::read_json(dir / (GetParam() + ".json"));
  test::TempDir tmp;
  const auto out = tmp / (GetParam() + "_copy.pth");
  save_checkpoint(out, *load_checkpoint(dir / (GetParam() + ".pth")).root);
  const Checkpoint back = load_checkpoint(out);
  EXPECT_EQ(back.format, CheckpointFormat::kZip);
  GoldenMatcher m;
  m.match(*back.root, golden["object"], GetParam() + " (rewritten)");
  EXPECT_EQ(m.storage_count(), golden["storages"].get<std::size_t>());
}

INSTANTIATE_TEST_SUITE_P(Files, CheckpointGolden,
                         ::testing::Values("plain_state_dict_zip", "plain_state_dict_legacy",
                                           "magface_like_zip", "magface_like_legacy"));

TEST(CheckpointGoldenZip, WriterLaysOutRecordsAsTorchSave) {
  // torch.save: <stem>/data.pkl, <stem>/data/<key> of exactly the storage's bytes, <stem>/version.
  const auto dir = test::golden_dir() / "ckpt";
  FACEMAG_REQUIRE_FILE(dir / "magface_like_zip.pth");
  const json golden = test::read_json(dir / "magface_like_zip.json");
  test::TempDir tmp;
  const auto out = tmp / "magface_like_zip.pth";
  save_checkpoint(out, *load_checkpoint(dir / "magface_like_zip.pth").root);
  const std::string bytes = test::read_file(out);
  for (const auto& record : golden["zip_records"]) {
    const std::string name = record[0];
    EXPECT_NE(bytes.find(name), std::string::npos) << "record " << name << " missing";
  }
}

TEST(CheckpointGoldenMtcnn, ReadsTheRealLegacyWeightFiles) {
  const json golden = test::read_json(test::golden_dir() / "ckpt" / "mtcnn_weights.json");
  for (const auto& [file, info] : golden["files"].items()) {
    const auto path = test::shared_dir() / "weights" / "mtcnn" / file;
    FACEMAG_REQUIRE_FILE(path);
    const Checkpoint c = load_checkpoint(path);
    EXPECT_EQ(c.format,
              info["zip_format"].get<bool>() ? CheckpointFormat::kZip : CheckpointFormat::kLegacy);
    EXPECT_EQ(c.root->as_dict().attributes != nullptr, info["has_metadata"].get<bool>()) << file;
    const NamedTensors tensors = find_state_dict(c);
    ASSERT_EQ(tensors.size(), info["tensors"].size()) << file;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& g = info["tensors"][i];
      const auto& [name, t] = tensors[i];
      const std::string where = std::string(file) + ":" + name;
      EXPECT_EQ(name, g["key"].get<std::string>());
      EXPECT_EQ(t.scalar_type(), dtype_from_name(g["dtype"])) << where;
      EXPECT_EQ(t.sizes().vec(), g["shape"].get<std::vector<std::int64_t>>()) << where;
      EXPECT_EQ(t.strides().vec(), g["stride"].get<std::vector<std::int64_t>>()) << where;
      const auto d = t.contiguous().flatten().to(torch::kFloat64);
      double sum = 0, sum_sq = 0;
      for (std::int64_t k = 0; k < d.numel(); ++k) {
        const double x = d[k].item<double>();
        sum += x;
        sum_sq += x * x;
      }
      EXPECT_NEAR(sum, g["sum"].get<double>(),
                  1e-9 * std::max(1.0, std::abs(g["sum"].get<double>())))
          << where;
      EXPECT_NEAR(sum_sq, g["sum_of_squares"].get<double>(),
                  1e-9 * g["sum_of_squares"].get<double>())
          << where;
      for (std::size_t k = 0; k < g["first4"].size(); ++k) {
        EXPECT_EQ(d[static_cast<std::int64_t>(k)].item<double>(), g["first4"][k].get<double>())
            << where;
      }
    }
  }
}

// ---- bad input ---------------------------------------------------------------------------

std::string golden_bytes(const std::string& name) {
  return test::read_file(test::golden_dir() / "ckpt" / name);
}

TEST(Checkpoint, MissingAndEmptyFilesNameTheFile) {
  try {
    load_checkpoint("/nonexistent/weights.pth");
    FAIL();
  } catch (const ModelLoadError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/weights.pth: no such file"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_checkpoint_bytes("", "empty.pth"), ModelLoadError);
  EXPECT_THROW(load_checkpoint_bytes("hello world", "text.pth"), ModelLoadError);
}

TEST(CheckpointGoldenTruncation, EveryTruncationIsACleanError) {
  for (const char* name : {"magface_like_zip.pth", "magface_like_legacy.pth"}) {
    FACEMAG_REQUIRE_FILE(test::golden_dir() / "ckpt" / name);
    const std::string full = golden_bytes(name);
    for (std::size_t n = 0; n < full.size(); n += (n < 200 ? 1 : 7)) {
      EXPECT_THROW(load_checkpoint_bytes(full.substr(0, n), name), ModelLoadError)
          << name << " cut at " << n;
    }
  }
}

TEST(CheckpointGoldenCorruption, FlippedBytesNeverCrash) {
  // Every single-byte corruption either loads (a changed value) or fails with ModelLoadError.
  for (const char* name : {"magface_like_zip.pth", "magface_like_legacy.pth"}) {
    FACEMAG_REQUIRE_FILE(test::golden_dir() / "ckpt" / name);
    const std::string full = golden_bytes(name);
    for (std::size_t i = 0; i < full.size(); ++i) {
      std::string bad = full;
      bad[i] = static_cast<char>(bad[i] ^ 0x5A);
      try {
        load_checkpoint_bytes(bad, name);
      } catch (const ModelLoadError&) {
      } catch (const VersionMismatch&) {
      }
    }
  }
}

TEST(Checkpoint, HostileStorageSizeIsRefusedBeforeAllocation) {
  // A legacy checkpoint whose only tensor claims 2^40 floats.
  using namespace std::string_literals;
  const std::string pickle_stream =
      "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s +  // magic number
      "\x80\x02M\xe9\x03."s +                                         // protocol 1001
      "\x80\x02}."s +                                                 // sys_info
      "\x80\x02"
      "ctorch._utils\n_rebuild_tensor_v2\n("s +  // the tensor
      "(X\x07\x00\x00\x00"s +
      "storage" + "ctorch\nFloatStorage\n" + "X\x01\x00\x00\x00"s + "0" + "X\x03\x00\x00\x00"s +
      "cpu" + "\x8a\x06\x00\x00\x00\x00\x00\x01"s +  // 2^40 elements
      "tQK\x00(K\x01tK\x01t\x89NtR."s;
  try {
    load_checkpoint_bytes(pickle_stream, "huge.pth");
    FAIL() << "no error";
  } catch (const ModelLoadError& e) {
    EXPECT_NE(std::string(e.what()).find("more than the file"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, StateDictIsFoundInsideTrainingCheckpoints) {
  pickle::Dict inner;
  inner.ordered = true;
  pickle::dict_set(inner, Value::make(std::string("features.module.w")),
                   Value::make(torch::ones({2})));
  pickle::Dict outer;
  pickle::dict_set(outer, Value::make(std::string("epoch")), Value::make(std::int64_t{3}));
  pickle::dict_set(outer, Value::make(std::string("state_dict")), Value::make(std::move(inner)));
  const Checkpoint c{Value::make(std::move(outer)), CheckpointFormat::kZip, "mem"};
  const NamedTensors t = find_state_dict(c);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].first, "features.module.w");
}

TEST(Checkpoint, WriterSharesStoragesAndKeepsViews) {
  auto base = torch::arange(12, torch::kFloat32);
  NamedTensors tensors = {{"a", base.view({3, 4})},
                          {"b", base.narrow(0, 4, 4)},
                          {"t", base.view({3, 4}).t()},
                          {"h", torch::tensor({1.5, -2.0}, torch::kFloat16)},
                          {"n", torch::tensor(7, torch::kInt64)}};
  test::TempDir tmp;
  save_checkpoint(tmp / "x.pth", *make_state_dict_value(tensors));
  const NamedTensors back = find_state_dict(load_checkpoint(tmp / "x.pth"));
  ASSERT_EQ(back.size(), tensors.size());
  for (std::size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].first, tensors[i].first);
    EXPECT_TRUE(torch::equal(back[i].second, tensors[i].second)) << back[i].first;
    EXPECT_EQ(back[i].second.strides(), tensors[i].second.strides()) << back[i].first;
  }
  EXPECT_EQ(back[1].second.storage_offset(), 4);
  EXPECT_TRUE(back[0].second.is_alias_of(back[1].second));
  EXPECT_FALSE(back[0].second.is_alias_of(back[3].second));
}

}  // namespace
}  // namespace facemag::io
