#include "facemag/gallery/archive.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "facemag/error.hpp"
#include "facemag/gallery/json.hpp"
#include "facemag/io/npy.hpp"

namespace facemag::gallery {
namespace {

// The record of one face: `gallery show`'s, with its row in BASE.npy.
nlohmann::json face_record(const StoredFace& f, std::size_t row) {
  auto record = to_json(f);
  record["row"] = row;
  return record;
}

// A face of BASE.jsonl with its embedding, row `row` of `matrix`. nlohmann::json::exception for
// a record without the fields of face_record.
NewFace parse_face_record(const nlohmann::json& r, const torch::Tensor& matrix, std::int64_t row) {
  NewFace f;
  f.person = r.at("person").get<std::string>();
  f.source_path = r.at("source").get<std::string>();
  f.image_sha256 = r.at("image_sha256").get<std::string>();
  const auto& box = r.at("box");
  f.detection.box = {box.at(0).get<float>(), box.at(1).get<float>(), box.at(2).get<float>(),
                     box.at(3).get<float>()};
  const auto& marks = r.at("landmarks");
  for (int i = 0; i < 5; ++i) {
    const auto& point = marks.at(static_cast<std::size_t>(i));
    f.detection.landmarks[i] = {point.at(0).get<float>(), point.at(1).get<float>()};
  }
  f.detection.score = r.at("score").get<float>();
  f.enrolled_at = r.value("enrolled_at", "");
  if (r.contains("quality")) f.quality = r.at("quality").get<float>();  // as enrolment measured it
  const float* v = matrix[row].data_ptr<float>();
  f.embedding.assign(v, v + matrix.size(1));
  return f;
}

std::string read_text(std::ifstream& in) {
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

ArchiveFiles archive_files(const std::string& base) {
  return {base + ".npy", base + ".jsonl", base + ".model.json"};
}

std::string model_binding_json(const ModelBinding& m) {
  const nlohmann::json j{{"model_name", m.model_name},
                         {"architecture", m.architecture},
                         {"embedding_size", m.embedding_size},
                         {"weights_sha256", m.weights_sha256},
                         {"magnitude_is_quality", m.magnitude_is_quality},
                         {"same_person_threshold", m.same_person_threshold},
                         {"quality_threshold", m.quality_threshold},
                         {"cluster_threshold", m.cluster_threshold},
                         {"weights_path", m.weights_path}};
  return j.dump(2);
}

ModelBinding parse_model_binding_json(std::string_view text, const std::string& source) {
  try {
    const auto j = nlohmann::json::parse(text);
    ModelBinding m;
    m.model_name = j.at("model_name").get<std::string>();
    m.architecture = j.at("architecture").get<std::string>();
    m.embedding_size = j.at("embedding_size").get<int>();
    m.weights_sha256 = j.at("weights_sha256").get<std::string>();
    m.magnitude_is_quality = j.at("magnitude_is_quality").get<bool>();
    m.same_person_threshold = j.at("same_person_threshold").get<double>();
    m.quality_threshold = j.at("quality_threshold").get<double>();
    m.cluster_threshold = j.value("cluster_threshold", 0.0);  // written from schema version 3 on
    m.weights_path = j.value("weights_path", "");
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(source +
                       ": expected a gallery's model binding (model_name, architecture, "
                       "embedding_size, ...), found " +
                       e.what());
  }
}

ExportSummary export_gallery(const Gallery& gallery, const std::string& base) {
  ExportSummary out;
  out.files = archive_files(base);
  const auto faces = gallery.faces();
  std::vector<float> matrix;
  std::ofstream index(out.files.faces);
  if (!index) throw InvalidInput(base + ".jsonl: cannot write");
  for (std::size_t row = 0; row < faces.size(); ++row) {
    index << face_record(faces[row], row) << "\n";
    matrix.insert(matrix.end(), faces[row].embedding.begin(), faces[row].embedding.end());
  }
  index.close();
  if (!index) throw InvalidInput(base + ".jsonl: cannot write");
  const auto dim = static_cast<std::int64_t>(gallery.model().embedding_size);
  io::write_npy(out.files.embeddings,
                torch::from_blob(matrix.data(), {static_cast<std::int64_t>(faces.size()), dim},
                                 torch::kFloat32));
  std::ofstream model(out.files.model);
  model << model_binding_json(gallery.model()) << "\n";
  model.close();
  if (!model) throw InvalidInput(base + ".model.json: cannot write");
  out.faces = faces.size();
  return out;
}

Archive read_archive(const std::string& base) {
  const auto files = archive_files(base);
  std::ifstream model_file(files.model);
  if (!model_file) throw InvalidInput(base + ".model.json: no such export");
  Archive out;
  out.model = parse_model_binding_json(read_text(model_file), base + ".model.json");
  const auto matrix = io::read_npy(files.embeddings).to(torch::kFloat32).contiguous();
  std::ifstream index(files.faces);
  if (!index) throw InvalidInput(base + ".jsonl: cannot open");
  std::size_t number = 0;
  for (std::string line; std::getline(index, line);) {
    ++number;
    if (line.empty()) continue;
    const std::string at = base + ".jsonl:" + std::to_string(number);
    if (matrix.dim() != 2)
      throw InvalidInput(base + ".npy: expected an N x " +
                         std::to_string(out.model.embedding_size) + " matrix, found " +
                         std::to_string(matrix.dim()) + " dimension(s)");
    try {
      const auto r = nlohmann::json::parse(line);
      const auto row = r.at("row").get<std::int64_t>();
      if (row < 0 || row >= matrix.size(0) || matrix.size(1) != out.model.embedding_size)
        throw InvalidInput(at + ": row " + std::to_string(row) + " is not in " + base + ".npy");
      out.faces.push_back(parse_face_record(r, matrix, row));
    } catch (const nlohmann::json::exception& e) {
      throw InvalidInput(at + ": expected a face record of a gallery export, found " +
                         std::string(e.what()));
    }
  }
  return out;
}

ImportSummary import_gallery(const std::string& base, const std::string& location) {
  const auto archive = read_archive(base);
  ImportSummary out;
  out.created = !Gallery::exists(location);
  auto g = out.created ? Gallery::create(location, archive.model)
                       : Gallery::open(location, archive.model);
  const auto result = g.enroll(archive.faces);
  out.faces = archive.faces.size();
  out.added = result.added;
  out.duplicates = result.duplicates;
  out.location = g.location();
  return out;
}

}  // namespace facemag::gallery
