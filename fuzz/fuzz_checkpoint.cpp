// libFuzzer target: any byte string given to the checkpoint reader either loads or fails with
// a facemag error; crashes, sanitizer reports, other exceptions and huge allocations are bugs.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "facemag/error.hpp"
#include "facemag/io/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto checkpoint = facemag::io::load_checkpoint_bytes(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input");
    (void)facemag::io::find_state_dict(checkpoint);
  } catch (const facemag::Error&) {
  }
  return 0;
}
