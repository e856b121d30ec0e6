#include "facemag/eval/protocol_files.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "facemag/error.hpp"
#include "facemag/io/feature_list.hpp"
#include "facemag/io/npy.hpp"

namespace facemag::eval {
namespace {

std::vector<std::string> split_fields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  return fields;
}

std::string where(const std::filesystem::path& file, std::size_t line) {
  return file.string() + ":" + std::to_string(line);
}

// Non-blank lines of a text file with their 1-based line numbers.
std::vector<std::pair<std::size_t, std::string>> text_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!std::filesystem::exists(path)) throw InvalidInput(path.string() + ": no such file");
  if (!in) throw InvalidInput(path.string() + ": cannot open");
  std::vector<std::pair<std::size_t, std::string>> lines;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r\n") != std::string::npos) lines.emplace_back(number, line);
  }
  return lines;
}

bool is_npy(const std::filesystem::path& path) { return path.extension() == ".npy"; }

std::string file_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// Pairs of image files, each image listed once (by its spelling).
class ImagePairBuilder {
 public:
  // `at` (file:line) names the pair in the error for an image that does not exist.
  void add(const std::filesystem::path& a, const std::filesystem::path& b, bool same,
           const std::string& at) {
    std::array<std::size_t, 2> pair{};
    for (int side = 0; side < 2; ++side) {
      const auto path = (side == 0 ? a : b).string();
      auto [it, added] = index_.emplace(path, list_.images.size());
      if (added) {
        if (!std::filesystem::exists(path)) throw InvalidInput(at + ": " + path + ": no such file");
        list_.images.emplace_back(path);
      }
      pair[static_cast<std::size_t>(side)] = it->second;
    }
    list_.pairs.push_back(pair);
    list_.is_same.push_back(same);
  }
  bool empty() const { return list_.pairs.empty(); }
  ImagePairList finish(std::size_t fold_size) {
    list_.fold_size = fold_size;
    return std::move(list_);
  }

 private:
  ImagePairList list_;
  std::map<std::string, std::size_t> index_;  // path -> image number
};

// Photo `number` of `name` in LFW's layout: <root>/<name>/<name>_0001.jpg.
std::filesystem::path lfw_photo(const std::filesystem::path& root, const std::string& name,
                                const std::string& number, const std::string& at) {
  int n = 0;
  try {
    std::size_t used = 0;
    n = std::stoi(number, &used);
    if (used != number.size() || n < 1) throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw InvalidInput(at + ": '" + number + "' is not a photo number");
  }
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "_%04d.jpg", n);
  return root / name / (name + suffix);
}

// facemag embed's F.jsonl index: the row of each file name.
std::map<std::string, std::int64_t> read_row_index(const std::filesystem::path& index_path) {
  std::map<std::string, std::int64_t> row_of;
  std::ifstream in(index_path);
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      row_of[file_name(j.at("path").get<std::string>())] = j.at("row").get<std::int64_t>();
    } catch (const nlohmann::json::exception& e) {
      throw InvalidInput(where(index_path, number) + ": not a facemag index record (" + e.what() +
                         ")");
    }
  }
  return row_of;
}

torch::Tensor ijb_features_of_list(const std::filesystem::path& features,
                                   const IjbFaceList& faces) {
  auto list = io::read_feature_list(features);
  if (list.names.size() != faces.size())
    throw InvalidInput(features.string() + ": " + std::to_string(list.names.size()) +
                       " lines for the " + std::to_string(faces.size()) + " faces of " +
                       faces.source.string());
  for (std::size_t i = 0; i < faces.size(); ++i) {
    if (file_name(list.names[i]) != file_name(faces.image[i]))
      throw InvalidInput(where(features, i + 1) + ": '" + list.names[i] + "', but line " +
                         std::to_string(i + 1) + " of " + faces.source.string() + " is '" +
                         faces.image[i] + "'");
  }
  return list.features;
}

}  // namespace

std::optional<bool> parse_same_label(std::string_view field) {
  if (field == "1" || field == "True" || field == "true") return true;
  if (field == "0" || field == "False" || field == "false") return false;
  return std::nullopt;
}

torch::Tensor read_pair_labels(const std::filesystem::path& path) {
  if (is_npy(path)) return io::read_npy(path);
  std::vector<std::int64_t> labels;
  for (const auto& [number, line] : text_lines(path)) {
    const auto fields = split_fields(line);
    const auto same = parse_same_label(fields.back());
    if (!same)
      throw InvalidInput(where(path, number) + ": the last field '" + fields.back() +
                         "' is not a same/different label (1 or 0)");
    labels.push_back(*same ? 1 : 0);
  }
  return torch::tensor(labels, torch::kInt64);
}

torch::Tensor read_pair_features(const std::filesystem::path& path, bool pairs_by_line) {
  if (is_npy(path)) return io::read_npy(path);
  auto list = io::read_feature_list(path);
  if (pairs_by_line && list.names.size() % 2 != 0)
    throw InvalidInput(path.string() + ": " + std::to_string(list.names.size()) +
                       " lines, an odd number: lines 2p and 2p+1 must form pair p");
  return list.features;
}

std::vector<double> read_row_qualities(const std::filesystem::path& path) {
  const auto values = io::read_npy(path);
  if (values.dim() < 1 || values.dim() > 2 || (values.dim() == 2 && values.size(1) != 1))
    throw InvalidInput(path.string() + ": qualities must be N values (N or N x 1), got " +
                       std::to_string(values.dim()) + " dimension(s)");
  const auto column = values.reshape({-1}).to(torch::kFloat64).contiguous();
  return {column.data_ptr<double>(), column.data_ptr<double>() + column.numel()};
}

FeaturePairFiles read_feature_pairs(const std::filesystem::path& features,
                                    const std::filesystem::path& labels,
                                    const std::filesystem::path& pair_index) {
  const bool by_line = pair_index.empty();
  const auto matrix = read_pair_features(features, by_line);
  const auto is_same = read_pair_labels(labels);
  const auto index = by_line ? torch::Tensor() : io::read_npy(pair_index);
  FeaturePairFiles out;
  try {
    out.pairs = make_feature_pairs(matrix, is_same, index);
  } catch (const InvalidInput& e) {
    throw InvalidInput(features.string() + ": " + e.what());
  }
  const auto norms = matrix.to(torch::kFloat64).norm(2, 1).contiguous();
  out.row_norms.assign(norms.data_ptr<double>(), norms.data_ptr<double>() + norms.numel());
  return out;
}

std::filesystem::path write_feature_pairs(const FeaturePairs& pairs,
                                          const std::filesystem::path& features) {
  std::vector<float> rows;
  rows.reserve(2 * pairs.size() * pairs.dim);
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    rows.insert(rows.end(), pairs.a(i).begin(), pairs.a(i).end());
    rows.insert(rows.end(), pairs.b(i).begin(), pairs.b(i).end());
  }
  const auto n = static_cast<std::int64_t>(pairs.size());
  io::write_npy(features,
                torch::from_blob(rows.data(), {2 * n, static_cast<std::int64_t>(pairs.dim)},
                                 torch::kFloat32));
  std::vector<std::int64_t> labels(pairs.is_same.begin(), pairs.is_same.end());
  auto label_path = features;
  label_path.replace_filename(label_path.stem().string() + "_issame.npy");
  io::write_npy(label_path, torch::tensor(labels, torch::kInt64));
  return label_path;
}

ImagePairList read_image_pair_list(const std::filesystem::path& file) {
  const auto base = file.parent_path();
  ImagePairBuilder out;
  for (const auto& [number, line] : text_lines(file)) {
    const auto fields = split_fields(line);
    const auto same = fields.size() == 3 ? parse_same_label(fields[2]) : std::nullopt;
    if (!same)
      throw InvalidInput(where(file, number) +
                         ": expected 'path_a path_b is_same' (is_same 1 or 0), got '" + line + "'");
    const std::filesystem::path a = fields[0], b = fields[1];
    out.add(a.is_relative() ? base / a : a, b.is_relative() ? base / b : b, *same,
            where(file, number));
  }
  if (out.empty()) throw InvalidInput(file.string() + ": no pairs");
  return out.finish(600);
}

ImagePairList read_lfw_pairs(const std::filesystem::path& file, const std::filesystem::path& root) {
  std::size_t fold_size = 600;
  ImagePairBuilder out;
  bool first = true;
  for (const auto& [number, line] : text_lines(file)) {
    const auto fields = split_fields(line);
    const std::string at = where(file, number);
    if (first && fields.size() == 2) {  // header: folds and pairs of each kind per fold
      first = false;
      try {
        fold_size = 2 * static_cast<std::size_t>(std::stoul(fields[1]));
        continue;
      } catch (const std::exception&) {
        throw InvalidInput(at + ": expected LFW's header 'folds pairs' or a pair");
      }
    }
    first = false;
    if (fields.size() == 3) {
      const auto a = lfw_photo(root, fields[0], fields[1], at);
      out.add(a, lfw_photo(root, fields[0], fields[2], at), true, at);
    } else if (fields.size() == 4) {
      const auto a = lfw_photo(root, fields[0], fields[1], at);
      out.add(a, lfw_photo(root, fields[2], fields[3], at), false, at);
    } else {
      throw InvalidInput(at + ": expected 'name n1 n2' or 'name1 n1 name2 n2', got '" + line + "'");
    }
  }
  if (out.empty()) throw InvalidInput(file.string() + ": no pairs");
  if (fold_size == 0) throw InvalidInput(file.string() + ": the header gives 0 pairs per fold");
  return out.finish(fold_size);
}

std::filesystem::path find_ijb_meta_file(const std::filesystem::path& dir,
                                         const std::string& name) {
  if (std::filesystem::exists(dir / "meta" / name)) return dir / "meta" / name;
  if (std::filesystem::exists(dir / name)) return dir / name;
  throw InvalidInput("no " + name + " in " + (dir / "meta").string() + " or " + dir.string());
}

torch::Tensor read_ijb_features(const std::filesystem::path& features, const IjbFaceList& faces) {
  if (!is_npy(features)) return ijb_features_of_list(features, faces);
  const auto matrix = io::read_npy(features);
  if (matrix.dim() != 2)
    throw InvalidInput(features.string() + ": a feature matrix has 2 dimensions, this one " +
                       std::to_string(matrix.dim()));
  auto index_path = std::filesystem::path(features).replace_extension(".jsonl");
  if (!std::filesystem::exists(index_path)) {
    if (matrix.size(0) != static_cast<std::int64_t>(faces.size()))
      throw InvalidInput(features.string() + ": " + std::to_string(matrix.size(0)) +
                         " rows for the " + std::to_string(faces.size()) + " faces of " +
                         faces.source.string() + " (and no " + index_path.filename().string() +
                         " to match them by name)");
    return matrix;
  }
  const auto row_of = read_row_index(index_path);
  std::vector<std::int64_t> rows;
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const auto it = row_of.find(file_name(faces.image[i]));
    if (it == row_of.end() || it->second >= matrix.size(0))
      throw InvalidInput(where(faces.source, i + 1) + ": " + faces.image[i] + " has no row in " +
                         index_path.string());
    rows.push_back(it->second);
  }
  return matrix.index_select(0, torch::tensor(rows, torch::kInt64));
}

IdentityLabels read_identity_labels(const std::filesystem::path& path) {
  IdentityLabels out;
  if (is_npy(path)) {
    const auto t = io::read_npy(path).to(torch::kInt64).reshape({-1}).contiguous();
    std::map<std::int64_t, int> number;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const auto v = t.data_ptr<std::int64_t>()[i];
      const auto [it, added] = number.emplace(v, static_cast<int>(number.size()));
      if (added) out.names.push_back(std::to_string(v));
      out.identity.push_back(it->second);
    }
    return out;
  }
  std::ifstream in(path);
  if (!in) throw InvalidInput(path.string() + ": cannot open the labels");
  std::map<std::string, int> number;
  for (std::string line; std::getline(in, line);) {
    const auto begin = line.find_first_not_of(" \t\r");
    if (begin == std::string::npos) continue;
    const auto label = line.substr(begin, line.find_last_not_of(" \t\r") + 1 - begin);
    const auto [it, added] = number.emplace(label, static_cast<int>(number.size()));
    if (added) out.names.push_back(label);
    out.identity.push_back(it->second);
  }
  return out;
}

LabelledFeatures read_labelled_features(const std::filesystem::path& features,
                                        const std::filesystem::path& labels) {
  LabelledFeatures out;
  out.features =
      is_npy(features) ? io::read_npy(features) : io::read_feature_list(features).features;
  if (out.features.dim() != 2)
    throw InvalidInput(features.string() + ": a feature matrix has 2 dimensions");
  out.labels = read_identity_labels(labels);
  if (static_cast<std::int64_t>(out.labels.identity.size()) != out.features.size(0))
    throw InvalidInput(labels.string() + ": " + std::to_string(out.labels.identity.size()) +
                       " labels for " + std::to_string(out.features.size(0)) + " feature rows of " +
                       features.string());
  return out;
}

}  // namespace facemag::eval
