// A face's quality: one rule for every front end (embed, quality, video, serve, gallery,
// Python), named by quality_source().
//
// MagFace-trained models (ModelManifest::magnitude_is_quality): the raw embedding's magnitude,
// as MagFace defines it. Other models: the magnitude times the aligned crop's sharpness factor,
//   magnitude * min(1, crop_sharpness(crop) / kSharpnessReference).
// Chosen by measurement (docs/quality.md, bench/quality_measures.py): with the real
// MobileFaceNet on lfw-half, the magnitude ranks pairs for error-versus-reject better than
// SER-FIQ, MTCNN's probability or any image score (folds 4-5: mean FNMR at FMR 1e-3 / 1e-2 over
// 0-40 % rejected 3.32 / 0.88 %, detector score 4.49 / 1.50 %, random 5.2 / 2.0 %), but ranks a
// heavily blurred copy of a face above the face itself (Gaussian sigma 6: 88 % of faces); the
// sharpness factor is 1 for 95 % of real photos (so the ranking is the magnitude's) and small
// for blurred, darkened or down-scaled crops.
#pragma once

#include <opencv2/core/mat.hpp>

#include <string>

namespace facemag {

struct ModelManifest;

// Variance of the Laplacian (3 x 3, 4-neighbour) of the crop's grey levels (0-255), measured at
// 112 rows (a crop of another height is resized to 112 rows first, keeping its aspect ratio).
// crop: 8-bit BGR (3 channels) or grey (1 channel); InvalidInput for anything else.
double crop_sharpness(const cv::Mat& crop);

// The 5th percentile of crop_sharpness over the 3 811 lfw-half photos of LFW's folds 1-5 pairs
// (news photos, SphereFace 96 x 112 crops): a crop this sharp or sharper counts as sharp.
inline constexpr double kSharpnessReference = 69.0;

// min(1, crop_sharpness(crop) / kSharpnessReference).
double sharpness_factor(const cv::Mat& crop);

// The quality of a face whose raw embedding has this magnitude (see the top of this file).
float face_quality(const ModelManifest& model, float magnitude, const cv::Mat& crop);

// What face_quality() measures for this model: "magnitude" or "magnitude*sharpness".
std::string quality_source(const ModelManifest& model);
std::string quality_source(bool magnitude_is_quality);  // the same by the manifest's flag

}  // namespace facemag
