#!/usr/bin/env bash
# README command (1): installs dependencies, builds, and runs the main job: MagFace quality of
# the aligned faces in ../shared/data/magface-toy (or the folder given as $1), best first.
#
# Weights: $FACEMAG_HOME/magface-iresnet100.pth when present (MagFace's magface_epoch_00025.pth
# renamed); otherwise an iresnet18 of deterministic *untrained* formula weights is written and
# used, so the numbers then only show that the pipeline runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
faces=${1:-../shared/data/magface-toy}
if [ -n "${FACEMAG_HOME:-}" ] && [ -f "$FACEMAG_HOME/magface-iresnet100.pth" ]; then
  ./build/facemag quality --aligned --sort --arch iresnet100 --weights "$FACEMAG_HOME/magface-iresnet100.pth" "$faces"
else
  echo "facemag: no \$FACEMAG_HOME/magface-iresnet100.pth; using untrained formula weights (numbers show the pipeline only)" >&2
  ./build/facemag formula-weights --arch iresnet18 --out build/formula-iresnet18.pth
  ./build/facemag quality --aligned --sort --arch iresnet18 --weights build/formula-iresnet18.pth "$faces"
fi
