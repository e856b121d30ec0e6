// The pickle VM on pickles written by CPython 3.11 (protocols 0, 2, 4, 5) and on hostile input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "facemag/error.hpp"
#include "facemag/io/pickle.hpp"

namespace facemag::pickle {
namespace {

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

ValuePtr load(const std::string& bytes) { return unpickle(bytes, UnpickleOptions{}); }

// pickle.dumps({'epoch': 25, 'lr': 0.1, 'names': ['a', 'é'],
//               't': (1, 2**70, -5, -300000, True, None), 'b': b'\x00\xff',
//               'od': OrderedDict([('x', 1.5)])}, protocol=P) with CPython 3.11.
const char* kProtocol0 =
    "286470300a5665706f63680a70310a4932350a73566c720a70320a46302e310a73566e616d65730a70330a286c7034"
    "0a"
    "56610a70350a6156e90a70360a617356740a70370a2849310a4c313138303539313632303731373431313330333432"
    "34"
    "4c0a492d350a492d3330303030300a4930310a4e7470380a7356620a70390a635f636f646563730a656e636f64650a"
    "70"
    "31300a28565c7530303030ff0a7031310a566c6174696e310a7031320a747031330a527031340a73566f640a703135"
    "0a"
    "63636f6c6c656374696f6e730a4f726465726564446963740a7031360a2874527031370a56780a7031380a46312e35"
    "0a"
    "73732e";
const char* kProtocol2 =
    "80027d710028580500000065706f636871014b1958020000006c727102473fb999999999999a58050000006e616d65"
    "73"
    "71035d71042858010000006171055802000000c3a97106655801000000747107284b018a090000000000000000404a"
    "fb"
    "ffffff4a206cfbff884e7471085801000000627109635f636f646563730a656e636f64650a710a580300000000c3bf"
    "71"
    "0b58060000006c6174696e31710c86710d52710e58020000006f64710f63636f6c6c656374696f6e730a4f72646572"
    "65"
    "64446963740a7110295271115801000000787112473ff800000000000073752e";
const char* kProtocol4 =
    "8004958f000000000000007d94288c0565706f6368944b198c026c7294473fb999999999999a8c056e616d6573945d"
    "94"
    "288c0161948c02c3a994658c017494284b018a090000000000000000404afbffffff4a206cfbff884e74948c016294"
    "43"
    "0200ff948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c01789447"
    "3f"
    "f800000000000073752e";

void expect_reference_object(const Value& v) {
  const Dict& d = v.as_dict();
  ASSERT_EQ(d.items.size(), 6u);
  EXPECT_FALSE(d.ordered);
  EXPECT_EQ(d.items[0].first->as_string(), "epoch");
  EXPECT_EQ(dict_get(d, "epoch")->as_int(), 25);
  EXPECT_EQ(dict_get(d, "lr")->as_double(), 0.1);
  const auto& names = dict_get(d, "names")->as_sequence();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0]->as_string(), "a");
  EXPECT_EQ(names[1]->as_string(), "\xc3\xa9");
  const auto& t = dict_get(d, "t")->as_sequence();
  ASSERT_EQ(t.size(), 6u);
  EXPECT_TRUE(dict_get(d, "t")->is<Tuple>());
  EXPECT_EQ(t[0]->as_int(), 1);
  ASSERT_TRUE(t[1]->is<BigInt>());  // 2**70
  EXPECT_EQ(std::get<BigInt>(t[1]->data).le_bytes, std::string("\0\0\0\0\0\0\0\0\x40", 9));
  EXPECT_EQ(t[2]->as_int(), -5);
  EXPECT_EQ(t[3]->as_int(), -300000);
  EXPECT_EQ(t[4]->as_bool(), true);
  EXPECT_TRUE(t[5]->is_none());
  ASSERT_TRUE(dict_get(d, "b")->is<Bytes>());
  EXPECT_EQ(std::get<Bytes>(dict_get(d, "b")->data).data, std::string("\0\xff", 2));
  const Dict& od = dict_get(d, "od")->as_dict();
  EXPECT_TRUE(od.ordered);
  EXPECT_EQ(dict_get(od, "x")->as_double(), 1.5);
}

TEST(Pickle, ReadsCPythonProtocol0) { expect_reference_object(*load(from_hex(kProtocol0))); }
TEST(Pickle, ReadsCPythonProtocol2) { expect_reference_object(*load(from_hex(kProtocol2))); }
TEST(Pickle, ReadsCPythonProtocol4) { expect_reference_object(*load(from_hex(kProtocol4))); }

TEST(Pickle, ReportsBytesConsumedSoStreamsOfPicklesCanBeRead) {
  const std::string one = from_hex(kProtocol2);
  std::size_t used = 0;
  unpickle(one + one, UnpickleOptions{}, &used);
  EXPECT_EQ(used, one.size());
}

TEST(Pickle, WriterRoundTripsEveryValueKind) {
  Dict d;
  d.ordered = true;
  dict_set(d, Value::make(std::string("int")), Value::make(std::int64_t{-70000}));
  dict_set(d, Value::make(std::string("big")), Value::make(std::int64_t{1} << 40));
  dict_set(d, Value::make(std::string("f")), Value::make(0.1));
  dict_set(d, Value::make(std::string("s")), Value::make(std::string("x\xc3\xa9")));
  dict_set(d, Value::make(std::string("bytes")), Value::make(Bytes{std::string("\0\x80\xff", 3)}));
  dict_set(
      d, Value::make(std::string("list")),
      Value::make(List{{Value::make(true), Value::make(std::monostate{}), Value::make(Tuple{})}}));
  dict_set(d, Value::make(std::int64_t{7}),
           Value::make(Object{"argparse", "Namespace", Value::make(Tuple{}), nullptr}));
  const std::string bytes =
      pickle_dumps(Value(d), [](const torch::Tensor&) -> ValuePtr { return nullptr; });
  const auto back = load(bytes);
  const Dict& r = back->as_dict();
  ASSERT_EQ(r.items.size(), 7u);
  EXPECT_TRUE(r.ordered);
  EXPECT_EQ(dict_get(r, "int")->as_int(), -70000);
  EXPECT_EQ(dict_get(r, "big")->as_int(), std::int64_t{1} << 40);
  EXPECT_EQ(dict_get(r, "f")->as_double(), 0.1);
  EXPECT_EQ(dict_get(r, "s")->as_string(), "x\xc3\xa9");
  EXPECT_EQ(std::get<Bytes>(dict_get(r, "bytes")->data).data, std::string("\0\x80\xff", 3));
  EXPECT_EQ(dict_get(r, "list")->as_sequence().size(), 3u);
  const auto* obj = std::get_if<Object>(&r.items[6].second->data);
  ASSERT_NE(obj, nullptr);
  EXPECT_EQ(obj->module + "." + obj->name, "argparse.Namespace");
}

TEST(Pickle, NeverCallsAnArbitraryGlobal) {
  using namespace std::string_literals;
  // pickle.dumps of an object whose __reduce__ returns (os.system, ('touch pwned',)), protocol 0.
  const std::string evil = "cos\nsystem\n(S'touch /tmp/facemag-pwned'\ntR.";
  std::filesystem::remove("/tmp/facemag-pwned");
  const auto v = load(evil);
  const auto* obj = std::get_if<Object>(&v->data);
  ASSERT_NE(obj, nullptr);
  EXPECT_EQ(obj->module, "os");
  EXPECT_EQ(obj->name, "system");
  EXPECT_EQ(v->type_name(), "object os.system");
  EXPECT_FALSE(std::filesystem::exists("/tmp/facemag-pwned"));
  // builtins.eval / exec / getattr are equally inert.
  const auto e = load(
      "\x80\x02"
      "cbuiltins\neval\nX\x03\x00\x00\x00"s +
      "1+1" + "q\x00\x85R."s);
  EXPECT_EQ(e->type_name(), "object builtins.eval");
}

TEST(Pickle, RejectsReferenceCycles) {
  // l = []; l.append(l)
  EXPECT_THROW(load("\x80\x02]q\x00h\x00a."), Error);
}

TEST(Pickle, RejectsDeepNestingWithoutOverflowingTheStack) {
  const int depth = 200000;
  const std::string deep = "\x80\x02" + std::string(depth, ']') + std::string(depth - 1, 'a') + ".";
  try {
    load(deep);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deeper"), std::string::npos) << e.what();
  }
}

TEST(Pickle, DeepValuesOutsideTheResultAreReleasedWithoutRecursion) {
  // Found by fuzz/fuzz_checkpoint: a deep list memoized (BINPUT), popped, then None returned.
  const int depth = 200000;
  const std::string pickle = "\x80\x02" + std::string(depth, ']') + std::string(depth - 1, 'a') +
                             std::string("q\0", 2) + "0" + "N.";
  EXPECT_TRUE(load(pickle)->is_none());
  // The fuzzer's input, reduced: a deep TUPLE1 chain popped by an opcode that then fails
  // (SETITEM with no key below it), so the only reference is dropped during unwinding.
  const std::string crash = "\x80\x02N" + std::string(depth, '\x85') + "s.";
  EXPECT_THROW(load(crash), Error);
}

TEST(Pickle, TruncatedLengthsFailBeforeAllocating) {
  // BINUNICODE claiming 2 GiB, BINBYTES8 claiming 2^60 bytes.
  EXPECT_THROW(load(std::string("\x80\x02X\xff\xff\xff\x7f", 7)), Error);
  EXPECT_THROW(load(std::string("\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10", 11)), Error);
  EXPECT_THROW(load(std::string("\x80\x02K", 3)), Error);
  EXPECT_THROW(load(std::string("\x80\x02", 2)), Error);  // no STOP
  EXPECT_THROW(load(""), Error);
}

TEST(Pickle, RejectsMalformedOpcodeSequences) {
  EXPECT_THROW(load("\x80\x02\xff."), Error);  // unknown opcode
  EXPECT_THROW(load("\x80\x02"
                    "a."),
               Error);                                              // APPEND on empty stack
  EXPECT_THROW(load("\x80\x02K\x01K\x02."), Error);                 // two values left
  EXPECT_THROW(load("\x80\x02h\x05."), Error);                      // memo key never stored
  EXPECT_THROW(load("\x80\x02K\x01]u."), Error);                    // SETITEMS without MARK
  EXPECT_THROW(load("\x80\x06K\x01."), VersionMismatch);            // future protocol
  EXPECT_THROW(load("\x80\x02X\x02\x00\x00\x00\xc3\x28."), Error);  // invalid UTF-8
}

TEST(Pickle, PersistentIdWithoutHandlerIsAnError) { EXPECT_THROW(load("\x80\x02K\x01Q."), Error); }

TEST(Pickle, StorageClassNamesMapToDtypes) {
  EXPECT_EQ(dtype_of_storage_class("FloatStorage"), torch::kFloat32);
  EXPECT_EQ(dtype_of_storage_class("HalfStorage"), torch::kFloat16);
  EXPECT_EQ(dtype_of_storage_class("BFloat16Storage"), torch::kBFloat16);
  EXPECT_EQ(dtype_of_storage_class("LongStorage"), torch::kInt64);
  EXPECT_EQ(dtype_of_storage_class("BoolStorage"), torch::kBool);
  EXPECT_FALSE(dtype_of_storage_class("QInt8Storage").has_value());
  EXPECT_EQ(storage_class_of_dtype(torch::kInt8), "CharStorage");
}

}  // namespace
}  // namespace facemag::pickle
