#include "facemag/eval/ijb.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numbers>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>

#include "facemag/embed/embedder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/eval/protocol_files.hpp"
#include "facemag/io/image.hpp"
#include "facemag/runtime.hpp"

namespace facemag::eval {
namespace {

std::ifstream open_text(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw InvalidInput(path.string() + ": no such file");
  std::ifstream in(path);
  if (!in) throw InvalidInput(path.string() + ": cannot open");
  return in;
}

std::string where(const std::filesystem::path& path, std::size_t line) {
  return path.string() + ":" + std::to_string(line);
}

// Whitespace- (or, for CSV, comma-) separated fields of a line.
std::vector<std::string_view> split(std::string_view line, char separator) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    if (separator == ' ') {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      if (i == line.size()) break;
      std::size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      fields.push_back(line.substr(i, j - i));
      i = j;
    } else {
      const std::size_t j = std::min(line.find(separator, i), line.size());
      std::string_view field = line.substr(i, j - i);
      while (!field.empty() && std::isspace(static_cast<unsigned char>(field.back())))
        field.remove_suffix(1);
      fields.push_back(field);
      i = j + 1;
      if (j == line.size()) break;
    }
  }
  return fields;
}

bool parse_int(std::string_view text, std::int64_t& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size();
}

}  // namespace

IjbFaceList read_ijb_face_list(const std::filesystem::path& path) {
  auto in = open_text(path);
  IjbFaceList list;
  list.source = path;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    const auto fields = split(line, ' ');
    if (fields.empty()) continue;
    std::int64_t t = 0, m = 0;
    if (fields.size() != 3 || !parse_int(fields[1], t) || !parse_int(fields[2], m))
      throw InvalidInput(where(path, number) +
                         ": expected 'image_name template_id media_id', got '" + line + "'");
    list.image.emplace_back(fields[0]);
    list.template_id.push_back(t);
    list.media_id.push_back(m);
  }
  if (list.image.empty()) throw InvalidInput(path.string() + ": no faces listed");
  return list;
}

std::optional<std::size_t> TemplateFeatures::row(std::int64_t id) const {
  const auto it = std::lower_bound(ids.begin(), ids.end(), id);
  if (it == ids.end() || *it != id) return std::nullopt;
  return static_cast<std::size_t>(it - ids.begin());
}

TemplateFeatures ijb_template_features(const torch::Tensor& image_features,
                                       const IjbFaceList& faces, bool quality_weighted) {
  if (image_features.dim() != 2 ||
      image_features.size(0) != static_cast<std::int64_t>(faces.size()))
    throw InvalidInput(std::to_string(image_features.size(0)) + " feature rows for the " +
                       std::to_string(faces.size()) + " faces of " + faces.source.string() +
                       " (row i must be line i)");
  // Rows are read in their own dtype (IJB-C's 227k x 512 float32 would double in float64).
  const auto features =
      (image_features.scalar_type() == torch::kFloat64 ? image_features
                                                       : image_features.to(torch::kFloat32))
          .contiguous();
  const auto dim = features.size(1);
  const bool is_double = features.scalar_type() == torch::kFloat64;
  const double* rows64 = is_double ? features.data_ptr<double>() : nullptr;
  const float* rows32 = is_double ? nullptr : features.data_ptr<float>();
  const auto row_value = [&](std::size_t i, std::int64_t d) -> double {
    return is_double ? rows64[i * dim + d] : rows32[i * dim + d];
  };
  // template -> media -> rows, both ascending (np.unique).
  std::map<std::int64_t, std::map<std::int64_t, std::vector<std::size_t>>> grouped;
  for (std::size_t i = 0; i < faces.size(); ++i)
    grouped[faces.template_id[i]][faces.media_id[i]].push_back(i);

  TemplateFeatures out;
  out.features = torch::zeros({static_cast<std::int64_t>(grouped.size()), dim}, torch::kFloat64);
  double* dst = out.features.data_ptr<double>();
  std::vector<double> media(static_cast<std::size_t>(dim));
  for (const auto& [id, by_media] : grouped) {
    double* t = dst + out.ids.size() * dim;
    out.ids.push_back(id);
    for (const auto& [media_id, members] : by_media) {
      std::fill(media.begin(), media.end(), 0.0);
      for (const std::size_t i : members) {
        for (std::int64_t d = 0; d < dim; ++d) media[d] += row_value(i, d);
      }
      double norm = 0;
      for (double& v : media) {
        v /= double(members.size());
        norm += v * v;
      }
      // F.normalize: x / max(||x||, 1e-12).
      const double scale = quality_weighted ? 1.0 : 1.0 / std::max(std::sqrt(norm), 1e-12);
      for (std::int64_t d = 0; d < dim; ++d) t[d] += media[d] * scale;
    }
    for (std::int64_t d = 0; d < dim; ++d) t[d] /= double(by_media.size());
  }
  return out;
}

namespace {

// A dot product in double over eight independent sums: one running sum is bound by the latency of
// each addition (~4x slower on 512 values).
double dot(const float* a, const float* b, std::size_t n) {
  double sum[8] = {};
  std::size_t d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int k = 0; k < 8; ++k) sum[k] += double(a[d + k]) * double(b[d + k]);
  }
  for (; d < n; ++d) sum[0] += double(a[d]) * double(b[d]);
  return ((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7]));
}

// "t1 t2 label" without allocating: false for anything else.
bool parse_pair_line(std::string_view line, std::int64_t (&value)[3]) {
  const char* p = line.data();
  const char* end = p + line.size();
  for (auto& v : value) {
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    const auto [next, error] = std::from_chars(p, end, v);
    if (error != std::errc() || next == p) return false;
    p = next;
  }
  while (p < end && std::isspace(static_cast<unsigned char>(*p))) ++p;
  return p == end;
}

}  // namespace

IjbPairScores ijb_pair_scores(const std::filesystem::path& pair_file,
                              const TemplateFeatures& templates) {
  auto in = open_text(pair_file);
  // Unit template features in float32 (half the memory traffic of the random row reads; the
  // rounding moves a score by ~1e-8), dot products accumulated in double.
  const auto unit = torch::nn::functional::normalize(
                        templates.features, torch::nn::functional::NormalizeFuncOptions().dim(1))
                        .to(torch::kFloat32)
                        .contiguous();
  const auto dim = static_cast<std::size_t>(unit.size(1));
  const float* rows = unit.data_ptr<float>();
  IjbPairScores out;
  // Pairs are read and scored a block at a time: memory holds one block plus the scores. Within a
  // block they are scored in order of their first template, so that its row stays in cache.
  constexpr std::size_t kBlock = 1 << 20;
  std::vector<std::uint32_t> first, second, order;
  const auto score_block = [&] {
    const std::size_t base = out.score.size();
    out.score.resize(base + first.size());
    order.resize(first.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](auto x, auto y) { return first[x] < first[y]; });
    at::parallel_for(0, static_cast<std::int64_t>(order.size()), 4096, [&](auto begin, auto end) {
      for (auto k = begin; k < end; ++k) {
        const auto p = order[static_cast<std::size_t>(k)];
        const float* a = rows + std::size_t{first[p]} * dim;
        const float* b = rows + std::size_t{second[p]} * dim;
        const double cos = std::clamp(dot(a, b, dim), -1.0, 1.0);
        out.score[base + p] = static_cast<float>(1 - std::acos(cos) / std::numbers::pi);
      }
    });
    first.clear();
    second.clear();
  };
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::int64_t value[3];
    if (!parse_pair_line(line, value))
      throw InvalidInput(where(pair_file, number) + ": expected 't1 t2 label', got '" + line + "'");
    if (value[2] != 0 && value[2] != 1)
      throw InvalidInput(where(pair_file, number) + ": label " + std::to_string(value[2]) +
                         ", expected 1 (same) or 0 (different)");
    for (int side = 0; side < 2; ++side) {
      const auto row = templates.row(value[side]);
      if (!row)
        throw InvalidInput(where(pair_file, number) + ": template " + std::to_string(value[side]) +
                           " has no image in the face list");
      (side == 0 ? first : second).push_back(static_cast<std::uint32_t>(*row));
    }
    out.genuine.push_back(value[2] == 1);
    if (first.size() == kBlock) score_block();
  }
  score_block();
  if (out.score.empty()) throw InvalidInput(pair_file.string() + ": no pairs");
  return out;
}

RocCurve sklearn_roc(std::span<const float> scores, const std::vector<bool>& genuine) {
  // One 64-bit key per pair, (score as order-preserving bits) << 1 | genuine, sorted descending:
  // 8 bytes a pair and no merge buffer for IJB-C's 15.6 million. Order within tied scores does
  // not matter: a threshold counts all of them.
  const std::size_t n = scores.size();
  std::vector<std::uint64_t> keys(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, &scores[i], sizeof bits);
    bits = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    keys[i] = (std::uint64_t{bits} << 1) | (genuine[i] ? 1u : 0u);
  }
  std::sort(keys.begin(), keys.end(), std::greater<>());
  const auto score_of = [](std::uint64_t key) {
    auto bits = static_cast<std::uint32_t>(key >> 1);
    bits = (bits & 0x80000000u) ? bits & 0x7fffffffu : ~bits;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return double(value);
  };
  RocCurve roc;
  for (const auto key : keys) (key & 1 ? roc.genuine : roc.impostor) += 1;
  const double tp_total = double(roc.genuine), fp_total = double(roc.impostor);
  struct Point {
    double fp, tp, threshold;
  };
  // The distinct-threshold points arrive in order; whether one is kept (drop_intermediate) is
  // known once its successor is: it is kept where either count bends.
  std::vector<Point> last;  // the previous two points
  const auto keep = [&](const Point& p) {
    roc.fpr.push_back(fp_total > 0 ? p.fp / fp_total : std::nan(""));
    roc.tpr.push_back(tp_total > 0 ? p.tp / tp_total : std::nan(""));
    roc.threshold.push_back(p.threshold);
  };
  roc.fpr.push_back(0);
  roc.tpr.push_back(0);
  roc.threshold.push_back(n ? score_of(keys.front()) + 1.0 : 1.0);
  std::size_t points = 0;
  double tp = 0, fp = 0;
  for (std::size_t k = 0; k < n; ++k) {
    keys[k] & 1 ? ++tp : ++fp;
    if (k + 1 < n && (keys[k + 1] >> 1) == (keys[k] >> 1)) continue;
    const Point point{fp, tp, score_of(keys[k])};
    if (points == 0) {
      keep(point);
    } else if (points >= 2) {
      const Point& a = last[0];
      const Point& b = last[1];
      if (a.fp - 2 * b.fp + point.fp != 0 || a.tp - 2 * b.tp + point.tp != 0) keep(b);
    }
    if (last.size() == 2) last.erase(last.begin());
    last.push_back(point);
    ++points;
  }
  if (points >= 2) keep(last.back());
  for (std::size_t i = 1; i < roc.fpr.size(); ++i)
    roc.auc += (roc.fpr[i] - roc.fpr[i - 1]) * (roc.tpr[i] + roc.tpr[i - 1]) / 2;
  return roc;
}

TarAtFar tar_at_far(const RocCurve& roc, double far) {
  TarAtFar out;
  out.far_target = far;
  double best = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < roc.fpr.size(); ++i) {
    const double distance = std::abs(roc.fpr[i] - far);
    if (distance <= best) {  // ties: the last point
      best = distance;
      out.point = i;
    }
  }
  out.far = roc.fpr[out.point];
  out.tar = roc.tpr[out.point];
  out.threshold = roc.threshold[out.point];
  return out;
}

std::vector<double> ijb_far_targets() { return {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1}; }

TemplateSubjects read_ijb_template_subjects(const std::filesystem::path& path) {
  auto in = open_text(path);
  TemplateSubjects out;
  std::unordered_map<std::int64_t, std::int64_t> subject_of;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (number == 1) continue;  // header: TEMPLATE_ID,SUBJECT_ID,FILENAME,...
    const auto fields = split(line, ',');
    if (fields.empty() || (fields.size() == 1 && fields[0].empty())) continue;
    std::int64_t t = 0, s = 0;
    if (fields.size() < 2 || !parse_int(fields[0], t) || !parse_int(fields[1], s))
      throw InvalidInput(where(path, number) + ": expected TEMPLATE_ID,SUBJECT_ID,..., got '" +
                         line + "'");
    const auto [it, added] = subject_of.emplace(t, s);
    if (added) {
      out.template_id.push_back(t);
      out.subject_id.push_back(s);
    } else if (it->second != s) {
      throw InvalidInput(where(path, number) + ": template " + std::to_string(t) +
                         " was given subject " + std::to_string(it->second) + " before, now " +
                         std::to_string(s));
    }
  }
  if (out.template_id.empty()) throw InvalidInput(path.string() + ": no templates");
  return out;
}

IdentificationResult identify_templates(const TemplateFeatures& templates,
                                        const TemplateSubjects& gallery,
                                        const TemplateSubjects& probes,
                                        const std::vector<int>& ranks,
                                        const std::vector<double>& fpirs) {
  const auto unit_rows = [&](const TemplateSubjects& set, const char* what) {
    std::vector<std::int64_t> rows;
    for (const auto id : set.template_id) {
      const auto row = templates.row(id);
      if (!row)
        throw InvalidInput(std::string(what) + " template " + std::to_string(id) +
                           " has no image in the face list");
      rows.push_back(static_cast<std::int64_t>(*row));
    }
    return torch::nn::functional::normalize(
        templates.features.index_select(0, torch::tensor(rows, torch::kInt64)),
        torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  const auto g = unit_rows(gallery, "gallery");
  const auto p = unit_rows(probes, "probe");
  // Gallery subjects, each with its columns.
  std::map<std::int64_t, std::vector<std::size_t>> columns_of;
  for (std::size_t c = 0; c < gallery.subject_id.size(); ++c)
    columns_of[gallery.subject_id[c]].push_back(c);

  std::vector<ProbeOutcome> outcomes;
  const std::size_t chunk = 1024;  // probes per similarity block: memory stays bounded
  for (std::size_t start = 0; start < probes.template_id.size(); start += chunk) {
    const auto end = std::min(probes.template_id.size(), start + chunk);
    const auto sim = p.slice(0, static_cast<std::int64_t>(start), static_cast<std::int64_t>(end))
                         .matmul(g.t())
                         .contiguous();
    const double* s = sim.data_ptr<double>();
    const auto width = static_cast<std::size_t>(g.size(0));
    for (std::size_t i = start; i < end; ++i) {
      const double* row = s + (i - start) * width;
      // Best score per gallery subject.
      std::vector<std::pair<double, std::int64_t>> subjects;
      for (const auto& [subject, cols] : columns_of) {
        double best = -2;
        for (const auto c : cols) best = std::max(best, row[c]);
        subjects.emplace_back(best, subject);
      }
      std::sort(subjects.begin(), subjects.end(), std::greater<>());
      const std::int64_t truth = probes.subject_id[i];
      ProbeOutcome o;
      o.mated = columns_of.count(truth) > 0;
      o.top_score = subjects.front().first;
      for (std::size_t r = 0; r < subjects.size() && o.mated; ++r) {
        if (subjects[r].second == truth) o.rank = static_cast<int>(r + 1);
      }
      outcomes.push_back(o);
    }
  }
  return identification_metrics(outcomes, ranks, fpirs);
}

IdentificationResult identification_metrics(const std::vector<ProbeOutcome>& probes,
                                            const std::vector<int>& ranks,
                                            const std::vector<double>& fpirs) {
  IdentificationResult out;
  out.ranks = ranks;
  out.cmc.assign(ranks.size(), 0.0);
  out.probes = probes.size();
  std::vector<double> mated_top, non_mated_top;
  std::vector<bool> mated_top_correct;
  for (const auto& p : probes) {
    if (!p.mated) {
      non_mated_top.push_back(p.top_score);
      continue;
    }
    for (std::size_t k = 0; k < ranks.size(); ++k) out.cmc[k] += p.rank >= 1 && p.rank <= ranks[k];
    mated_top.push_back(p.top_score);
    mated_top_correct.push_back(p.rank == 1);
  }
  out.mated = mated_top.size();
  out.non_mated = non_mated_top.size();
  for (auto& c : out.cmc) c = out.mated ? c / double(out.mated) : std::nan("");
  std::sort(non_mated_top.begin(), non_mated_top.end(), std::greater<>());
  for (const double fpir : fpirs) {
    IdentificationResult::OpenSet point;
    point.fpir = fpir;
    if (out.non_mated > 0 && double(out.non_mated) * fpir >= 1.0 - 1e-9 && out.mated > 0) {
      const auto k = static_cast<std::size_t>(std::floor(fpir * double(out.non_mated) + 1e-9));
      point.threshold = non_mated_top[std::min(k, out.non_mated - 1)];
      std::size_t hits = 0;
      for (std::size_t m = 0; m < out.mated; ++m)
        hits += mated_top_correct[m] && mated_top[m] > *point.threshold;
      point.tpir = double(hits) / double(out.mated);
    }
    out.open_set.push_back(point);
  }
  return out;
}

}  // namespace facemag::eval

// ---- the runs of `facemag eval ijb` and `facemag eval ijb-identify` ----

namespace facemag::eval {
namespace {

// Seconds per step, logged at debug level.
class Stopwatch {
 public:
  void lap(const char* step) {
    const auto now = std::chrono::steady_clock::now();
    spdlog::debug("{}: {:.2f} s, peak memory so far {} MB", step,
                  std::chrono::duration<double>(now - last_).count(), peak_rss_mb());
    last_ = now;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace

std::filesystem::path IjbMeta::file(const std::string& name) const {
  return find_ijb_meta_file(dir, "ijb" + type + "_" + name);
}

std::vector<std::filesystem::path> IjbMeta::gallery_lists() const {
  std::vector<std::filesystem::path> out;
  for (const auto& set :
       type == "c" ? std::vector<std::string>{"G1", "G2"} : std::vector<std::string>{"S1", "S2"})
    out.push_back(file("1N_gallery_" + set + ".csv"));
  return out;
}

torch::Tensor embed_ijb_faces(const IjbFaceList& faces, const std::filesystem::path& folder,
                              const Embedder& embedder, int batch,
                              const std::function<void(std::size_t)>& progress) {
  const auto& m = embedder.manifest();
  std::vector<float> rows;
  std::vector<cv::Mat> chunk;
  const auto flush = [&] {
    for (const auto& e : embedder.embed(chunk)) rows.insert(rows.end(), e.raw.begin(), e.raw.end());
    if (progress) progress(chunk.size());
    chunk.clear();
  };
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const auto path = folder / faces.image[i];
    cv::Mat face = io::read_image_bgr(path);
    if (face.rows != m.input_height || face.cols != m.input_width)
      throw InvalidInput(path.string() + " (" + faces.source.string() + ":" +
                         std::to_string(i + 1) + "): " + std::to_string(face.cols) + "x" +
                         std::to_string(face.rows) + ", not an aligned " +
                         std::to_string(m.input_width) + "x" + std::to_string(m.input_height) +
                         " face for " + m.name);
    chunk.push_back(std::move(face));
    if (chunk.size() == static_cast<std::size_t>(batch)) flush();
  }
  flush();
  return torch::from_blob(rows.data(),
                          {static_cast<std::int64_t>(faces.size()), embedder.output_size()},
                          torch::kFloat32)
      .clone();
}

std::string far_label(double far) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0e", far);
  return buf;
}

IjbVerification verify_ijb_templates(
    const IjbMeta& meta, const std::function<torch::Tensor(const IjbFaceList&)>& image_features,
    bool quality_weighted) {
  Stopwatch watch;
  const auto faces = read_ijb_face_list(meta.face_list());
  const auto pair_file = meta.template_pairs();
  const auto templates = [&] {  // the image features are freed once the templates are made
    const auto features = image_features(faces);
    watch.lap("face list and features");
    return ijb_template_features(features, faces, quality_weighted);
  }();
  watch.lap("template features");
  const auto scores = ijb_pair_scores(pair_file, templates);
  watch.lap("pair scores");
  IjbVerification out;
  out.roc = sklearn_roc(scores.score, scores.genuine);
  watch.lap("ROC");
  out.type = meta.type;
  out.quality_weighted = quality_weighted;
  out.images = faces.size();
  out.templates = templates.ids.size();
  out.pairs = scores.score.size();
  for (const double far : ijb_far_targets()) out.tar_at_far.push_back(tar_at_far(out.roc, far));
  return out;
}

cv::Mat ijb_roc_chart(const IjbVerification& verification) {
  const auto& roc = verification.roc;
  plot::Series curve{"TAR", {}, {}, plot::category_color(0), false};
  for (std::size_t i = 0; i < roc.fpr.size(); ++i) {
    if (roc.fpr[i] < 1e-6) continue;
    curve.x.push_back(std::log10(roc.fpr[i]));
    curve.y.push_back(roc.tpr[i]);
  }
  return plot::line_chart({curve},
                          {"ROC on IJB-" + verification.type +
                               (verification.quality_weighted ? " (quality-weighted)" : ""),
                           "false accept rate (log10)", "true accept rate"});
}

std::vector<IjbIdentification> identify_ijb_gallery(const torch::Tensor& image_features,
                                                    const IjbFaceList& faces,
                                                    const std::filesystem::path& gallery_list,
                                                    const TemplateSubjects& probes) {
  const auto gallery = read_ijb_template_subjects(gallery_list);
  std::vector<IjbIdentification> out;
  for (const bool weighted : {false, true}) {
    const auto templates = ijb_template_features(image_features, faces, weighted);
    out.push_back({gallery_list, gallery.template_id.size(), weighted,
                   identify_templates(templates, gallery, probes)});
  }
  return out;
}

}  // namespace facemag::eval
