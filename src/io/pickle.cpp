#include "facemag/io/pickle.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>
#include <unordered_set>

#include "facemag/error.hpp"

namespace facemag::pickle {
namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(message); }

// std::bit_cast, spelled so that this file also builds as C++17: clang 14 cannot compile
// LibTorch's headers as C++20, and the libFuzzer build of this reader needs clang.
template <class To, class From>
To bits_to(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
}

// Hash key of a dict key, for the values Python can hash that state dicts and configs use.
std::optional<std::string> hash_key(const Value& key) {
  return std::visit(
      [](const auto& v) -> std::optional<std::string> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) return "s" + v;
        if constexpr (std::is_same_v<T, Bytes>) return "b" + v.data;
        if constexpr (std::is_same_v<T, std::int64_t>) return "i" + std::to_string(v);
        if constexpr (std::is_same_v<T, bool>) return "i" + std::to_string(v ? 1 : 0);
        if constexpr (std::is_same_v<T, std::monostate>) return std::string("n");
        return std::nullopt;
      },
      key.data);
}

struct StorageClass {
  const char* name;
  torch::ScalarType dtype;
};
constexpr std::array<StorageClass, 13> kStorageClasses = {{
    {"FloatStorage", torch::kFloat32},
    {"DoubleStorage", torch::kFloat64},
    {"HalfStorage", torch::kFloat16},
    {"BFloat16Storage", torch::kBFloat16},
    {"LongStorage", torch::kInt64},
    {"IntStorage", torch::kInt32},
    {"ShortStorage", torch::kInt16},
    {"CharStorage", torch::kInt8},
    {"ByteStorage", torch::kUInt8},
    {"BoolStorage", torch::kBool},
    {"ComplexFloatStorage", torch::kComplexFloat},
    {"ComplexDoubleStorage", torch::kComplexDouble},
    {"UntypedStorage", torch::kUInt8},
}};

// Length of the UTF-8 sequence a lead byte starts, or 0 for a byte that cannot lead one.
int utf8_length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 0;
}

bool is_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const int n = utf8_length(static_cast<unsigned char>(s[i]));
    if (n == 0 || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += n;
  }
  return true;
}

// Encodes a code point as UTF-8.
void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes UTF-8 into code points; returns false on malformed input.
// Decodes UTF-8 into code points; returns false on malformed input.
bool decode_utf8(std::string_view s, std::vector<std::uint32_t>& out) {
  if (!is_utf8(s)) return false;
  static constexpr unsigned char kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  for (std::size_t i = 0; i < s.size();) {
    const int n = utf8_length(static_cast<unsigned char>(s[i]));
    std::uint32_t cp = static_cast<unsigned char>(s[i]) & kLeadMask[n];
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return true;
}

// The Python VM that turns pickle opcodes into Values, executing nothing.
class Unpickler {
 public:
  Unpickler(std::string_view bytes, const UnpickleOptions& options)
      : in_(bytes), options_(options) {}

  ~Unpickler() {
    // Every container made here is still owned by containers_ (values popped by a failing
    // opcode included): empty them all first, so that releasing them never recurses and
    // reference cycles a hostile pickle made are broken.
    for (auto& c : containers_) clear_container(*c);
  }

  ValuePtr run(std::size_t* consumed) {
    while (true) {
      const auto op = static_cast<unsigned char>(read_byte());
      if (op == '.') break;
      step(op);
    }
    if (stack_.size() != 1 || !marks_.empty()) {
      fail(where() + "pickle ended with " + std::to_string(stack_.size()) +
           " values on the stack, expected 1");
    }
    ValuePtr result = stack_.back();
    const auto reachable = check_shape(result);
    if (consumed) *consumed = pos_;
    // The result is well formed: keep it intact, but flatten everything else the pickle built
    // (memoized or popped values may nest arbitrarily deep) before the memo is released.
    for (auto& c : containers_) {
      if (!reachable.count(c.get())) clear_container(*c);
    }
    containers_.clear();
    return result;
  }

 private:
  std::string where() const { return options_.source + ": at byte " + std::to_string(pos_) + ": "; }

  // --- input ---------------------------------------------------------------------------
  char read_byte() {
    if (pos_ >= in_.size()) fail(where() + "truncated pickle (no STOP opcode)");
    return in_[pos_++];
  }
  std::string_view read_bytes(std::uint64_t n) {
    if (n > in_.size() - pos_) {
      fail(where() + "truncated pickle: an item declares " + std::to_string(n) + " bytes, only " +
           std::to_string(in_.size() - pos_) + " remain");
    }
    auto s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <class T>
  T read_le() {
    auto s = read_bytes(sizeof(T));
    T v;
    std::memcpy(&v, s.data(), sizeof(T));
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                  "pickle reader assumes a little-endian host");
    return v;
  }
  std::string_view read_line() {
    const auto end = in_.find('\n', pos_);
    if (end == std::string_view::npos) fail(where() + "truncated pickle: unterminated text line");
    auto s = in_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  // --- stack ---------------------------------------------------------------------------
  ValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail(where() + "stack underflow");
    }
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail(where() + "stack underflow");
    }
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail(where() + "no MARK on the stack");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + mark),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  void push(ValuePtr v) {
    if (stack_.size() > kMaxStack)
      fail(where() + "pickle stack exceeds " + std::to_string(kMaxStack));
    stack_.push_back(std::move(v));
  }
  template <class T>
  ValuePtr make_container(T v) {
    auto p = Value::make(std::move(v));
    containers_.push_back(p);
    return p;
  }

  void memo_put(std::uint64_t index, const ValuePtr& v) {
    if (index > kMaxMemo) fail(where() + "memo index " + std::to_string(index) + " out of range");
    memo_[index] = v;
  }
  ValuePtr memo_get(std::uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end())
      fail(where() + "memo key " + std::to_string(index) + " was never stored");
    return it->second;
  }

  // --- values --------------------------------------------------------------------------
  static ValuePtr make_int_from_le(std::string_view bytes) {
    if (bytes.empty()) return Value::make(std::int64_t{0});
    if (bytes.size() <= 8) {
      std::uint64_t u = 0;
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        u |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
      }
      if (bytes.size() < 8 && (static_cast<unsigned char>(bytes.back()) & 0x80)) {
        u |= ~std::uint64_t{0} << (8 * bytes.size());  // sign-extend
      }
      return Value::make(static_cast<std::int64_t>(u));
    }
    return Value::make(BigInt{std::string(bytes)});
  }

  ValuePtr make_text(std::string_view bytes, const char* opname) {
    if (!is_utf8(bytes)) fail(where() + opname + " string is not valid UTF-8");
    return Value::make(std::string(bytes));
  }

  static ValuePtr parse_decimal_int(std::string_view text, const std::string& where) {
    std::string s(text);
    if (!s.empty() && s.back() == 'L') s.pop_back();
    if (s == "00") return Value::make(false);  // protocol 0 booleans
    if (s == "01") return Value::make(true);
    const bool negative = !s.empty() && s[0] == '-';
    const std::size_t first = (negative || (!s.empty() && s[0] == '+')) ? 1 : 0;
    if (first == s.size() || s.size() > 4096) fail(where + "bad integer literal");
    // Magnitude in base 2^32, little-endian limbs.
    std::vector<std::uint32_t> limbs;
    for (std::size_t i = first; i < s.size(); ++i) {
      if (s[i] < '0' || s[i] > '9') fail(where + "bad integer literal '" + s.substr(0, 40) + "'");
      std::uint64_t carry = static_cast<std::uint64_t>(s[i] - '0');
      for (auto& limb : limbs) {
        const std::uint64_t v = static_cast<std::uint64_t>(limb) * 10 + carry;
        limb = static_cast<std::uint32_t>(v);
        carry = v >> 32;
      }
      if (carry) limbs.push_back(static_cast<std::uint32_t>(carry));
    }
    std::string le;
    for (auto limb : limbs) {
      for (int k = 0; k < 4; ++k) le += static_cast<char>((limb >> (8 * k)) & 0xFF);
    }
    le += '\0';      // room for the sign bit
    if (negative) {  // two's complement
      bool carry = true;
      for (auto& c : le) {
        const unsigned v =
            static_cast<unsigned char>(~static_cast<unsigned char>(c)) + (carry ? 1u : 0u);
        c = static_cast<char>(v & 0xFF);
        carry = v > 0xFF;
      }
    }
    // Drop redundant sign bytes, as Python's minimal encoding does.
    while (le.size() > 1) {
      const auto last = static_cast<unsigned char>(le.back());
      const auto prev = static_cast<unsigned char>(le[le.size() - 2]);
      if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) {
        le.pop_back();
      } else {
        break;
      }
    }
    return make_int_from_le(le);
  }

  // Protocol-0 UNICODE: raw-unicode-escape (latin-1 bytes, \uXXXX and \UXXXXXXXX escapes).
  ValuePtr parse_raw_unicode(std::string_view line) {
    std::string out;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == 'u' || line[i + 1] == 'U')) {
        const std::size_t digits = line[i + 1] == 'u' ? 4 : 8;
        if (i + 2 + digits > line.size()) fail(where() + "bad \\u escape in UNICODE");
        std::uint32_t cp = 0;
        for (std::size_t k = 0; k < digits; ++k) {
          const char c = line[i + 2 + k];
          const int d = (c >= '0' && c <= '9')   ? c - '0'
                        : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                        : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                 : -1;
          if (d < 0) fail(where() + "bad \\u escape in UNICODE");
          cp = (cp << 4) | static_cast<std::uint32_t>(d);
        }
        if (cp > 0x10FFFF) fail(where() + "code point out of range in UNICODE");
        append_utf8(out, cp);
        i += 1 + digits;
      } else {
        append_utf8(out, static_cast<unsigned char>(line[i]));
      }
    }
    return Value::make(std::move(out));
  }

  // Python 2 protocol-0 STRING: a quoted repr with backslash escapes.
  ValuePtr parse_quoted(std::string_view line) {
    if (line.size() < 2 || line.front() != line.back() ||
        (line.front() != '\'' && line.front() != '"')) {
      fail(where() + "bad STRING literal");
    }
    std::string out;
    for (std::size_t i = 1; i + 1 < line.size(); ++i) {
      char c = line[i];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++i + 1 > line.size() - 1) fail(where() + "bad escape in STRING literal");
      switch (c = line[i]) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'x': {
          if (i + 2 >= line.size()) fail(where() + "bad \\x escape in STRING literal");
          out += static_cast<char>(std::stoi(std::string(line.substr(i + 1, 2)), nullptr, 16));
          i += 2;
          break;
        }
        default:
          out += '\\';
          out += c;
      }
    }
    return Value::make(Bytes{std::move(out), true});
  }

  ValuePtr make_global(std::string module, std::string name) {
    if (module.size() > 256 || name.size() > 256) fail(where() + "GLOBAL name too long");
    // Python 2 names that Python 3 maps (pickle's fix_imports).
    if (module == "__builtin__") module = "builtins";
    if (module == "copy_reg") module = "copyreg";
    return Value::make(Global{std::move(module), std::move(name)});
  }

  const std::vector<ValuePtr>& tuple_items(const ValuePtr& v, const char* what) {
    if (auto* t = std::get_if<Tuple>(&v->data)) return t->items;
    fail(where() + what + " expects a tuple of arguments, found " + v->type_name());
  }

  // Applies a callable (REDUCE, NEWOBJ) without executing anything unknown.
  ValuePtr call(const ValuePtr& callable, const ValuePtr& args_value) {
    const auto& args = tuple_items(args_value, "REDUCE");
    const auto* g = std::get_if<Global>(&callable->data);
    if (!g) {
      return make_container(
          Object{"<" + callable->type_name() + ">", "__call__", args_value, nullptr});
    }
    const std::string& m = g->module;
    const std::string& n = g->name;
    if (m == "collections" && n == "OrderedDict") {
      auto d = make_container(Dict{});
      std::get<Dict>(d->data).ordered = true;
      if (!args.empty()) {
        for (const auto& pair : args[0]->as_sequence("OrderedDict argument")) {
          const auto& kv = pair->as_sequence("OrderedDict item");
          if (kv.size() != 2) fail(where() + "OrderedDict item is not a pair");
          dict_set(std::get<Dict>(d->data), kv[0], kv[1]);
        }
      }
      return d;
    }
    if (m == "torch._utils" && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor")) {
      return Value::make(rebuild_tensor(args));
    }
    if (m == "torch._utils" &&
        (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state")) {
      if (args.empty()) fail(where() + n + " without arguments");
      return Value::make(args[0]->as_tensor(n));
    }
    if (m == "_codecs" && n == "encode") {
      if (args.size() < 1) fail(where() + "_codecs.encode without arguments");
      const std::string encoding = args.size() > 1 ? args[1]->as_string("encoding") : "utf-8";
      const std::string& text = args[0]->as_string("_codecs.encode text");
      if (encoding == "latin1" || encoding == "latin-1" || encoding == "iso-8859-1") {
        std::vector<std::uint32_t> cps;
        decode_utf8(text, cps);
        std::string out;
        out.reserve(cps.size());
        for (auto cp : cps) {
          if (cp > 0xFF) fail(where() + "_codecs.encode: character outside latin1");
          out += static_cast<char>(cp);
        }
        return Value::make(Bytes{std::move(out)});
      }
      return Value::make(Bytes{text});
    }
    if (m == "builtins" && (n == "set" || n == "frozenset" || n == "list")) {
      auto l = make_container(List{});
      if (!args.empty()) std::get<List>(l->data).items = args[0]->as_sequence(n);
      return l;
    }
    if (m == "builtins" && n == "tuple") {
      Tuple t;
      if (!args.empty()) t.items = args[0]->as_sequence(n);
      return make_container(std::move(t));
    }
    if (m == "builtins" && n == "bytearray") {
      if (args.empty()) return Value::make(Bytes{});
      if (auto* b = std::get_if<Bytes>(&args[0]->data)) return Value::make(Bytes{b->data});
      return Value::make(Bytes{args[0]->as_string("bytearray argument")});
    }
    if (m == "torch" && n == "Size") {
      Tuple t;
      if (!args.empty()) t.items = args[0]->as_sequence("torch.Size");
      return make_container(std::move(t));
    }
    return make_container(Object{m, n, args_value, nullptr});
  }

  torch::Tensor rebuild_tensor(const std::vector<ValuePtr>& args) {
    if (args.size() < 4) fail(where() + "_rebuild_tensor_v2 expects at least 4 arguments");
    const auto* storage = std::get_if<Storage>(&args[0]->data);
    if (!storage)
      fail(where() + "tensor storage is a " + args[0]->type_name() + ", expected a storage");
    const std::int64_t offset = args[1]->as_int("storage offset");
    const auto& size_items = args[2]->as_sequence("tensor size");
    const auto& stride_items = args[3]->as_sequence("tensor stride");
    if (size_items.size() != stride_items.size() || size_items.size() > 64) {
      fail(where() + "tensor has " + std::to_string(size_items.size()) + " sizes and " +
           std::to_string(stride_items.size()) + " strides");
    }
    std::vector<std::int64_t> size, stride;
    bool empty = false;
    std::int64_t last = offset;  // index of the last element the view touches
    for (std::size_t i = 0; i < size_items.size(); ++i) {
      size.push_back(size_items[i]->as_int("tensor size"));
      stride.push_back(stride_items[i]->as_int("tensor stride"));
      if (size.back() < 0 || stride.back() < 0) fail(where() + "negative tensor size or stride");
      if (size.back() == 0) empty = true;
    }
    if (offset < 0) fail(where() + "negative storage offset");
    if (!empty) {
      for (std::size_t i = 0; i < size.size(); ++i) {
        std::int64_t span = 0;
        if (__builtin_mul_overflow(size[i] - 1, stride[i], &span) ||
            __builtin_add_overflow(last, span, &last)) {
          fail(where() + "tensor size/stride overflow");
        }
      }
      const std::int64_t numel = storage->flat.numel();
      if (last >= numel) {
        fail(where() + "tensor view reaches element " + std::to_string(last) +
             " of a storage holding " + std::to_string(numel));
      }
    }
    return storage->flat.as_strided(size, stride, empty ? 0 : offset);
  }

  void build(const ValuePtr& target, const ValuePtr& state) {
    if (auto* o = std::get_if<Object>(&target->data)) {
      o->state = state;
    } else if (auto* d = std::get_if<Dict>(&target->data)) {
      d->attributes = state;
    }
    // Anything else (a tensor's parameter state) carries nothing facemag uses.
  }

  void append(const ValuePtr& target, ValuePtr item) {
    if (auto* l = std::get_if<List>(&target->data)) {
      l->items.push_back(std::move(item));
    } else if (auto* o = std::get_if<Object>(&target->data)) {
      // list subclasses of unknown classes: keep the items as the object's state list.
      if (!o->state) o->state = make_container(List{});
      if (auto* sl = std::get_if<List>(&o->state->data)) sl->items.push_back(std::move(item));
    } else {
      fail(where() + "APPEND to a " + target->type_name());
    }
  }

  void set_item(const ValuePtr& target, ValuePtr key, ValuePtr value) {
    if (auto* d = std::get_if<Dict>(&target->data)) {
      dict_set(*d, std::move(key), std::move(value));
    } else if (std::holds_alternative<Object>(target->data)) {
      // dict subclasses of unknown classes: ignore their items.
    } else {
      fail(where() + "SETITEM on a " + target->type_name());
    }
  }

  ValuePtr persistent(ValuePtr pid) {
    if (!options_.persistent_load) fail(where() + "persistent id in a pickle that allows none");
    return options_.persistent_load(*pid);
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80: {  // PROTO
        const int proto = static_cast<unsigned char>(read_byte());
        if (proto > 5) {
          throw VersionMismatch(where() + "pickle protocol " + std::to_string(proto) +
                                " is newer than 5, the highest facemag reads");
        }
        break;
      }
      case 0x95:
        read_le<std::uint64_t>();
        break;  // FRAME: framing is only a read hint
      case '(':
        marks_.push_back(stack_.size());
        break;
      case '0':
        pop();
        break;
      case '1':
        pop_mark();
        break;
      case '2':
        push(top());
        break;
      case 'N':
        push(Value::make(std::monostate{}));
        break;
      case 0x88:
        push(Value::make(true));
        break;
      case 0x89:
        push(Value::make(false));
        break;
      case 'J':
        push(Value::make(static_cast<std::int64_t>(read_le<std::int32_t>())));
        break;
      case 'K':
        push(Value::make(static_cast<std::int64_t>(read_le<std::uint8_t>())));
        break;
      case 'M':
        push(Value::make(static_cast<std::int64_t>(read_le<std::uint16_t>())));
        break;
      case 0x8a:
        push(make_int_from_le(read_bytes(read_le<std::uint8_t>())));
        break;
      case 0x8b: {
        const auto n = read_le<std::int32_t>();
        if (n < 0) fail(where() + "negative LONG4 length");
        push(make_int_from_le(read_bytes(n)));
        break;
      }
      case 'I':
        push(parse_decimal_int(read_line(), where()));
        break;
      case 'L':
        push(parse_decimal_int(read_line(), where()));
        break;
      case 'F': {
        const std::string s(read_line());
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size()) fail(where() + "bad FLOAT literal");
        push(Value::make(d));
        break;
      }
      case 'G': {
        auto s = read_bytes(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(s[i]);
        push(Value::make(bits_to<double>(bits)));
        break;
      }
      case 'X':
        push(make_text(read_bytes(read_le<std::uint32_t>()), "BINUNICODE"));
        break;
      case 0x8c:
        push(make_text(read_bytes(read_le<std::uint8_t>()), "SHORT_BINUNICODE"));
        break;
      case 0x8d:
        push(make_text(read_bytes(read_le<std::uint64_t>()), "BINUNICODE8"));
        break;
      case 'V':
        push(parse_raw_unicode(read_line()));
        break;
      case 'T': {
        const auto n = read_le<std::int32_t>();
        if (n < 0) fail(where() + "negative BINSTRING length");
        push(Value::make(Bytes{std::string(read_bytes(n)), true}));
        break;
      }
      case 'U':
        push(Value::make(Bytes{std::string(read_bytes(read_le<std::uint8_t>())), true}));
        break;
      case 'S':
        push(parse_quoted(read_line()));
        break;
      case 'B':
        push(Value::make(Bytes{std::string(read_bytes(read_le<std::uint32_t>()))}));
        break;
      case 'C':
        push(Value::make(Bytes{std::string(read_bytes(read_le<std::uint8_t>()))}));
        break;
      case 0x8e:
        push(Value::make(Bytes{std::string(read_bytes(read_le<std::uint64_t>()))}));
        break;
      case 0x96:
        push(Value::make(Bytes{std::string(read_bytes(read_le<std::uint64_t>()))}));
        break;
      case 0x98:
        break;  // READONLY_BUFFER
      case 0x97:
        fail(where() + "out-of-band pickle buffers are not supported");
      case ')':
        push(make_container(Tuple{}));
        break;
      case 't':
        push(make_container(Tuple{pop_mark()}));
        break;
      case 0x85: {
        auto a = pop();
        push(make_container(Tuple{{std::move(a)}}));
        break;
      }
      case 0x86: {
        auto b = pop();
        auto a = pop();
        push(make_container(Tuple{{std::move(a), std::move(b)}}));
        break;
      }
      case 0x87: {
        auto c = pop();
        auto b = pop();
        auto a = pop();
        push(make_container(Tuple{{std::move(a), std::move(b), std::move(c)}}));
        break;
      }
      case ']':
        push(make_container(List{}));
        break;
      case 'l':
        push(make_container(List{pop_mark()}));
        break;
      case '}':
        push(make_container(Dict{}));
        break;
      case 0x8f:
        push(make_container(List{}));
        break;  // EMPTY_SET: sets are read as lists
      case 'd': {
        auto items = pop_mark();
        if (items.size() % 2) fail(where() + "DICT with an odd number of items");
        auto d = make_container(Dict{});
        for (std::size_t i = 0; i < items.size(); i += 2) {
          dict_set(std::get<Dict>(d->data), items[i], items[i + 1]);
        }
        push(d);
        break;
      }
      case 'a': {
        auto item = pop();
        append(top(), std::move(item));
        break;
      }
      case 'e':
      case 0x90: {  // APPENDS, ADDITEMS
        auto items = pop_mark();
        auto target = top();
        for (auto& item : items) append(target, std::move(item));
        break;
      }
      case 0x91:
        push(make_container(List{pop_mark()}));
        break;  // FROZENSET
      case 's': {
        auto value = pop();
        auto key = pop();
        set_item(top(), std::move(key), std::move(value));
        break;
      }
      case 'u': {
        auto items = pop_mark();
        if (items.size() % 2) fail(where() + "SETITEMS with an odd number of items");
        auto target = top();
        for (std::size_t i = 0; i < items.size(); i += 2) set_item(target, items[i], items[i + 1]);
        break;
      }
      case 'c': {
        std::string module(read_line());
        std::string name(read_line());
        push(make_global(std::move(module), std::move(name)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        push(make_global(module->as_string("STACK_GLOBAL module"),
                         name->as_string("STACK_GLOBAL name")));
        break;
      }
      case 'R': {
        auto args = pop();
        auto callable = pop();
        push(call(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        auto args = pop();
        auto cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();      // kwargs
        auto args = pop();
        auto cls = pop();
        push(call(cls, args));
        break;
      }
      case 'b': {
        auto state = pop();
        build(top(), state);
        break;
      }
      case 'i': {  // INST (protocol 0): module, name lines, then MARK-ed args
        std::string module(read_line());
        std::string name(read_line());
        auto args = make_container(Tuple{pop_mark()});
        push(call(make_global(std::move(module), std::move(name)), args));
        break;
      }
      case 'o': {  // OBJ: MARK cls args...
        auto items = pop_mark();
        if (items.empty()) fail(where() + "OBJ without a class");
        auto cls = items.front();
        auto args = make_container(Tuple{std::vector<ValuePtr>(items.begin() + 1, items.end())});
        push(call(cls, args));
        break;
      }
      case 'Q':
        push(persistent(pop()));
        break;
      case 'P':
        push(persistent(make_text(read_line(), "PERSID")));
        break;
      case 'p':
        memo_put(parse_decimal_int(read_line(), where())->as_int(), top());
        break;
      case 'q':
        memo_put(read_le<std::uint8_t>(), top());
        break;
      case 'r':
        memo_put(read_le<std::uint32_t>(), top());
        break;
      case 0x94:
        memo_put(memo_.size(), top());
        break;
      case 'g':
        push(memo_get(parse_decimal_int(read_line(), where())->as_int()));
        break;
      case 'h':
        push(memo_get(read_le<std::uint8_t>()));
        break;
      case 'j':
        push(memo_get(read_le<std::uint32_t>()));
        break;
      case 0x82:
      case 0x83:
      case 0x84:
        fail(where() + "pickle extension registry opcodes are not supported");
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(where() + "unknown pickle opcode " + hex);
      }
    }
  }

  static void clear_container(Value& v) {
    std::visit(
        [](auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, List> || std::is_same_v<T, Tuple>) {
            x.items.clear();
          } else if constexpr (std::is_same_v<T, Dict>) {
            x.items.clear();
            x.index.clear();
            x.attributes.reset();
          } else if constexpr (std::is_same_v<T, Object>) {
            x.args.reset();
            x.state.reset();
          }
        },
        v.data);
  }

  // Rejects cycles and nesting deeper than max_depth, with an explicit stack (no recursion).
  // Returns every value reachable from `root`.
  std::unordered_set<const Value*> check_shape(const ValuePtr& root) const {
    std::unordered_set<const Value*> on_path, done;
    struct Frame {
      const Value* v;
      std::vector<const Value*> children;
      std::size_t next = 0;
    };
    std::vector<Frame> path;
    auto children_of = [](const Value& v) {
      std::vector<const Value*> out;
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, List> || std::is_same_v<T, Tuple>) {
              for (const auto& c : x.items) out.push_back(c.get());
            } else if constexpr (std::is_same_v<T, Dict>) {
              for (const auto& [k, val] : x.items) {
                out.push_back(k.get());
                out.push_back(val.get());
              }
              if (x.attributes) out.push_back(x.attributes.get());
            } else if constexpr (std::is_same_v<T, Object>) {
              if (x.args) out.push_back(x.args.get());
              if (x.state) out.push_back(x.state.get());
            }
          },
          v.data);
      return out;
    };
    path.push_back({root.get(), children_of(*root)});
    on_path.insert(root.get());
    while (!path.empty()) {
      Frame& f = path.back();
      if (f.next == f.children.size()) {
        on_path.erase(f.v);
        done.insert(f.v);
        path.pop_back();
        continue;
      }
      const Value* child = f.children[f.next++];
      if (on_path.count(child)) fail(options_.source + ": pickle contains a reference cycle");
      if (done.count(child)) continue;
      if (path.size() >= options_.max_depth) {
        fail(options_.source + ": pickle nests deeper than " + std::to_string(options_.max_depth));
      }
      on_path.insert(child);
      path.push_back({child, children_of(*child)});
    }
    return done;
  }

  static constexpr std::size_t kMaxStack = 1u << 24;
  static constexpr std::uint64_t kMaxMemo = 1u << 26;

  std::string_view in_;
  const UnpickleOptions& options_;
  std::size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, ValuePtr> memo_;
  std::vector<ValuePtr> containers_;  // owned until the end of the run (see ~Unpickler)
};

// ---------------------------------------------------------------------------------------
// Writer

class Pickler {
 public:
  explicit Pickler(const std::function<ValuePtr(const torch::Tensor&)>& storage_pid)
      : storage_pid_(storage_pid) {}

  std::string dumps(const Value& v) {
    out_ += "\x80\x02";
    write(v);
    out_ += '.';
    return std::move(out_);
  }

 private:
  void write_global(std::string_view module, std::string_view name) {
    out_ += 'c';
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
  }
  void write_int(std::int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out_ += 'M';
      out_ += static_cast<char>(v & 0xFF);
      out_ += static_cast<char>(v >> 8);
    } else if (v >= std::numeric_limits<std::int32_t>::min() &&
               v <= std::numeric_limits<std::int32_t>::max()) {
      out_ += 'J';
      const auto u = static_cast<std::uint32_t>(static_cast<std::int32_t>(v));
      for (int i = 0; i < 4; ++i) out_ += static_cast<char>((u >> (8 * i)) & 0xFF);
    } else {
      out_ += '\x8a';
      out_ += '\x08';
      const auto u = static_cast<std::uint64_t>(v);
      for (int i = 0; i < 8; ++i) out_ += static_cast<char>((u >> (8 * i)) & 0xFF);
    }
  }
  void write_str(std::string_view s) {
    out_ += 'X';
    const auto n = static_cast<std::uint32_t>(s.size());
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((n >> (8 * i)) & 0xFF);
    out_ += s;
  }
  void write_items(const std::vector<ValuePtr>& items) {
    for (const auto& item : items) write(*item);
  }
  void write_tensor(const torch::Tensor& t) {
    // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
    write_global("torch._utils", "_rebuild_tensor_v2");
    out_ += '(';
    const ValuePtr pid = storage_pid_(t);
    write(*pid);
    out_ += 'Q';  // BINPERSID
    write_int(t.storage_offset());
    out_ += '(';
    for (auto s : t.sizes()) write_int(s);
    out_ += 't';
    out_ += '(';
    for (auto s : t.strides()) write_int(s);
    out_ += 't';
    out_ += '\x89';  // requires_grad False
    write_global("collections", "OrderedDict");
    out_ += ")R";
    out_ += "tR";
  }

  void write(const Value& v) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            out_ += 'N';
          } else if constexpr (std::is_same_v<T, bool>) {
            out_ += x ? '\x88' : '\x89';
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            write_int(x);
          } else if constexpr (std::is_same_v<T, BigInt>) {
            if (x.le_bytes.size() > 255) fail("pickle writer: integer too large");
            out_ += '\x8a';
            out_ += static_cast<char>(x.le_bytes.size());
            out_ += x.le_bytes;
          } else if constexpr (std::is_same_v<T, double>) {
            out_ += 'G';
            const auto bits = bits_to<std::uint64_t>(x);
            for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xFF);
          } else if constexpr (std::is_same_v<T, std::string>) {
            write_str(x);
          } else if constexpr (std::is_same_v<T, Bytes>) {
            // Python 3 at protocol 2: _codecs.encode(latin1 text, 'latin1')
            write_global("_codecs", "encode");
            std::string text;
            for (unsigned char c : x.data) append_utf8(text, c);
            write_str(text);
            write_str("latin1");
            out_ += "\x86R";
          } else if constexpr (std::is_same_v<T, List>) {
            out_ += ']';
            if (!x.items.empty()) {
              out_ += '(';
              write_items(x.items);
              out_ += 'e';
            }
          } else if constexpr (std::is_same_v<T, Tuple>) {
            if (x.items.empty()) {
              out_ += ')';
            } else {
              out_ += '(';
              write_items(x.items);
              out_ += 't';
            }
          } else if constexpr (std::is_same_v<T, Dict>) {
            if (x.ordered) {
              write_global("collections", "OrderedDict");
              out_ += ")R";
            } else {
              out_ += '}';
            }
            if (!x.items.empty()) {
              out_ += '(';
              for (const auto& [key, value] : x.items) {
                write(*key);
                write(*value);
              }
              out_ += 'u';
            }
            if (x.attributes) {
              write(*x.attributes);
              out_ += 'b';
            }
          } else if constexpr (std::is_same_v<T, torch::Tensor>) {
            write_tensor(x);
          } else if constexpr (std::is_same_v<T, Global>) {
            write_global(x.module, x.name);
          } else if constexpr (std::is_same_v<T, Storage>) {
            fail("pickle writer: a bare storage cannot be written, only tensors");
          } else if constexpr (std::is_same_v<T, Object>) {
            write_global(x.module, x.name);
            if (x.args) {
              write(*x.args);
            } else {
              out_ += ')';
            }
            out_ += 'R';
            if (x.state) {
              write(*x.state);
              out_ += 'b';
            }
          }
        },
        v.data);
  }

  const std::function<ValuePtr(const torch::Tensor&)>& storage_pid_;
  std::string out_;
};

}  // namespace

std::string Value::type_name() const {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return "None";
        if constexpr (std::is_same_v<T, bool>) return "bool";
        if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, BigInt>) return "int";
        if constexpr (std::is_same_v<T, double>) return "float";
        if constexpr (std::is_same_v<T, std::string>) return "str";
        if constexpr (std::is_same_v<T, Bytes>) return "bytes";
        if constexpr (std::is_same_v<T, List>) return "list";
        if constexpr (std::is_same_v<T, Tuple>) return "tuple";
        if constexpr (std::is_same_v<T, Dict>) return x.ordered ? "OrderedDict" : "dict";
        if constexpr (std::is_same_v<T, torch::Tensor>) return "tensor";
        if constexpr (std::is_same_v<T, Global>) return "global " + x.module + "." + x.name;
        if constexpr (std::is_same_v<T, Storage>) return "storage";
        if constexpr (std::is_same_v<T, Object>) return "object " + x.module + "." + x.name;
      },
      data);
}

namespace {
[[noreturn]] void type_error(std::string_view what, const char* expected, const Value& v) {
  throw Error(std::string(what) + ": expected " + expected + ", found " + v.type_name());
}
}  // namespace

std::int64_t Value::as_int(std::string_view what) const {
  if (auto* i = std::get_if<std::int64_t>(&data)) return *i;
  if (auto* b = std::get_if<bool>(&data)) return *b ? 1 : 0;
  type_error(what, "int", *this);
}
double Value::as_double(std::string_view what) const {
  if (auto* d = std::get_if<double>(&data)) return *d;
  if (auto* i = std::get_if<std::int64_t>(&data)) return static_cast<double>(*i);
  type_error(what, "float", *this);
}
bool Value::as_bool(std::string_view what) const {
  if (auto* b = std::get_if<bool>(&data)) return *b;
  type_error(what, "bool", *this);
}
const std::string& Value::as_string(std::string_view what) const {
  if (auto* s = std::get_if<std::string>(&data)) return *s;
  if (auto* b = std::get_if<Bytes>(&data); b && b->from_python2_str && is_utf8(b->data))
    return b->data;
  type_error(what, "str", *this);
}
const torch::Tensor& Value::as_tensor(std::string_view what) const {
  if (auto* t = std::get_if<torch::Tensor>(&data)) return *t;
  type_error(what, "tensor", *this);
}
const Dict& Value::as_dict(std::string_view what) const {
  if (auto* d = std::get_if<Dict>(&data)) return *d;
  type_error(what, "dict", *this);
}
Dict& Value::as_dict(std::string_view what) {
  if (auto* d = std::get_if<Dict>(&data)) return *d;
  type_error(what, "dict", *this);
}
const std::vector<ValuePtr>& Value::as_sequence(std::string_view what) const {
  if (auto* l = std::get_if<List>(&data)) return l->items;
  if (auto* t = std::get_if<Tuple>(&data)) return t->items;
  type_error(what, "list or tuple", *this);
}

void dict_set(Dict& dict, ValuePtr key, ValuePtr value) {
  if (auto h = hash_key(*key)) {
    auto [it, inserted] = dict.index.emplace(std::move(*h), dict.items.size());
    if (!inserted) {
      dict.items[it->second].second = std::move(value);
      return;
    }
  }
  dict.items.emplace_back(std::move(key), std::move(value));
}

ValuePtr dict_get(const Dict& dict, std::string_view key) {
  auto it = dict.index.find("s" + std::string(key));
  if (it == dict.index.end()) it = dict.index.find("b" + std::string(key));
  return it == dict.index.end() ? nullptr : dict.items[it->second].second;
}

ValuePtr unpickle(std::string_view bytes, const UnpickleOptions& options, std::size_t* consumed) {
  Unpickler vm(bytes, options);
  return vm.run(consumed);
}

std::string pickle_dumps(const Value& value,
                         const std::function<ValuePtr(const torch::Tensor&)>& storage_pid) {
  return Pickler(storage_pid).dumps(value);
}

namespace {

bool is_numpy_module(const std::string& module, std::string_view submodule) {
  return module == "numpy.core." + std::string(submodule) ||
         module == "numpy._core." + std::string(submodule);
}

// The torch dtype of a numpy.dtype object ('f4', 'b1', ...) and whether its data is big-endian.
std::pair<torch::ScalarType, bool> numpy_dtype(const Value& value, std::string_view what) {
  const auto* o = std::get_if<Object>(&value.data);
  if (!o || o->module != "numpy" || o->name != "dtype" || !o->args)
    throw Error(std::string(what) + ": expected a numpy.dtype, got " + value.type_name());
  const auto& args = o->args->as_sequence(what);
  if (args.empty()) throw Error(std::string(what) + ": numpy.dtype without a type code");
  const std::string& code = args[0]->as_string(what);
  char order = '|';
  if (o->state) {
    const auto& st = o->state->as_sequence(what);
    if (st.size() > 1 && st[1]->is<std::string>() && !st[1]->as_string().empty())
      order = st[1]->as_string()[0];
    // Fields (index 3) or subarray (index 2) make a structured dtype.
    if ((st.size() > 2 && !st[2]->is_none()) || (st.size() > 3 && !st[3]->is_none()))
      throw Error(std::string(what) + ": structured NumPy dtypes are not supported");
  }
  static const std::pair<const char*, torch::ScalarType> kCodes[] = {
      {"b1", torch::kBool},    {"u1", torch::kUInt8},   {"i1", torch::kInt8},
      {"i2", torch::kInt16},   {"i4", torch::kInt32},   {"i8", torch::kInt64},
      {"f2", torch::kFloat16}, {"f4", torch::kFloat32}, {"f8", torch::kFloat64}};
  for (const auto& [name, dtype] : kCodes) {
    if (code == name) return {dtype, order == '>'};
  }
  throw Error(std::string(what) + ": NumPy dtype '" + code +
              "' is not supported (numeric and bool arrays only)");
}

torch::Tensor array_from_bytes(const std::string& data, torch::ScalarType dtype, bool big_endian,
                               std::vector<std::int64_t> shape, bool fortran,
                               std::string_view what) {
  std::int64_t count = 1;
  for (auto d : shape) {
    if (d < 0) throw Error(std::string(what) + ": negative array dimension");
    count *= d;
  }
  const auto item = static_cast<std::int64_t>(c10::elementSize(dtype));
  if (static_cast<std::int64_t>(data.size()) != count * item)
    throw Error(std::string(what) + ": array of " + std::to_string(count) + " values of " +
                std::to_string(item) + " bytes holds " + std::to_string(data.size()) + " bytes");
  std::string bytes = data;
  if (big_endian && item > 1) {
    for (std::size_t i = 0; i < bytes.size(); i += static_cast<std::size_t>(item))
      std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(i),
                   bytes.begin() + static_cast<std::ptrdiff_t>(i) + item);
  }
  if (fortran) std::reverse(shape.begin(), shape.end());
  auto tensor = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  std::memcpy(tensor.data_ptr(), bytes.data(), bytes.size());
  if (fortran)
    tensor = tensor
                 .permute([&] {
                   std::vector<std::int64_t> dims(shape.size());
                   for (std::size_t i = 0; i < dims.size(); ++i)
                     dims[i] = static_cast<std::int64_t>(dims.size() - 1 - i);
                   return dims;
                 }())
                 .contiguous();
  return tensor;
}

const std::string& array_data(const Value& value, std::string_view what) {
  if (const auto* b = std::get_if<Bytes>(&value.data)) return b->data;
  throw Error(std::string(what) + ": the array's data is a " + value.type_name() +
              ", not bytes (an object array?)");
}

std::vector<std::int64_t> array_shape(const Value& value, std::string_view what) {
  std::vector<std::int64_t> shape;
  for (const auto& d : value.as_sequence(what)) shape.push_back(d->as_int(what));
  return shape;
}

}  // namespace

bool is_numpy_array(const Value& value) {
  const auto* o = std::get_if<Object>(&value.data);
  return o && ((is_numpy_module(o->module, "multiarray") && o->name == "_reconstruct") ||
               (is_numpy_module(o->module, "numeric") && o->name == "_frombuffer"));
}

torch::Tensor numpy_array(const Value& value, std::string_view what) {
  if (!is_numpy_array(value))
    throw Error(std::string(what) + ": expected a NumPy array, got " + value.type_name());
  const auto& o = std::get<Object>(value.data);
  if (o.name == "_frombuffer") {  // protocol 5: _frombuffer(data, dtype, shape, order)
    const auto& args = o.args->as_sequence(what);
    if (args.size() != 4) throw Error(std::string(what) + ": malformed numpy _frombuffer call");
    const auto [dtype, big] = numpy_dtype(*args[1], what);
    return array_from_bytes(array_data(*args[0], what), dtype, big, array_shape(*args[2], what),
                            args[3]->as_string(what) == "F", what);
  }
  if (!o.state) throw Error(std::string(what) + ": NumPy array without its state");
  const auto& st = o.state->as_sequence(what);
  if (st.size() != 5)
    throw Error(std::string(what) + ": NumPy array state has " + std::to_string(st.size()) +
                " fields, expected 5");
  const auto [dtype, big] = numpy_dtype(*st[2], what);
  return array_from_bytes(array_data(*st[4], what), dtype, big, array_shape(*st[1], what),
                          st[3]->as_bool(what), what);
}

std::optional<torch::ScalarType> dtype_of_storage_class(std::string_view name) {
  for (const auto& c : kStorageClasses) {
    if (name == c.name) return c.dtype;
  }
  return std::nullopt;
}

std::string storage_class_of_dtype(torch::ScalarType dtype) {
  for (const auto& c : kStorageClasses) {
    if (c.dtype == dtype) return c.name;
  }
  throw Error(std::string("no PyTorch storage class for dtype ") + c10::toString(dtype));
}

}  // namespace facemag::pickle
