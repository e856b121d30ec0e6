#!/usr/bin/env bash
# README command (1): installs dependencies, builds, and runs the main job: finds the faces in
# photos, embeds them with a real trained recognizer and groups them by person, saying how sure
# each assignment is.
#
#   bash scripts/quickstart.sh [PHOTOS...]     default: ../shared/data/faces-casia
#
# Weights: MTCNN from $FACEMAG_HOME/mtcnn or ../shared/weights/mtcnn; MobileFaceNet from
# $FACEMAG_HOME/mobilefacenet-casia.pth or ../shared/weights/mobilefacenet/068.ckpt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
photos=("$@")
[ ${#photos[@]} -gt 0 ] || photos=(../shared/data/faces-casia)
pick() { for f in "$@"; do [ -e "$f" ] && { echo "$f"; return; }; done; echo "facemag: none of $* exists" >&2; exit 2; }
home=${FACEMAG_HOME:-/nonexistent}
mtcnn=$(pick "$home/mtcnn" ../shared/weights/mtcnn)
weights=$(pick "$home/mobilefacenet-casia.pth" ../shared/weights/mobilefacenet/068.ckpt)
./build/facemag cluster --arch mobilefacenet --weights "$weights" --mtcnn "$mtcnn" "${photos[@]}"
