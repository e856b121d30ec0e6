// Aligned crops of the faces of photos, with no embedding model (what `facemag align` writes):
// each face of a photo, from a dataset's landmarks or from MTCNN, as a 5-point similarity-aligned
// crop of a template or as facenet-pytorch's margin crop.
#pragma once

#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "facemag/align/align.hpp"
#include "facemag/align/landmark_file.hpp"
#include "facemag/detect/mtcnn.hpp"
#include "facemag/pipeline.hpp"

namespace facemag {

struct PhotoCropOptions {
  // Which detected faces (chosen_faces()); kBest needs embeddings and keeps every face here.
  KeepFaces keep = KeepFaces::kAll;
  std::string alignment_template = "arcface-112x112";  // see alignment_template()
  bool facenet_margin = false;  // margin_crop(image_size, margin) instead of the template
  int image_size = 160;
  int margin = 0;
  MtcnnOptions detection;
};

// Borrows the detector (immutable; it must outlive the cropper); crops() is const.
class PhotoCropper {
 public:
  // `detector` may be nullptr only with `landmarks`: then every photo must be listed there.
  // InvalidInput for an unknown template.
  PhotoCropper(const MtcnnDetector* detector, std::optional<LandmarkFile> landmarks,
               PhotoCropOptions options);

  // The faces of an 8-bit BGR photo to crop, in MTCNN's order (largest first) as options.keep
  // chooses them; with a landmarks file, the one face listed there for `photo` (InvalidInput "no
  // landmarks in <file>" when it is not listed). No face: empty.
  std::vector<Detection> faces(const cv::Mat& bgr, const std::filesystem::path& photo) const;
  // The crop of one of them (BGR): the template's aligned crop, or the margin crop.
  cv::Mat crop(const cv::Mat& bgr, const Detection& face) const;

 private:
  const MtcnnDetector* detector_;
  std::optional<LandmarkFile> landmarks_;
  PhotoCropOptions options_;
  const AlignmentTemplate& template_;
};

}  // namespace facemag
