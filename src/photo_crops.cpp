#include "facemag/photo_crops.hpp"

#include "facemag/error.hpp"

namespace facemag {

PhotoCropper::PhotoCropper(const MtcnnDetector* detector, std::optional<LandmarkFile> landmarks,
                           PhotoCropOptions options)
    : detector_(detector),
      landmarks_(std::move(landmarks)),
      options_(std::move(options)),
      template_(alignment_template(options_.alignment_template)) {
  if (!detector_ && !landmarks_) throw InvalidInput("photo crops need a detector or landmarks");
}

std::vector<Detection> PhotoCropper::faces(const cv::Mat& bgr,
                                           const std::filesystem::path& photo) const {
  if (landmarks_) {
    const Landmarks5* marks = landmarks_->find(photo);
    if (!marks) throw InvalidInput("no landmarks in " + landmarks_->source().string());
    return {detection_from_landmarks(*marks)};
  }
  const auto found = detector_->detect(bgr, options_.detection);
  std::vector<Detection> faces;
  for (const auto i : chosen_faces(found, bgr.cols, bgr.rows, options_.keep))
    faces.push_back(found[i]);
  return faces;
}

cv::Mat PhotoCropper::crop(const cv::Mat& bgr, const Detection& face) const {
  return options_.facenet_margin ? margin_crop(bgr, face.box, options_.image_size, options_.margin)
                                 : align_face(bgr, face.landmarks, template_).image;
}

}  // namespace facemag
