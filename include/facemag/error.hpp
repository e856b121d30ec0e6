// facemag's one error channel: exceptions derived from facemag::Error.
// Messages name the file, the tensor or field, what was expected and what was found.
#pragma once

#include <stdexcept>
#include <string>

namespace facemag {

// Base of every error facemag throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model or checkpoint file that cannot be read or does not fit the architecture.
class ModelLoadError : public Error {
 public:
  using Error::Error;
};

// A caller's input (image, path, pair list, feature file) that is malformed or out of range.
class InvalidInput : public Error {
 public:
  using Error::Error;
};

// A file written by an unsupported version of a format (pickle protocol, npy version...).
class VersionMismatch : public Error {
 public:
  using Error::Error;
};

}  // namespace facemag
