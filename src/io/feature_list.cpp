#include "facemag/io/feature_list.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>

#include "facemag/error.hpp"

namespace facemag::io {
namespace {

// Newlines in a file (plus one for a last line without), read in large blocks.
std::size_t count_lines(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> block(1 << 20);
  std::size_t lines = 0;
  char last = '\n';
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    lines += static_cast<std::size_t>(std::count(block.begin(), block.begin() + n, '\n'));
    last = block[n - 1];
  }
  return lines + (last != '\n');
}

}  // namespace

FeatureList read_feature_list(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw InvalidInput(path.string() + ": no such file");
  std::ifstream in(path);
  if (!in) throw InvalidInput(path.string() + ": cannot open");
  FeatureList out;
  std::vector<float> values;
  std::size_t dim = 0, number = 0;
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  for (std::string line; std::getline(in, line);) {
    ++number;
    const char* p = line.data();
    const char* end = p + line.size();
    while (p < end && is_space(*p)) ++p;
    if (p == end) continue;
    const char* name_end = p;
    while (name_end < end && !is_space(*name_end)) ++name_end;
    out.names.emplace_back(p, name_end);
    p = name_end;
    std::size_t count = 0;
    while (true) {
      while (p < end && is_space(*p)) ++p;
      if (p == end) break;
      double v = 0;
      const auto [next, error] = std::from_chars(p, end, v);
      if (error != std::errc() || (next < end && !is_space(*next))) {
        const char* token_end = p;
        while (token_end < end && !is_space(*token_end)) ++token_end;
        throw InvalidInput(path.string() + ":" + std::to_string(number) + ": '" +
                           std::string(p, token_end) + "' is not a number");
      }
      values.push_back(static_cast<float>(v));
      ++count;
      p = next;
    }
    if (dim == 0) {
      dim = count;
      // Room for every line at once: doubling a gigabyte vector would need twice its memory.
      values.reserve(count_lines(path) * dim);
    }
    if (count != dim || count == 0)
      throw InvalidInput(path.string() + ":" + std::to_string(number) + ": " +
                         std::to_string(count) + " values, expected " + std::to_string(dim) +
                         " (as on the first line)");
  }
  if (out.names.empty()) throw InvalidInput(path.string() + ": no features");
  // The tensor takes over the values (no copy of what may be a gigabyte).
  auto* owned = new std::vector<float>(std::move(values));
  out.features = torch::from_blob(
      owned->data(), {static_cast<std::int64_t>(out.names.size()), static_cast<std::int64_t>(dim)},
      [owned](void*) { delete owned; }, torch::TensorOptions(torch::kFloat32));
  return out;
}

}  // namespace facemag::io
