#!/usr/bin/env bash
# Installs every build and test dependency of facemag from Debian packages.
# Idempotent; run as root (or through sudo) on Debian 12 (bookworm).
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev         # tensor engine for every network (LibTorch 1.13, oneDNN enabled)
  libopenblas0 libopenblas-dev  # without it LibTorch falls back to the reference BLAS (2-5x slower)
  libdnnl-dev          # oneDNN (LibTorch's own CPU kernels) for Winograd float32 convolutions
  libopencv-dev        # image decoding, geometry, drawing
  libzip-dev           # reading PyTorch zip checkpoints with bounded allocations
  libcli11-dev nlohmann-json3-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev       # the gallery's embedded store
  libpqxx-dev postgresql  # the gallery's shared store; tests start their own server
  libfaiss-dev         # the gallery's search index (exact, HNSW, IVF)
  libssl-dev           # SHA-256 of photos and weights (libcrypto)
  libcpp-httplib-dev   # facemag serve
  libonnx-dev          # facemag export onnx (ONNX's protobuf model, checker and shape inference)
  libgloo-dev          # headers of LibTorch's Gloo process group (facemag train --nproc)
  python3-torch python3-opencv  # the peers of bench/ and the test that torch.load reads our checkpoints
  python3-sklearn      # bench/cluster_peer.py: scikit-learn's clustering beside facemag's
  python3-dev pybind11-dev  # the Python module (import facemag), built by the same CMake
  python3-numpy python3-pytest  # its arrays and its tests (tests/python)
  python3-setuptools python3-wheel python3-pip  # `pip install ./python` (setuptools backend)
  chromium             # the web page's browser test (driven by playwright-core from npm)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "facemag: dependencies present"
