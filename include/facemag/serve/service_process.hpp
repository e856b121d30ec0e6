// What a process that serves (`facemag serve`, a Python launcher) does around a FaceServer: read
// its bearer token from a file, and run it until SIGINT or SIGTERM asks it to stop.
#pragma once

#include <filesystem>
#include <string>

#include "facemag/serve/server.hpp"

namespace facemag::serve {

// The bearer token in `path`, surrounding whitespace removed. InvalidInput when the file cannot be
// read or the token is shorter than 16 characters; a warning (spdlog) when other users may read
// the file.
std::string read_token_file(const std::filesystem::path& path);

// Runs `server` (FaceServer::run) until SIGINT or SIGTERM, then stops it, which finishes the
// requests in flight first. The signal handlers are installed for the call and restored after.
// Error when the self-pipe of the handler cannot be made.
void run_until_stop_signal(FaceServer& server);

}  // namespace facemag::serve
