#include "facemag/export/onnx.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/model/network.hpp"
#include "facemag/nn/graph.hpp"
#include "facemag/nn/mtcnn_nets.hpp"

namespace facemag {

namespace {

using Value = nn::GraphSink::Value;
using Pair = nn::GraphSink::Pair;

// Writes a network's operations as ONNX nodes with float32 initializers, tracking each value's
// rank (PRelu and per-channel constants are shaped to broadcast along dimension 1).
class OnnxGraph final : public nn::GraphSink {
 public:
  explicit OnnxGraph(onnx::GraphProto& graph) : graph_(graph) {}

  void declare(const Value& name, int rank) { rank_[name] = rank; }

  Value conv(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias, Pair stride,
             Pair padding, std::int64_t groups) override {
    std::vector<Value> inputs{x, constant(weight)};
    if (bias.defined()) inputs.push_back(constant(bias));
    auto& n = node("Conv", inputs);
    ints(n, "kernel_shape", {weight.size(2), weight.size(3)});
    ints(n, "strides", {stride[0], stride[1]});
    ints(n, "pads", {padding[0], padding[1], padding[0], padding[1]});
    ints(n, "dilations", {1, 1});
    integer(n, "group", groups);
    return output(n, 4);
  }
  Value scale_shift(const Value& x, const torch::Tensor& scale,
                    const torch::Tensor& shift) override {
    const auto scaled = output(node("Mul", {x, channel_constant(x, scale)}), rank(x));
    return output(node("Add", {scaled, channel_constant(x, shift)}), rank(x));
  }
  Value prelu(const Value& x, const torch::Tensor& slope) override {
    return output(node("PRelu", {x, channel_constant(x, slope)}), rank(x));
  }
  Value relu(const Value& x) override { return output(node("Relu", {x}), rank(x)); }
  Value add(const Value& a, const Value& b) override {
    return output(node("Add", {a, b}), rank(a));
  }
  Value concat(const std::vector<Value>& values) override {
    auto& n = node("Concat", values);
    integer(n, "axis", 1);
    return output(n, rank(values.front()));
  }
  Value max_pool(const Value& x, Pair kernel, Pair stride, bool ceil_mode) override {
    auto& n = node("MaxPool", {x});
    ints(n, "kernel_shape", {kernel[0], kernel[1]});
    ints(n, "strides", {stride[0], stride[1]});
    ints(n, "pads", {0, 0, 0, 0});
    integer(n, "ceil_mode", ceil_mode ? 1 : 0);
    return output(n, 4);
  }
  Value global_average_pool(const Value& x) override {
    return output(node("GlobalAveragePool", {x}), 4);
  }
  Value flatten(const Value& x, bool caffe_order) override {
    Value y = x;
    if (caffe_order) y = transpose(x, {0, 3, 2, 1});
    auto& n = node("Flatten", {y});
    integer(n, "axis", 1);
    return output(n, 2);
  }
  Value linear(const Value& x, const torch::Tensor& weight, const torch::Tensor& bias) override {
    const auto b = bias.defined() ? bias : torch::zeros({weight.size(0)});
    auto& n = node("Gemm", {x, constant(weight), constant(b)});
    integer(n, "transB", 1);
    return output(n, 2);
  }
  Value softmax(const Value& x) override {
    auto& n = node("Softmax", {x});
    integer(n, "axis", 1);
    return output(n, rank(x));
  }

  Value transpose(const Value& x, const std::vector<std::int64_t>& perm) {
    auto& n = node("Transpose", {x});
    ints(n, "perm", perm);
    return output(n, static_cast<int>(perm.size()));
  }
  Value cast_to_float(const Value& x) {
    auto& n = node("Cast", {x});
    integer(n, "to", onnx::TensorProto::FLOAT);
    return output(n, rank(x));
  }
  // Renames the value `from` (a node output) to `to` (a graph output's name).
  void rename_output(const Value& from, const Value& to) {
    for (auto& n : *graph_.mutable_node()) {
      for (auto& out : *n.mutable_output()) {
        if (out == from) out = to;
      }
      for (auto& in : *n.mutable_input()) {
        if (in == from) in = to;
      }
    }
  }

 private:
  int rank(const Value& x) const {
    const auto it = rank_.find(x);
    return it == rank_.end() ? 4 : it->second;
  }
  Value constant(const torch::Tensor& tensor) {
    const auto t = tensor.detach().to(torch::kFloat32).contiguous();
    auto* init = graph_.add_initializer();
    const Value name = "w" + std::to_string(graph_.initializer_size());
    init->set_name(name);
    init->set_data_type(onnx::TensorProto::FLOAT);
    for (const auto d : t.sizes()) init->add_dims(d);
    init->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.nbytes()));
    return name;
  }
  // Per-channel values shaped C x 1 x 1 for a 4-D x, C for a 2-D one.
  Value channel_constant(const Value& x, const torch::Tensor& values) {
    const auto flat = values.flatten();
    return constant(rank(x) == 4 ? flat.view({-1, 1, 1}) : flat);
  }
  onnx::NodeProto& node(const char* op, const std::vector<Value>& inputs) {
    auto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(std::string(op) + "_" + std::to_string(graph_.node_size()));
    for (const auto& in : inputs) n->add_input(in);
    return *n;
  }
  Value output(onnx::NodeProto& n, int rank) {
    const Value name = "t" + std::to_string(++values_);
    n.add_output(name);
    rank_[name] = rank;
    return name;
  }
  static void ints(onnx::NodeProto& n, const char* name, const std::vector<std::int64_t>& values) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (const auto v : values) a->add_ints(v);
  }
  static void integer(onnx::NodeProto& n, const char* name, std::int64_t value) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }

  onnx::GraphProto& graph_;
  std::map<Value, int> rank_;
  int values_ = 0;
};

// What differs between the networks: the input geometry and normalisation, the outputs, the
// metadata, and how the network describes itself.
struct ExportSpec {
  std::string graph_name;
  std::int64_t height = 0, width = 0;  // 0: dynamic
  ColorOrder color_order = ColorOrder::kBGR;
  float pixel_offset = 0, pixel_scale = 1;
  std::vector<std::string> output_names;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::function<std::vector<Value>(nn::GraphSink&, const Value&)> describe;
};

void set_shape(onnx::ValueInfoProto& info, int elem_type,
               const std::vector<std::optional<std::int64_t>>& dims,
               const std::vector<std::string>& params) {
  auto* type = info.mutable_type()->mutable_tensor_type();
  type->set_elem_type(elem_type);
  auto* shape = type->mutable_shape();
  for (std::size_t i = 0; i < dims.size(); ++i) {
    auto* d = shape->add_dim();
    if (dims[i]) {
      d->set_dim_value(*dims[i]);
    } else {
      d->set_dim_param(params[i]);
    }
  }
}

std::string build(const ExportSpec& spec, const OnnxExportOptions& options) {
  check_onnx_export_options(options);
  onnx::ModelProto model;
  model.set_ir_version(8);  // ONNX 1.10+; opsets up to 17 are valid under it
  model.set_producer_name("facemag");
  model.set_producer_version("0.1.0");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  auto& graph = *model.mutable_graph();
  graph.set_name(spec.graph_name);

  const std::optional<std::int64_t> batch =
      options.batch > 0 ? std::optional<std::int64_t>(options.batch) : std::nullopt;
  const auto dim = [](std::int64_t v) {
    return v > 0 ? std::optional<std::int64_t>(v) : std::nullopt;
  };
  OnnxGraph sink(graph);
  Value x;
  auto* input = graph.add_input();
  if (options.with_preprocessing) {
    input->set_name("image");
    set_shape(*input, onnx::TensorProto::UINT8, {batch, dim(spec.height), dim(spec.width), 3},
              {"N", "H", "W", ""});
    sink.declare("image", 4);
    // BGR uint8 N x H x W x 3 -> float N x 3 x H x W -> the model's channel order, (p - offset) /
    // scale, as one 1 x 1 convolution (a permutation scaled by 1 / scale, bias -offset / scale).
    x = sink.transpose(sink.cast_to_float("image"), {0, 3, 1, 2});
    auto weight = torch::zeros({3, 3, 1, 1});
    for (int c = 0; c < 3; ++c) {
      const int from = spec.color_order == ColorOrder::kBGR ? c : 2 - c;
      weight[c][from][0][0] = 1.0 / spec.pixel_scale;
    }
    const auto bias = torch::full({3}, -spec.pixel_offset / spec.pixel_scale);
    x = sink.conv(x, weight, bias, {1, 1}, {0, 0}, 1);
  } else {
    input->set_name("input");
    set_shape(*input, onnx::TensorProto::FLOAT, {batch, 3, dim(spec.height), dim(spec.width)},
              {"N", "", "H", "W"});
    sink.declare("input", 4);
    x = "input";
  }
  torch::NoGradGuard no_grad;
  const auto outputs = spec.describe(sink, x);
  if (outputs.size() != spec.output_names.size())
    throw Error("ONNX export: the network described " + std::to_string(outputs.size()) +
                " outputs, expected " + std::to_string(spec.output_names.size()));
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    sink.rename_output(outputs[i], spec.output_names[i]);
    auto* out = graph.add_output();
    out->set_name(spec.output_names[i]);
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  for (const auto& [key, value] : spec.metadata) {
    auto* prop = model.add_metadata_props();
    prop->set_key(key);
    prop->set_value(value);
  }
  try {
    onnx::ShapeInferenceOptions strict{/*check_type=*/true, /*error_mode=*/1,
                                       /*enable_data_propagation=*/false};
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(), strict);
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw Error("ONNX export of " + spec.graph_name + " failed the ONNX checks: " + e.what());
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    throw Error("ONNX export of " + spec.graph_name + ": cannot serialise (over 2 GB?)");
  return bytes;
}

std::string bool_text(bool b) { return b ? "true" : "false"; }

std::vector<std::pair<std::string, std::string>> manifest_metadata(const ModelManifest& m,
                                                                   const OnnxExportOptions& o) {
  const auto number = [](double v) { return nlohmann::json(v).dump(); };
  return {
      {"architecture", m.architecture},
      {"color_order", m.color_order == ColorOrder::kBGR ? "BGR" : "RGB"},
      {"pixel_offset", number(m.pixel_offset)},
      {"pixel_scale", number(m.pixel_scale)},
      {"normalisation", "(p - pixel_offset) / pixel_scale, p in [0, 255]"},
      {"input_height", std::to_string(m.input_height)},
      {"input_width", std::to_string(m.input_width)},
      {"alignment_template", m.alignment_template},
      {"embedding_size", std::to_string(m.embedding_size)},
      {"magnitude_is_quality", bool_text(m.magnitude_is_quality)},
      {"same_person_threshold", number(m.same_person_threshold)},
      {"preprocessing_in_graph", bool_text(o.with_preprocessing)},
      {"input_format", o.with_preprocessing
                           ? "image: uint8 N x H x W x 3, BGR (OpenCV), aligned crop"
                           : "input: float32 N x 3 x H x W, color_order, normalised"},
      {"source", m.source},
      {"licence", m.licence},
      {"weights_sha256", m.sha256},
      {"manifest", manifest_to_json(m)},
  };
}

}  // namespace

void check_onnx_export_options(const OnnxExportOptions& options) {
  if (options.opset < kMinOnnxOpset || options.opset > kMaxOnnxOpset) {
    throw InvalidInput("--opset " + std::to_string(options.opset) + " is outside the supported " +
                       std::to_string(kMinOnnxOpset) + ".." + std::to_string(kMaxOnnxOpset));
  }
  if (options.batch < 0)
    throw InvalidInput("--batch must be 'dynamic' or a positive number of images");
}

std::string embedding_network_to_onnx(const torch::nn::Module& network,
                                      const ModelManifest& manifest,
                                      const OnnxExportOptions& options) {
  if (options.with_preprocessing && manifest.prewhiten)
    throw InvalidInput(
        "--with-preprocessing: this manifest standardises each face by its own statistics "
        "(prewhiten), which the exported graph does not compute; export without it");
  ExportSpec spec;
  spec.graph_name = manifest.architecture;
  spec.height = manifest.input_height;
  spec.width = manifest.input_width;
  spec.color_order = manifest.color_order;
  spec.pixel_offset = manifest.pixel_offset;
  spec.pixel_scale = manifest.pixel_scale;
  spec.metadata = manifest_metadata(manifest, options);
  spec.output_names = {"features"};
  const auto& architecture = find_architecture(manifest.architecture);
  // Borrowed for the export only (an aliasing pointer that owns nothing).
  const std::shared_ptr<const torch::nn::Module> borrowed(
      std::shared_ptr<const torch::nn::Module>(), &network);
  auto describe = architecture.describe(borrowed);
  if (!describe)
    throw InvalidInput("the network is not " + architecture.name +
                       " (manifest: " + manifest.architecture + ")");
  const int classes = architecture.classes ? architecture.classes(network) : 0;
  const bool classifier = options.with_classifier && classes > 0;
  if (classifier) {
    spec.output_names.push_back("logits");
    spec.metadata.emplace_back("num_classes", std::to_string(classes));
  }
  spec.describe = [describe, classifier](nn::GraphSink& s, const Value& x) {
    return describe(s, x, classifier);
  };
  return build(spec, options);
}

std::string mtcnn_network_to_onnx(const torch::nn::Module& network,
                                  const std::string& weights_sha256,
                                  const OnnxExportOptions& options) {
  ExportSpec spec;
  spec.color_order = ColorOrder::kRGB;  // facenet-pytorch feeds RGB images
  spec.pixel_offset = 127.5f;
  spec.pixel_scale = 128.0f;  // (x - 127.5) * 0.0078125
  if (const auto* net = network.as<nn::PNetImpl>()) {
    spec.graph_name = "mtcnn_pnet";
    spec.output_names = {"boxes", "prob"};
    spec.describe = [net](nn::GraphSink& s, const Value& x) { return net->describe(s, x); };
  } else if (const auto* net = network.as<nn::RNetImpl>()) {
    spec.graph_name = "mtcnn_rnet";
    spec.height = spec.width = 24;
    spec.output_names = {"boxes", "prob"};
    spec.describe = [net](nn::GraphSink& s, const Value& x) { return net->describe(s, x); };
  } else if (const auto* net = network.as<nn::ONetImpl>()) {
    spec.graph_name = "mtcnn_onet";
    spec.height = spec.width = 48;
    spec.output_names = {"boxes", "landmarks", "prob"};
    spec.describe = [net](nn::GraphSink& s, const Value& x) { return net->describe(s, x); };
  } else {
    throw InvalidInput("not one of MTCNN's networks (P-Net, R-Net, O-Net)");
  }
  spec.metadata = {
      {"architecture", spec.graph_name},
      {"color_order", "RGB"},
      {"pixel_offset", "127.5"},
      {"pixel_scale", "128"},
      {"normalisation", "(p - pixel_offset) / pixel_scale, p in [0, 255]"},
      {"preprocessing_in_graph", bool_text(options.with_preprocessing)},
      {"source", "facenet-pytorch MTCNN (pnet.pt, rnet.pt, onet.pt)"},
      {"licence", "MIT (facenet-pytorch)"},
      {"weights_sha256", weights_sha256},
  };
  return build(spec, options);
}

namespace {

constexpr const char* kMtcnnNetworks[] = {"mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"};

std::shared_ptr<torch::nn::Module> mtcnn_network(const std::string& name) {
  if (name == "mtcnn-pnet") return std::make_shared<nn::PNetImpl>();
  if (name == "mtcnn-rnet") return std::make_shared<nn::RNetImpl>();
  return std::make_shared<nn::ONetImpl>();
}

}  // namespace

std::vector<std::string> mtcnn_network_names() {
  return {std::begin(kMtcnnNetworks), std::end(kMtcnnNetworks)};
}

bool is_mtcnn_network_name(const std::string& name) {
  return std::find(std::begin(kMtcnnNetworks), std::end(kMtcnnNetworks), name) !=
         std::end(kMtcnnNetworks);
}

std::string model_to_onnx(const std::string& architecture, const ResolvedModel& model,
                          const OnnxExportOptions& options, bool verify_sha256) {
  check_onnx_export_options(options);  // before the (slow) load
  if (is_mtcnn_network_name(architecture)) {
    if (model.weights.empty()) throw InvalidInput("--weights: the " + architecture + " checkpoint");
    auto net = mtcnn_network(architecture);
    nn::load_mtcnn_weights(*net, model.weights);
    return mtcnn_network_to_onnx(*net, io::sha256_file(model.weights), options);
  }
  ModelManifest manifest = model.manifest;
  if (!verify_sha256) manifest.sha256.clear();
  ModelManifest loaded;  // with the SHA-256 of the weights as read
  const auto network = load_network(manifest, model.weights, nullptr, &loaded);
  network.module->eval();
  manifest.sha256 = loaded.sha256;
  return embedding_network_to_onnx(*network.module, manifest, options);
}

std::int64_t parse_onnx_batch(const std::string& text) {
  if (text == "dynamic") return 0;
  try {
    std::size_t used = 0;
    const std::int64_t batch = std::stoll(text, &used);
    if (used != text.size() || batch < 1) throw std::invalid_argument(text);
    return batch;
  } catch (const std::logic_error&) {
    throw InvalidInput("--batch " + text + ": expected 'dynamic' or a positive number");
  }
}

std::size_t export_onnx_file(const OnnxFileRequest& request) {
  check_onnx_export_options(request.options);
  const auto& out = request.out;
  const auto folder = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(folder))
    throw InvalidInput(out.string() + ": the folder " + folder.string() + " does not exist");
  ResolvedModel model;
  if (is_mtcnn_network_name(request.architecture)) {
    model.weights = request.weights;
  } else {
    ModelRequest files;  // the files as every command finds them
    files.architecture = request.architecture;
    files.architecture_given = request.architecture_given;
    files.weights = request.weights;
    files.manifest = request.manifest;
    model = resolve_model(files);
    if (!request.verify_sha256)
      spdlog::warn("--no-verify: {} is exported without checking its SHA-256",
                   model.weights.string());
  }
  const std::string bytes =
      model_to_onnx(request.architecture, model, request.options, request.verify_sha256);
  io::write_file_atomic(out, bytes);
  return bytes.size();
}

}  // namespace facemag
