#include "facemag/model/network.hpp"

#include <torch/torch.h>

#include <cmath>
#include <future>
#include <optional>
#include <set>

#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"
#include "facemag/io/sha256.hpp"
#include "facemag/model/store.hpp"
#include "facemag/nn/inception_resnet_v1.hpp"
#include "facemag/nn/iresnet.hpp"
#include "facemag/nn/mobilefacenet.hpp"
#include "facemag/nn/module_utils.hpp"

namespace facemag {

namespace {

// The convention of the non-MagFace models: RGB, (x - 127.5) / 128, and a feature magnitude
// that is not a calibrated quality.
void use_rgb_standardisation(ModelManifest& m, int height, int width) {
  m.input_height = height;
  m.input_width = width;
  m.color_order = ColorOrder::kRGB;
  m.pixel_offset = 127.5f;
  m.pixel_scale = 128.0f;
  m.magnitude_is_quality = false;
}

// A network whose embedding is its forward() and whose description is its describe().
template <class Net>
TrainableNetwork plain(std::shared_ptr<Net> net) {
  return {net, [net](const torch::Tensor& x) { return net->forward(x); }, {}};
}
template <class Net>
std::function<NetworkDescription(std::shared_ptr<const torch::nn::Module>)> plain_description() {
  return [](std::shared_ptr<const torch::nn::Module> module) -> NetworkDescription {
    const auto net = std::dynamic_pointer_cast<const Net>(std::move(module));
    if (!net) return {};
    return [net](nn::GraphSink& sink, const std::string& x, bool) {
      return std::vector<std::string>{net->describe(sink, x)};
    };
  };
}

Architecture iresnet(nn::IResNetDepth depth) {
  const std::string name = "iresnet" + std::to_string(static_cast<int>(depth));
  return {name,
          [name] {
            ModelManifest m;
            m.architecture = name;
            m.name = "magface-" + name;
            m.source = "MagFace (IrvingMeng/MagFace), models/iresnet.py";
            m.licence = "Apache-2.0 (code); weights: see their source";
            return m;
          },
          [depth](const ModelManifest& m) {
            return plain(std::make_shared<nn::IResNetImpl>(depth, m.embedding_size));
          },
          plain_description<nn::IResNetImpl>()};
}

Architecture mobilefacenet() {
  return {"mobilefacenet",
          [] {
            ModelManifest m;
            m.architecture = "mobilefacenet";
            m.name = "mobilefacenet-casia";
            use_rgb_standardisation(m, 112, 96);
            m.alignment_template = "sphereface-96x112";
            m.embedding_size = 128;
            m.same_person_threshold = 0.2;
            m.threshold_calibration =
                "pure groups of the 46 faces (3 people) in ../shared/data/faces-casia; not "
                "calibrated on LFW";
            m.cluster_threshold = 0.48;
            m.cluster_calibration =
                "best BCubed F (0.959) of average linkage on lfw-half (5,373 photos of 2,086 "
                "people, LFW landmarks, mirrored faces concatenated), thresholds 0.40-0.56 by 0.01";
            m.source =
                "Xiaoccer/MobileFaceNet_Pytorch, model/best/068.ckpt (CASIA-WebFace, LFW 99.30%)";
            m.licence = "see the source repository";
            return m;
          },
          [](const ModelManifest&) { return plain(std::make_shared<nn::MobileFaceNetImpl>()); },
          plain_description<nn::MobileFaceNetImpl>()};
}

Architecture inception_resnet_v1() {
  Architecture a;
  a.name = "inception_resnet_v1";
  a.manifest = [] {
    ModelManifest m;
    m.architecture = "inception_resnet_v1";
    m.name = "facenet-inception-resnet-v1";
    use_rgb_standardisation(m, 160, 160);
    m.alignment_template = "facenet-margin-0";  // facenet-pytorch MTCNN defaults: 160 px, margin 0
    m.embedding_size = 512;
    m.same_person_threshold = 0.4;
    m.source =
        "facenet-pytorch InceptionResnetV1 (20180402-114759-vggface2.pt, "
        "20180408-102900-casia-webface.pt)";
    m.licence = "MIT (facenet-pytorch); weights: see their source";
    return m;
  };
  a.build = [](const ModelManifest& m) {
    auto net = std::make_shared<nn::InceptionResnetV1Impl>(m.num_classes);
    auto built = plain(net);
    if (m.num_classes > 0) built.logits = [net](const torch::Tensor& x) { return net->logits(x); };
    return built;
  };
  a.describe = [](std::shared_ptr<const torch::nn::Module> module) -> NetworkDescription {
    const auto net = std::dynamic_pointer_cast<const nn::InceptionResnetV1Impl>(std::move(module));
    if (!net) return {};
    return [net](nn::GraphSink& sink, const std::string& x, bool with_classifier) {
      return net->describe(sink, x, with_classifier && net->num_classes() > 0);
    };
  };
  a.classifier_from_checkpoint = true;
  a.classes = [](const torch::nn::Module& module) {
    const auto* net = dynamic_cast<const nn::InceptionResnetV1Impl*>(&module);
    return net ? static_cast<int>(net->num_classes()) : 0;
  };
  return a;
}

// MagFace checkpoints name the backbone `features.module.*` (or `module.features.*` from other
// wrappers) and keep the classifier beside it; DataParallel state dicts use `module.*`. Pick
// the prefix under which the most backbone tensors are found.
io::NamedTensors select_backbone(const io::NamedTensors& all, const torch::nn::Module& model,
                                 const std::string& source, std::vector<std::string>& notes) {
  std::set<std::string> expected;
  for (const auto& [name, t] : nn::state_dict(model)) expected.insert(name);
  static const char* kPrefixes[] = {"features.module.", "module.features.", "module.", "features.",
                                    ""};
  std::string best;
  std::size_t best_count = 0;
  for (const char* prefix : kPrefixes) {
    const std::string p = prefix;
    std::size_t count = 0;
    for (const auto& [name, t] : all) {
      count += name.rfind(p, 0) == 0 && expected.count(name.substr(p.size()));
    }
    if (count > best_count) {
      best = p;
      best_count = count;
    }
  }
  io::NamedTensors backbone;
  for (const auto& [name, t] : all) {
    if (name.rfind(best, 0) == 0) {
      backbone.emplace_back(name.substr(best.size()), t);
    } else if (name == "fc.weight" || name == "module.fc.weight" || name == "fc.bias" ||
               name == "module.fc.bias") {
      notes.push_back("ignored the training classifier '" + name + "' " + c10::str(t.sizes()) +
                      " (not part of the embedding network)");
    } else {
      throw ModelLoadError(source + ": unexpected tensor '" + name +
                           "' outside the backbone prefix '" + best + "'");
    }
  }
  return backbone;
}

TrainableNetwork load_unverified(const ModelManifest& requested,
                                 const std::filesystem::path& weights,
                                 std::vector<std::string>& notes, ModelManifest& manifest) {
  const io::Checkpoint checkpoint = io::load_checkpoint(weights);
  const io::NamedTensors tensors = io::find_state_dict(checkpoint);
  const Architecture& architecture = find_architecture(requested.architecture);
  manifest = requested;
  if (architecture.classifier_from_checkpoint) {  // the classifier is optional
    manifest.num_classes = 0;
    for (const auto& [name, t] : tensors) {
      if (name == "logits.weight" && t.dim() == 2)
        manifest.num_classes = static_cast<int>(t.size(0));
    }
  }
  auto network = architecture.build(manifest);
  if (checkpoint.root->is<pickle::Dict>()) {
    if (auto arch = pickle::dict_get(checkpoint.root->as_dict(), "arch");
        arch && arch->is<std::string>() && arch->as_string() != manifest.architecture) {
      throw ModelLoadError(checkpoint.source + ": checkpoint was trained as '" + arch->as_string() +
                           "', not '" + manifest.architecture + "'");
    }
  }
  const io::NamedTensors backbone =
      select_backbone(tensors, *network.module, checkpoint.source, notes);
  nn::load_state_dict_strict(*network.module, backbone, checkpoint.source);
  return network;
}

}  // namespace

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table{iresnet(nn::IResNetDepth::k18),
                                               iresnet(nn::IResNetDepth::k34),
                                               iresnet(nn::IResNetDepth::k50),
                                               iresnet(nn::IResNetDepth::k100),
                                               mobilefacenet(),
                                               inception_resnet_v1()};
  return table;
}

const Architecture& find_architecture(const std::string& name) {
  for (const auto& a : architectures()) {
    if (a.name == name) return a;
  }
  std::string known;
  for (const auto& a : architectures()) known += (known.empty() ? "" : ", ") + a.name;
  throw InvalidInput("unknown architecture '" + name + "' (known: " + known + ")");
}

TrainableNetwork build_network(const ModelManifest& manifest) {
  return find_architecture(manifest.architecture).build(manifest);
}

TrainableNetwork load_network(const ModelManifest& requested, const std::filesystem::path& weights,
                              std::vector<std::string>* notes, ModelManifest* loaded,
                              bool verify_sha256) {
  // The hash is computed beside the parsing, so that checking costs (almost) no time; it is kept
  // in the loaded manifest, so that nothing hashes the weights again (a gallery's binding).
  std::future<std::string> hashed;
  if (verify_sha256)
    hashed = std::async(std::launch::async, [&] { return io::sha256_file(weights); });
  const auto check = [&](ModelManifest& manifest) {
    if (!hashed.valid()) return;
    const auto actual = hashed.get();
    if (!requested.sha256.empty()) require_weights_sha256(weights, requested.sha256, actual);
    manifest.sha256 = actual;
  };
  std::vector<std::string> own_notes;
  ModelManifest manifest;
  try {
    auto network = load_unverified(requested, weights, notes ? *notes : own_notes, manifest);
    check(manifest);
    if (loaded) *loaded = manifest;
    return network;
  } catch (const Error&) {
    // A damaged file: say so rather than how it broke (where it could be read at all).
    std::optional<std::string> actual;
    if (hashed.valid()) {
      try {
        actual = hashed.get();
      } catch (const Error&) {
      }
    }
    if (actual && !requested.sha256.empty())
      require_weights_sha256(weights, requested.sha256, *actual);
    throw;
  }
}

torch::Tensor preprocess_faces(const ModelManifest& m, const std::vector<cv::Mat>& faces) {
  auto batch =
      torch::empty({static_cast<std::int64_t>(faces.size()), 3, m.input_height, m.input_width});
  for (std::size_t i = 0; i < faces.size(); ++i) {
    const cv::Mat& face = faces[i];
    if (face.type() != CV_8UC3 || face.rows != m.input_height || face.cols != m.input_width) {
      throw InvalidInput("face " + std::to_string(i) + " is " + std::to_string(face.cols) + "x" +
                         std::to_string(face.rows) + " with " + std::to_string(face.channels()) +
                         " channel(s); " + m.name + " expects an aligned " +
                         std::to_string(m.input_width) + "x" + std::to_string(m.input_height) +
                         " 8-bit BGR image");
    }
    const cv::Mat continuous = face.isContinuous() ? face : face.clone();
    auto hwc = torch::from_blob(continuous.data, {m.input_height, m.input_width, 3}, torch::kUInt8);
    auto chw = hwc.permute({2, 0, 1}).to(torch::kFloat32);
    if (m.color_order == ColorOrder::kRGB) chw = chw.flip(0);  // OpenCV gives BGR
    if (m.prewhiten) {
      const auto std_adj = chw.std().clamp_min(1.0 / std::sqrt(static_cast<double>(chw.numel())));
      batch[static_cast<std::int64_t>(i)].copy_((chw - chw.mean()) / std_adj);
    } else {
      batch[static_cast<std::int64_t>(i)].copy_((chw - m.pixel_offset) / m.pixel_scale);
    }
  }
  return batch;
}

}  // namespace facemag
