// Files the server answers with, built into the binary (src/serve/index.html, openapi.json; see
// CMakeLists.txt): no request path ever reaches the file system.
#pragma once

namespace facemag::serve {
extern const char* const kWebPage;
extern const char* const kOpenApi;
}  // namespace facemag::serve
