// `facemag report`: an analysis of a set of faces (sub-folders are groups) as pictures, a JSON
// file of every number and one self-contained HTML page.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/error.hpp"
#include "facemag/eval/analysis.hpp"
#include "facemag/eval/plot.hpp"
#include "facemag/io/image.hpp"

namespace facemag::cli {
namespace {

struct ReportOptions {
  std::vector<std::string> inputs;
  std::string out;
  ModelOptions model;
  int columns = 10;
};

struct Face {
  std::string name;        // relative to the input folder
  std::string group_name;  // its first folder, or "all"
  int group = 0;
  Embedding embedding;
  cv::Mat crop;
};

std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t b0 = static_cast<unsigned char>(bytes[i]);
    const std::uint32_t b1 = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0;
    const std::uint32_t b2 = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0;
    const std::uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
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

int run_report(const ReportOptions& opt) {
  const auto files = input_files(opt.inputs);
  const FaceEncoder encoder(opt.model);
  const auto& manifest = encoder.manifest();

  // Groups: the first folder of each file's name relative to its input folder.
  std::map<std::string, int> group_index;
  std::vector<Face> faces;
  std::size_t failures = 0;
  {
    ProgressBar progress(files.size(), "report");
    for (const auto& file : files) {
      try {
        const auto image = io::read_image_bgr(file.path);
        auto result = encoder.encode({image}, {file.path.string()});
        if (!result[0].embedding) throw InvalidInput(result[0].error);
        const auto parent = file.name.parent_path();
        const std::string group = parent.empty() ? "all" : parent.begin()->string();
        group_index.emplace(group, 0);  // numbered below, in name order
        faces.push_back(
            {file.name.string(), group, 0, std::move(*result[0].embedding), result[0].crop});
      } catch (const InvalidInput& e) {
        report_skipped(file.path.string(), e.what());
        ++failures;
      }
      progress.advance();
    }
  }
  if (faces.empty()) throw InvalidInput("no faces to report on");
  std::vector<std::string> group_names;
  for (auto& [name, index] : group_index) {
    index = static_cast<int>(group_names.size());
    group_names.push_back(name);
  }
  for (auto& f : faces) f.group = group_index.at(f.group_name);
  // Matrices: faces by group, then best quality first.
  std::stable_sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) {
    return a.group != b.group ? a.group < b.group : a.embedding.magnitude > b.embedding.magnitude;
  });

  std::vector<torch::Tensor> rows;
  std::vector<int> groups;
  for (const auto& f : faces) {
    rows.push_back(torch::tensor(f.embedding.raw));
    groups.push_back(f.group);
  }
  const auto analysis = eval::analyse_embeddings(torch::stack(rows), groups, group_names);
  const std::size_t n = faces.size();

  std::filesystem::create_directories(opt.out);
  const std::filesystem::path out(opt.out);
  std::vector<std::pair<std::string, cv::Mat>> pictures;  // file name, picture

  // (a) grid by quality.
  std::vector<std::size_t> by_quality(n);
  std::iota(by_quality.begin(), by_quality.end(), 0);
  std::stable_sort(by_quality.begin(), by_quality.end(), [&](auto a, auto b) {
    return faces[a].embedding.magnitude > faces[b].embedding.magnitude;
  });
  std::vector<plot::Tile> tiles;
  for (std::size_t r = 0; r < n; ++r) {
    const auto& f = faces[by_quality[r]];
    tiles.push_back({f.crop,
                     {fixed(f.embedding.magnitude, 2), f.name},
                     plot::category_color(static_cast<std::size_t>(f.group))});
  }
  pictures.emplace_back("faces_by_quality.png",
                        plot::tile_grid(tiles, opt.columns,
                                        "Faces by quality (feature magnitude), best first; "
                                        "frame colour = group",
                                        {112, 112}));
  // (b), (c) matrices.
  std::vector<std::string> labels;
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < n; ++i) {
    labels.push_back(std::to_string(i + 1) + " " + faces[i].name);
    if (i == 0 || faces[i].group != faces[i - 1].group) starts.push_back(i);
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
  // (d) PCA.
  std::vector<plot::PointGroup> scatter(group_names.size());
  for (std::size_t g = 0; g < group_names.size(); ++g) scatter[g].label = group_names[g];
  for (std::size_t i = 0; i < n; ++i)
    scatter[static_cast<std::size_t>(faces[i].group)].points.emplace_back(analysis.pca[2 * i],
                                                                          analysis.pca[2 * i + 1]);
  pictures.emplace_back(
      "pca.png", plot::scatter_chart(
                     scatter, {"PCA of the normalised embeddings",
                               "PC1 (" + fixed(100 * analysis.explained[0], 1) + "% of variance)",
                               "PC2 (" + fixed(100 * analysis.explained[1], 1) + "% of variance)",
                               {900, 600}}));
  // (f) quality histogram.
  std::vector<plot::ValueGroup> values(group_names.size());
  for (std::size_t g = 0; g < group_names.size(); ++g) values[g].label = group_names[g];
  for (const auto& f : faces)
    values[static_cast<std::size_t>(f.group)].values.push_back(f.embedding.magnitude);
  pictures.emplace_back(
      "quality_histogram.png",
      plot::histogram_chart(values, std::clamp(static_cast<int>(n) / 3, 5, 30),
                            {"Quality (feature magnitude)", "magnitude", "faces"}));
  for (const auto& [name, picture] : pictures) plot::write_png(out / name, picture);

  // Every number as JSON.
  nlohmann::json jfaces = nlohmann::json::array();
  for (std::size_t i = 0; i < n; ++i) {
    jfaces.push_back({{"index", i + 1},
                      {"name", faces[i].name},
                      {"group", group_names[static_cast<std::size_t>(faces[i].group)]},
                      {"quality", faces[i].embedding.magnitude},
                      {"pca", {analysis.pca[2 * i], analysis.pca[2 * i + 1]}}});
  }
  nlohmann::json jgroups = nlohmann::json::array();
  for (const auto& g : analysis.groups) {
    jgroups.push_back({{"name", g.name},
                       {"faces", g.size},
                       {"wss", g.wss},
                       {"mean_pairwise_distance", g.mean_pairwise_distance},
                       {"mean_pairwise_similarity", g.mean_pairwise_similarity},
                       {"mean_quality", g.mean_quality}});
  }
  const auto matrix = [&](const std::vector<double>& v, std::size_t size) {
    nlohmann::json m = nlohmann::json::array();
    for (std::size_t r = 0; r < size; ++r)
      m.push_back(std::vector<double>(v.begin() + r * size, v.begin() + (r + 1) * size));
    return m;
  };
  const nlohmann::json report{
      {"model", manifest.name},
      {"magnitude_is_quality", manifest.magnitude_is_quality},
      {"faces", jfaces},
      {"groups", jgroups},
      {"total_wss", analysis.total_wss},
      {"between_group_ss", analysis.between_ss},
      {"centroid_distance", matrix(analysis.centroid_distance, group_names.size())},
      {"pca_explained_variance_ratio", {analysis.explained[0], analysis.explained[1]}},
      {"cosine_similarity", matrix(analysis.cosine, n)},
      {"distance", matrix(analysis.distance, n)}};
  std::ofstream(out / "report.json") << report.dump(1) << "\n";

  // One self-contained page.
  std::string html =
      "<!doctype html><html><head><meta charset=\"utf-8\"><title>facemag report</title><style>"
      "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%;"
      "border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse;margin:1em 0}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
      "td:first-child,th:first-child{text-align:left}</style></head><body>";
  html += "<h1>facemag report</h1><p>" + std::to_string(n) + " faces in " +
          std::to_string(group_names.size()) + " group(s), model <b>" + html_escape(manifest.name) +
          "</b>.";
  if (!manifest.magnitude_is_quality)
    html +=
        " This model is not MagFace-trained: its feature magnitude is not a calibrated "
        "quality.";
  if (failures) html += " " + std::to_string(failures) + " input(s) skipped (see the log).";
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
  html += "</table>";
  for (const auto& [name, picture] : pictures) {
    html += "<h2>" + name.substr(0, name.size() - 4) + "</h2><img alt=\"" + name +
            "\" src=\"data:image/png;base64," + base64(plot::png_bytes(picture)) + "\">";
  }
  html += "<h2>Faces</h2><table><tr><th>#</th><th>face</th><th>group</th><th>quality</th></tr>";
  for (std::size_t i = 0; i < n; ++i) {
    html += "<tr><td>" + std::to_string(i + 1) + "</td><td>" + html_escape(faces[i].name) +
            "</td><td>" + html_escape(group_names[static_cast<std::size_t>(faces[i].group)]) +
            "</td><td>" + fixed(faces[i].embedding.magnitude, 3) + "</td></tr>";
  }
  html += "</table></body></html>\n";
  std::ofstream(out / "report.html") << html;
  std::printf(
      "report on %zu faces in %zu group(s) written to %s (report.html, report.json, %zu "
      "PNG files)\n",
      n, group_names.size(), out.string().c_str(), pictures.size());
  for (const auto& g : analysis.groups) {
    std::printf("  %-12s %3zu faces  WSS %.4f  mean distance %.4f  mean quality %.3f\n",
                g.name.c_str(), g.size, g.wss, g.mean_pairwise_distance, g.mean_quality);
  }
  return finish_batch(failures, files.size());
}

}  // namespace

Runner add_report_command(CLI::App& app) {
  auto opt = std::make_shared<ReportOptions>();
  auto* cmd = app.add_subcommand(
      "report", "Analysis of a set of faces (sub-folders are groups): pictures, JSON, HTML");
  cmd->add_option("inputs", opt->inputs, "Photos or aligned faces, folders, @list.txt")->required();
  cmd->add_option("--out", opt->out, "Folder for the report")->required();
  add_model_options(*cmd, opt->model, "iresnet100");
  add_face_choice_options(*cmd, opt->model);
  cmd->add_option("--columns", opt->columns, "Faces per row of the quality grid")
      ->capture_default_str();
  return [cmd, opt]() -> int { return cmd->parsed() ? run_report(*opt) : -1; };
}

}  // namespace facemag::cli
