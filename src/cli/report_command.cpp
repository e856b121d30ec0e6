// `facemag report`: an analysis of a set of faces (sub-folders are groups) as pictures, a JSON
// file of every number and one self-contained HTML page (facemag::eval::write_report).
#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "encoder.hpp"
#include "facemag/eval/report.hpp"
#include "facemag/eval/text.hpp"

namespace facemag::cli {
namespace {

struct ReportOptions {
  std::vector<std::string> inputs;
  std::string out;
  ModelOptions model;
  int columns = 10;
};

int run_report(const ReportOptions& opt) {
  const auto files = input_files(opt.inputs);
  const LoadedFaceEncoder encoder(opt.model);
  const auto& manifest = encoder.manifest();

  eval::ReportFaces faces;
  {
    ProgressBar progress(files.size(), "report");
    faces = eval::encode_report_faces(files, encoder, report_skipped, [&] { progress.advance(); });
  }
  const eval::ReportOptions report{.model = manifest.name,
                                   .magnitude_is_quality = manifest.magnitude_is_quality,
                                   .columns = opt.columns,
                                   .skipped_inputs = faces.skipped_inputs};
  const auto summary = eval::write_report(faces.faces, report, opt.out);
  std::fputs(eval::to_text(summary, opt.out).c_str(), stdout);
  return finish_batch(faces.skipped_inputs, files.size());
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
