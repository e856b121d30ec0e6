// MTCNN face detection (P-Net, R-Net, O-Net) exactly as facenet-pytorch's MTCNN: same weight
// files and key names, same pyramid (area resampling), thresholds, NMS, box regression and
// squaring, same landmark decoding; faces ordered largest first (select_largest=True).
#pragma once

#include <opencv2/core/mat.hpp>

#include <array>
#include <filesystem>
#include <memory>
#include <vector>

#include "facemag/detect/detection.hpp"

namespace facemag {

struct MtcnnOptions {
  int min_face_size = 20;                             // pixels
  std::array<float, 3> thresholds{0.6f, 0.7f, 0.7f};  // P-Net, R-Net, O-Net probability
  double factor = 0.709;                              // pyramid scale step
};

// A loaded detector: immutable and shareable between threads.
class MtcnnDetector {
 public:
  // Loads pnet.pt, rnet.pt and onet.pt (facenet-pytorch's files) from `weights_dir`, strictly.
  static MtcnnDetector load(const std::filesystem::path& weights_dir);

  // Faces in an 8-bit BGR image (OpenCV's order; converted to RGB inside, as facenet-pytorch
  // feeds PIL images), any size. No face gives an empty vector.
  std::vector<Detection> detect(const cv::Mat& bgr, const MtcnnOptions& options = {}) const;

  // Faces in several images of any sizes; result i belongs to images[i]. Images of the same
  // size go through each network together (as facenet-pytorch batches them), which amortises
  // MTCNN's many small operations; the results are those of detect() on each image.
  std::vector<std::vector<Detection>> detect_batch(const std::vector<cv::Mat>& bgr_images,
                                                   const MtcnnOptions& options = {}) const;

  struct Nets;

 private:
  explicit MtcnnDetector(std::shared_ptr<const Nets> nets) : nets_(std::move(nets)) {}
  std::vector<std::vector<Detection>> detect_same_size(const std::vector<cv::Mat>& bgr_images,
                                                       const MtcnnOptions& options) const;
  std::shared_ptr<const Nets> nets_;
};

}  // namespace facemag
