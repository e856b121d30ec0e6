#!/usr/bin/env bash
# README command (2): installs what is missing, builds, and runs the whole test suite.
# Tests that need ../shared skip with the reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DFACEMAG_BUILD_TESTS=ON -DFACEMAG_BUILD_BENCH=ON
# From npm into build/npm: playwright-core drives Debian's Chromium in the web page's test;
# onnxruntime-node runs the exported ONNX files (its install script only fetches GPU binaries from
# nuget.org, the CPU ones ship in the package, so scripts are skipped). Without npm those checks
# skip and say why.
if command -v npm > /dev/null; then
  [ -d build/npm/node_modules/playwright-core ] ||
    npm install --prefix build/npm --no-audit --no-fund --loglevel=error playwright-core@1 ||
    echo "facemag: npm could not install playwright-core; the browser test will skip"
  [ -d build/npm/node_modules/onnxruntime-node ] ||
    npm install --prefix build/npm --no-audit --no-fund --loglevel=error --ignore-scripts \
      onnxruntime-node@1 ||
    echo "facemag: npm could not install onnxruntime-node; the ONNX Runtime checks will skip"
fi
cd build
ctest --output-on-failure --timeout 1200 -j "$(nproc)"
