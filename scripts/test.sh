#!/usr/bin/env bash
# README command (2): installs what is missing, builds, and runs the whole test suite.
# Tests that need ../shared skip with the reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 1200 -j "$(nproc)"
