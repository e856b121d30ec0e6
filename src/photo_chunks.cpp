#include "facemag/photo_chunks.hpp"

#include <algorithm>

#include "facemag/error.hpp"

namespace facemag {

std::size_t for_each_photo(const std::vector<io::InputFile>& files,
                           const std::function<void(const io::InputFile&, cv::Mat)>& per_photo,
                           const UnreadablePhotoSink& on_failure,
                           const std::function<void()>& after_each) {
  std::size_t failures = 0;
  for (const auto& file : files) {
    try {
      per_photo(file, io::read_image_bgr(file.path));
    } catch (const InvalidInput& e) {
      on_failure(file, e.what());
      ++failures;
    }
    if (after_each) after_each();
  }
  return failures;
}

std::size_t for_each_photo_chunk(const FacePipeline& pipeline,
                                 const std::vector<io::InputFile>& files, KeepFaces keep,
                                 const UnreadablePhotoSink& on_unreadable,
                                 const std::function<void(PhotoFacesChunk&)>& per_chunk) {
  std::size_t unreadable = 0;
  for (std::size_t start = 0; start < files.size(); start += kPhotosPerChunk) {
    const auto end = std::min(files.size(), start + kPhotosPerChunk);
    PhotoFacesChunk chunk;
    chunk.inputs = end - start;
    std::vector<cv::Mat> images;
    for (std::size_t i = start; i < end; ++i) {
      try {
        images.push_back(io::read_image_bgr(files[i].path));
        chunk.photos.push_back(&files[i]);
      } catch (const InvalidInput& e) {
        on_unreadable(files[i], e.what());
        ++unreadable;
      }
    }
    chunk.faces = pipeline.process_batch(images, keep);
    per_chunk(chunk);
  }
  return unreadable;
}

}  // namespace facemag
