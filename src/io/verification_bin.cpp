#include "facemag/io/verification_bin.hpp"

#include <torch/torch.h>

#include "facemag/error.hpp"
#include "facemag/io/file.hpp"
#include "facemag/io/pickle.hpp"

namespace facemag::io {

VerificationBin read_verification_bin(const std::filesystem::path& path) {
  return read_verification_bin_bytes(read_file_bytes(path), path.string());
}

VerificationBin read_verification_bin_bytes(std::string_view bytes, const std::string& source) {
  const std::string format =
      " is not an insightface verification .bin (a pickle of (images, is_same))";
  pickle::ValuePtr root;
  try {
    pickle::UnpickleOptions options;
    options.source = source;
    root = pickle::unpickle(bytes, options);
  } catch (const Error& e) {
    throw InvalidInput(source + format + ": " + e.what());
  }
  const auto* top = std::get_if<pickle::Tuple>(&root->data);
  if (!top || top->items.size() != 2)
    throw InvalidInput(source + format + ": it holds a " + root->type_name() +
                       (top ? " of " + std::to_string(top->items.size()) + " items" : ""));
  VerificationBin bin;
  try {
    for (const auto& item : top->items[0]->as_sequence("the image list")) {
      const auto* b = std::get_if<pickle::Bytes>(&item->data);
      if (!b)
        throw InvalidInput("image " + std::to_string(bin.images.size()) + " is a " +
                           item->type_name() + ", expected encoded image bytes");
      bin.images.push_back(b->data);
    }
    const auto& flags = *top->items[1];
    if (pickle::is_numpy_array(flags)) {
      const auto t = pickle::numpy_array(flags, "the is_same array").reshape({-1});
      const auto as_int = t.to(torch::kInt64);
      for (std::int64_t i = 0; i < as_int.size(0); ++i) {
        const auto v = as_int[i].item<std::int64_t>();
        if (v != 0 && v != 1)
          throw InvalidInput("is_same[" + std::to_string(i) + "] is " + std::to_string(v));
        bin.is_same.push_back(v == 1);
      }
    } else {
      for (const auto& item : flags.as_sequence("the is_same list"))
        bin.is_same.push_back(item->is<bool>() ? item->as_bool() : item->as_int("is_same") != 0);
    }
  } catch (const Error& e) {
    throw InvalidInput(source + format + ": " + e.what());
  }
  if (bin.images.size() != 2 * bin.is_same.size())
    throw InvalidInput(source + ": " + std::to_string(bin.is_same.size()) + " pairs need " +
                       std::to_string(2 * bin.is_same.size()) + " images, the file has " +
                       std::to_string(bin.images.size()));
  return bin;
}

}  // namespace facemag::io
