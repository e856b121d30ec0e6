#!/usr/bin/env bash
# README command (2): installs what is missing, builds, and runs the whole test suite.
# Tests that need ../shared skip with the reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# playwright-core drives Debian's Chromium in the web page's test; without npm that test skips
# and says why.
if command -v npm > /dev/null && [ ! -d build/npm/node_modules/playwright-core ]; then
  npm install --prefix build/npm --no-audit --no-fund --loglevel=error playwright-core@1 \
    || echo "facemag: npm could not install playwright-core; the browser test will skip"
fi
cd build
ctest --output-on-failure --timeout 1200 -j "$(nproc)"
