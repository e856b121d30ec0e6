#include "facemag/eval/report.hpp"

#include <openssl/evp.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <utility>

#include "facemag/embed/face_quality.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/plot.hpp"

namespace facemag::eval {
namespace {

// The faces in the matrices' order: by group (numbered in name order), then best quality first.
struct OrderedFaces {
  std::vector<const ReportFace*> faces;
  std::vector<int> group;  // of each face
  std::vector<std::string> group_names;
};

using Pictures = std::vector<std::pair<std::string, cv::Mat>>;  // file name, picture

OrderedFaces order_faces(const std::vector<ReportFace>& input) {
  OrderedFaces ordered;
  std::map<std::string, int> group_index;
  for (const auto& f : input) group_index.emplace(f.group, 0);
  for (auto& [name, index] : group_index) {
    index = static_cast<int>(ordered.group_names.size());
    ordered.group_names.push_back(name);
  }
  std::vector<int> group;
  for (const auto& f : input) group.push_back(group_index.at(f.group));
  std::vector<std::size_t> order(input.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return group[a] != group[b] ? group[a] < group[b]
                                : input[a].embedding.quality > input[b].embedding.quality;
  });
  for (std::size_t i : order) {
    ordered.faces.push_back(&input[i]);
    ordered.group.push_back(group[i]);
  }
  return ordered;
}

std::string base64(const std::string& bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX) / 4 * 3)
    throw InvalidInput("report: a picture of " + std::to_string(bytes.size()) +
                       " bytes is too large to embed");
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');  // EVP_EncodeBlock adds a NUL
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(bytes.data()),
                                     static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(length));
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

cv::Mat quality_grid(const OrderedFaces& ordered, int columns, const std::string& source) {
  const auto& faces = ordered.faces;
  std::vector<std::size_t> by_quality(faces.size());
  std::iota(by_quality.begin(), by_quality.end(), 0);
  std::stable_sort(by_quality.begin(), by_quality.end(), [&](auto a, auto b) {
    return faces[a]->embedding.quality > faces[b]->embedding.quality;
  });
  std::vector<plot::Tile> tiles;
  for (std::size_t i : by_quality) {
    tiles.push_back({faces[i]->crop,
                     {fixed(faces[i]->embedding.quality, 2), faces[i]->name},
                     plot::category_color(static_cast<std::size_t>(ordered.group[i]))});
  }
  return plot::tile_grid(tiles, columns,
                         "Faces by quality (" + source + "), best first; frame colour = group",
                         {112, 112});
}

Pictures draw_pictures(const OrderedFaces& ordered, const EmbeddingAnalysis& analysis, int columns,
                       const std::string& source) {
  const std::size_t n = ordered.faces.size();
  const std::size_t groups = ordered.group_names.size();
  Pictures pictures;
  pictures.emplace_back("faces_by_quality.png", quality_grid(ordered, columns, source));
  std::vector<std::string> labels;
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < n; ++i) {
    labels.push_back(std::to_string(i + 1) + " " + ordered.faces[i]->name);
    if (i == 0 || ordered.group[i] != ordered.group[i - 1]) starts.push_back(i);
  }
  pictures.emplace_back("similarity.png",
                        plot::matrix_chart({"Cosine similarity (faces by group, then quality)", n,
                                            analysis.cosine, labels, starts, -0.2, 1.0, 2}));
  double max_distance = 0;
  for (double d : analysis.distance) max_distance = std::max(max_distance, d);
  pictures.emplace_back(
      "distance.png",
      plot::matrix_chart({"Euclidean distance of normalised embeddings", n, analysis.distance,
                          labels, starts, 0.0, std::max(max_distance, 1e-6), 2}));
  std::vector<plot::PointGroup> scatter(groups);
  std::vector<plot::ValueGroup> values(groups);
  for (std::size_t g = 0; g < groups; ++g)
    scatter[g].label = values[g].label = ordered.group_names[g];
  for (std::size_t i = 0; i < n; ++i) {
    const auto g = static_cast<std::size_t>(ordered.group[i]);
    scatter[g].points.emplace_back(analysis.pca[2 * i], analysis.pca[2 * i + 1]);
    values[g].values.push_back(ordered.faces[i]->embedding.quality);
  }
  pictures.emplace_back(
      "pca.png", plot::scatter_chart(
                     scatter, {"PCA of the normalised embeddings",
                               "PC1 (" + fixed(100 * analysis.explained[0], 1) + "% of variance)",
                               "PC2 (" + fixed(100 * analysis.explained[1], 1) + "% of variance)",
                               {900, 600}}));
  pictures.emplace_back("quality_histogram.png",
                        plot::histogram_chart(values, std::clamp(static_cast<int>(n) / 3, 5, 30),
                                              {"Quality (" + source + ")", source, "faces"}));
  return pictures;
}

nlohmann::json square_matrix(const std::vector<double>& v, std::size_t size) {
  nlohmann::json m = nlohmann::json::array();
  for (std::size_t r = 0; r < size; ++r)
    m.push_back(std::vector<double>(v.begin() + r * size, v.begin() + (r + 1) * size));
  return m;
}

nlohmann::json report_json(const OrderedFaces& ordered, const EmbeddingAnalysis& analysis,
                           const ReportOptions& options) {
  const std::size_t n = ordered.faces.size();
  nlohmann::json faces = nlohmann::json::array();
  for (std::size_t i = 0; i < n; ++i) {
    faces.push_back({{"index", i + 1},
                     {"name", ordered.faces[i]->name},
                     {"group", ordered.group_names[static_cast<std::size_t>(ordered.group[i])]},
                     {"quality", ordered.faces[i]->embedding.quality},
                     {"magnitude", ordered.faces[i]->embedding.magnitude},
                     {"pca", {analysis.pca[2 * i], analysis.pca[2 * i + 1]}}});
  }
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& g : analysis.groups) {
    groups.push_back({{"name", g.name},
                      {"faces", g.size},
                      {"wss", g.wss},
                      {"mean_pairwise_distance", g.mean_pairwise_distance},
                      {"mean_pairwise_similarity", g.mean_pairwise_similarity},
                      {"mean_quality", g.mean_quality}});
  }
  return {
      {"model", options.model},
      {"magnitude_is_quality", options.magnitude_is_quality},
      {"quality_source", quality_source(options.magnitude_is_quality)},
      {"faces", faces},
      {"groups", groups},
      {"total_wss", analysis.total_wss},
      {"between_group_ss", analysis.between_ss},
      {"centroid_distance", square_matrix(analysis.centroid_distance, ordered.group_names.size())},
      {"pca_explained_variance_ratio", {analysis.explained[0], analysis.explained[1]}},
      {"cosine_similarity", square_matrix(analysis.cosine, n)},
      {"distance", square_matrix(analysis.distance, n)}};
}

// The page up to its pictures: what was analysed, the groups' spread and centroid distances.
std::string html_summary(const OrderedFaces& ordered, const EmbeddingAnalysis& analysis,
                         const ReportOptions& options) {
  const auto& group_names = ordered.group_names;
  std::string html =
      "<!doctype html><html><head><meta charset=\"utf-8\"><title>facemag report</title><style>"
      "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%;"
      "border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse;margin:1em 0}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
      "td:first-child,th:first-child{text-align:left}</style></head><body>";
  html += "<h1>facemag report</h1><p>" + std::to_string(ordered.faces.size()) + " faces in " +
          std::to_string(group_names.size()) + " group(s), model <b>" + html_escape(options.model) +
          "</b>.";
  if (!options.magnitude_is_quality)
    html +=
        " This model is not MagFace-trained: a face's quality is its feature magnitude times its "
        "crop's sharpness factor (not a calibrated quality).";
  if (options.skipped_inputs)
    html += " " + std::to_string(options.skipped_inputs) + " input(s) skipped (see the log).";
  html +=
      "</p><h2>Groups</h2><table><tr><th>group</th><th>faces</th><th>WSS</th>"
      "<th>WSS per face</th><th>mean pairwise distance</th><th>mean pairwise "
      "similarity</th><th>mean quality</th></tr>";
  for (const auto& g : analysis.groups) {
    html += "<tr><td>" + html_escape(g.name) + "</td><td>" + std::to_string(g.size) + "</td><td>" +
            fixed(g.wss, 4) + "</td><td>" + fixed(g.size ? g.wss / double(g.size) : 0.0, 4) +
            "</td><td>" + fixed(g.mean_pairwise_distance, 4) + "</td><td>" +
            fixed(g.mean_pairwise_similarity, 4) + "</td><td>" + fixed(g.mean_quality, 3) +
            "</td></tr>";
  }
  html += "</table><p>Total within-group sum of squares " + fixed(analysis.total_wss, 4) +
          ", between groups " + fixed(analysis.between_ss, 4) +
          " (unit embeddings; WSS = sum of squared distances to the group centroid).</p>"
          "<h3>Distances between group centroids</h3><table><tr><th></th>";
  for (const auto& g : group_names) html += "<th>" + html_escape(g) + "</th>";
  html += "</tr>";
  for (std::size_t r = 0; r < group_names.size(); ++r) {
    html += "<tr><td>" + html_escape(group_names[r]) + "</td>";
    for (std::size_t c = 0; c < group_names.size(); ++c)
      html += "<td>" + fixed(analysis.centroid_distance[r * group_names.size() + c], 4) + "</td>";
    html += "</tr>";
  }
  return html + "</table>";
}

std::string html_page(const OrderedFaces& ordered, const EmbeddingAnalysis& analysis,
                      const ReportOptions& options, const Pictures& pictures) {
  std::string html = html_summary(ordered, analysis, options);
  for (const auto& [name, picture] : pictures) {
    html += "<h2>" + name.substr(0, name.size() - 4) + "</h2><img alt=\"" + name +
            "\" src=\"data:image/png;base64," + base64(plot::png_bytes(picture)) + "\">";
  }
  html += "<h2>Faces</h2><table><tr><th>#</th><th>face</th><th>group</th><th>quality</th></tr>";
  for (std::size_t i = 0; i < ordered.faces.size(); ++i) {
    const auto& group = ordered.group_names[static_cast<std::size_t>(ordered.group[i])];
    html += "<tr><td>" + std::to_string(i + 1) + "</td><td>" + html_escape(ordered.faces[i]->name) +
            "</td><td>" + html_escape(group) + "</td><td>" +
            fixed(ordered.faces[i]->embedding.quality, 3) + "</td></tr>";
  }
  return html + "</table></body></html>\n";
}

}  // namespace

ReportSummary write_report(const std::vector<ReportFace>& faces, const ReportOptions& options,
                           const std::filesystem::path& out_dir) {
  if (faces.empty()) throw InvalidInput("no faces to report on");
  const auto ordered = order_faces(faces);
  std::vector<torch::Tensor> rows;
  for (const auto* f : ordered.faces) rows.push_back(torch::tensor(f->embedding.raw));
  std::vector<double> qualities;
  for (const auto* f : ordered.faces) qualities.push_back(f->embedding.quality);
  const auto analysis =
      analyse_embeddings(torch::stack(rows), ordered.group, ordered.group_names, qualities);

  std::filesystem::create_directories(out_dir);
  ReportSummary summary;
  const auto pictures = draw_pictures(ordered, analysis, options.columns,
                                      quality_source(options.magnitude_is_quality));
  for (const auto& [name, picture] : pictures) {
    plot::write_png(out_dir / name, picture);
    summary.pictures.push_back(out_dir / name);
  }
  summary.json = out_dir / "report.json";
  std::ofstream(summary.json) << report_json(ordered, analysis, options).dump(1) << "\n";
  summary.html = out_dir / "report.html";
  std::ofstream(summary.html) << html_page(ordered, analysis, options, pictures);
  summary.faces = faces.size();
  summary.groups = analysis.groups;
  summary.total_wss = analysis.total_wss;
  summary.between_ss = analysis.between_ss;
  return summary;
}

ReportFaces encode_report_faces(
    const std::vector<io::InputFile>& files, const FaceEncoder& encoder,
    const std::function<void(const std::string& path, const std::string& reason)>& skipped,
    const std::function<void()>& progress) {
  ReportFaces out;
  for (const auto& file : files) {
    try {
      const auto image = io::read_image_bgr(file.path);
      auto result = encoder.encode({image}, {file.path.string()});
      if (!result[0].embedding) throw InvalidInput(result[0].error);
      const std::string group = file.top_folder().value_or("all");
      out.faces.push_back(
          {file.name.string(), group, std::move(*result[0].embedding), result[0].crop});
    } catch (const InvalidInput& e) {
      if (skipped) skipped(file.path.string(), e.what());
      ++out.skipped_inputs;
    }
    if (progress) progress();
  }
  return out;
}

}  // namespace facemag::eval
