#include "facemag/shard.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>

#include "facemag/embed_records.hpp"
#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/io/npy.hpp"

namespace facemag {
namespace {

std::optional<std::size_t> number(const std::string& text) {
  std::size_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [at, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || at != end) return std::nullopt;
  return value;
}

std::optional<std::size_t> variable(const Environment& environment, const char* name) {
  const char* value = environment(name);
  if (!value) return std::nullopt;
  const auto parsed = number(value);
  if (!parsed)
    throw InvalidInput(std::string(name) + "=" + value + " is not a non-negative integer");
  return parsed;
}

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

// The row index's records of one part, checked against its matrix.
struct Part {
  torch::Tensor rows;
  std::vector<nlohmann::json> index;
};

Part read_part(const std::filesystem::path& npy) {
  Part part{io::read_npy(npy).to(torch::kFloat32).contiguous(), {}};
  if (part.rows.dim() != 2)
    throw InvalidInput(npy.string() + ": expected an N x D embedding matrix, got " +
                       std::to_string(part.rows.dim()) + " dimension(s)");
  const auto index_path = npy_row_index_path(npy);
  std::ifstream in(index_path);
  if (!in)
    throw InvalidInput(index_path.string() + ": cannot open the row index of " + npy.string());
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    part.index.push_back(nlohmann::json::parse(line, nullptr, false));
    if (part.index.back().is_discarded() || !part.index.back().contains("path"))
      throw InvalidInput(index_path.string() + ": line " + std::to_string(part.index.size()) +
                         " is not a row record ({\"row\", \"path\", ...})");
  }
  if (static_cast<std::int64_t>(part.index.size()) != part.rows.size(0))
    throw InvalidInput(index_path.string() + ": " + std::to_string(part.index.size()) +
                       " row records for " + std::to_string(part.rows.size(0)) + " rows of " +
                       npy.string());
  return part;
}

}  // namespace

Shard parse_shard(const std::string& text, const Environment& given) {
  const Environment environment =
      given ? given : [](const char* name) -> const char* { return std::getenv(name); };
  const auto slash = text.find('/');
  const std::string first = text.substr(0, slash);
  const auto count = slash == std::string::npos ? std::nullopt : number(text.substr(slash + 1));
  if (slash != std::string::npos && (!count || *count == 0))
    throw InvalidInput("--shard " + text + ": the count after '/' must be a positive integer");
  Shard shard;
  if (first == "auto") {
    if (const auto task = variable(environment, "SLURM_ARRAY_TASK_ID")) {
      const auto lowest = variable(environment, "SLURM_ARRAY_TASK_MIN").value_or(0);
      const auto tasks = variable(environment, "SLURM_ARRAY_TASK_COUNT");
      if (!tasks && !count)
        throw InvalidInput("--shard auto: SLURM_ARRAY_TASK_COUNT is not set; give --shard auto/N");
      if (*task < lowest)
        throw InvalidInput("--shard auto: SLURM_ARRAY_TASK_ID " + std::to_string(*task) +
                           " is below SLURM_ARRAY_TASK_MIN " + std::to_string(lowest));
      shard = {*task - lowest, count.value_or(tasks.value_or(0))};
    } else if (const auto index = variable(environment, "JOB_COMPLETION_INDEX")) {
      if (!count)
        throw InvalidInput(
            "--shard auto: a Kubernetes Indexed Job gives JOB_COMPLETION_INDEX but not the "
            "count: give --shard auto/N (N = the Job's completions)");
      shard = {*index, *count};
    } else {
      throw InvalidInput(
          "--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor "
          "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; give --shard K/N");
    }
  } else {
    const auto k = number(first);
    if (!k || !count || *k == 0)
      throw InvalidInput("--shard " + text + ": expected K/N with 1 <= K <= N, auto or auto/N");
    shard = {*k - 1, *count};
  }
  if (shard.index >= shard.count)
    throw InvalidInput("--shard " + text + ": shard " + std::to_string(shard.index + 1) + " of " +
                       std::to_string(shard.count) + " does not exist");
  return shard;
}

std::vector<io::InputFile> shard_files(const std::vector<io::InputFile>& files,
                                       const Shard& shard) {
  std::vector<io::InputFile> out;
  for (const auto& file : files) {
    if (fnv1a(file.name.generic_string()) % shard.count == shard.index) out.push_back(file);
  }
  return out;
}

void merge_embeddings(const std::vector<std::filesystem::path>& parts,
                      const std::filesystem::path& out) {
  if (parts.empty()) throw InvalidInput("--merge: no parts given");
  std::vector<Part> read;
  for (const auto& part : parts) {
    read.push_back(read_part(part));
    if (read.back().rows.size(1) != read.front().rows.size(1))
      throw InvalidInput(part.string() + ": " + std::to_string(read.back().rows.size(1)) +
                         "-d embeddings, but " + parts.front().string() + " holds " +
                         std::to_string(read.front().rows.size(1)) + "-d ones");
  }
  struct Row {
    std::filesystem::path path;
    std::int64_t face;
    std::size_t part;
    std::int64_t row;
  };
  std::vector<Row> rows;
  std::map<std::filesystem::path, std::size_t> part_of_file;
  for (std::size_t p = 0; p < read.size(); ++p) {
    for (std::size_t r = 0; r < read[p].index.size(); ++r) {
      const auto& record = read[p].index[r];
      const std::filesystem::path path = record["path"].get<std::string>();
      const auto [it, added] = part_of_file.try_emplace(path, p);
      if (!added && it->second != p)
        throw InvalidInput(path.string() + " is in both " + parts[it->second].string() + " and " +
                           parts[p].string() + ": shards of one split never share a file");
      rows.push_back(
          {path, record.value("face", std::int64_t{-1}), p, static_cast<std::int64_t>(r)});
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.path != b.path ? a.path < b.path : a.face < b.face;
  });
  auto matrix = torch::empty({static_cast<std::int64_t>(rows.size()), read.front().rows.size(1)});
  std::string index;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    matrix[static_cast<std::int64_t>(i)].copy_(read[rows[i].part].rows[rows[i].row]);
    auto record = read[rows[i].part].index[static_cast<std::size_t>(rows[i].row)];
    record["row"] = i;
    index += record.dump() + "\n";
  }
  io::write_npy(out, matrix);
  io::write_file_atomic(npy_row_index_path(out), index);
}

}  // namespace facemag
