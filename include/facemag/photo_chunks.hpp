// Photos read for a batch command, as every front end reads them: decoded one by one or in
// chunks detected and embedded together, an unreadable photo reported and skipped (the run goes
// on with the others). The calls print nothing; what they skip goes to `on_unreadable`.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "facemag/io/image.hpp"
#include "facemag/pipeline.hpp"

namespace facemag {

// An input skipped: `reason` is the InvalidInput message (most start with the path).
using UnreadablePhotoSink =
    std::function<void(const io::InputFile& file, const std::string& reason)>;

// Decodes each file (io::read_image_bgr) and hands it to per_photo; a file that fails to decode,
// or for which per_photo throws InvalidInput, goes to on_failure and the others go on.
// after_each (when set) follows every file, failed or not. Returns the number of failures.
std::size_t for_each_photo(const std::vector<io::InputFile>& files,
                           const std::function<void(const io::InputFile&, cv::Mat)>& per_photo,
                           const UnreadablePhotoSink& on_failure,
                           const std::function<void()>& after_each = {});

// The faces of one chunk of photos (detected together, their faces embedded in one batch).
struct PhotoFacesChunk {
  std::vector<const io::InputFile*> photos;    // those that decoded, in input order
  std::vector<std::vector<FaceRecord>> faces;  // faces[i]: of photos[i], as `keep` chose
  std::size_t inputs = 0;                      // input files the chunk covered (decoded or not)
};

// Photos detected together and embedded in one batch by for_each_photo_chunk. A face's landmarks
// (and so its embedding) can differ in the last bits with the other photos of its chunk, so a
// caller that must reproduce a run's values chunks the same way (faces_with_cache does).
inline constexpr std::size_t kPhotosPerChunk = 32;

// Photos in chunks of kPhotosPerChunk: decodes them (on_unreadable otherwise), finds and embeds the
// faces `keep` chooses (FacePipeline::process_batch), then calls per_chunk, also for a chunk
// without a decoded photo. A photo without a face is an empty entry of `faces`, not a failure.
// Returns the number of unreadable photos.
std::size_t for_each_photo_chunk(const FacePipeline& pipeline,
                                 const std::vector<io::InputFile>& files, KeepFaces keep,
                                 const UnreadablePhotoSink& on_unreadable,
                                 const std::function<void(PhotoFacesChunk&)>& per_chunk);

}  // namespace facemag
