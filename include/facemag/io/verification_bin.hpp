// insightface's verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin): a pickle of
// (list of encoded images, is-same flags), images 2k and 2k+1 forming pair k. Both layouts in
// circulation are read: Python 2 cPickle (images as str, flags as a list of bools) and Python 3
// (bytes, flags as a NumPy bool array).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace facemag::io {

struct VerificationBin {
  std::vector<std::string> images;  // encoded image files (JPEG/PNG bytes)
  std::vector<bool> is_same;        // one per pair
};

// InvalidInput naming the file when it is not such a pickle, or the counts disagree.
VerificationBin read_verification_bin(const std::filesystem::path& path);
VerificationBin read_verification_bin_bytes(std::string_view bytes, const std::string& source);

}  // namespace facemag::io
