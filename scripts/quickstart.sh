#!/usr/bin/env bash
# README command (1): installs dependencies, builds the library and the CLI (no tests or
# benchmarks: scripts/test.sh builds those), installs `facemag` on the PATH, registers the bundled
# real models as the defaults, installs the Python module (import facemag) for Debian's python3, and
# runs the main job: finds the faces in photos, embeds them with a real trained recognizer and
# groups them by person, saying how sure each assignment is.
#
#   bash scripts/quickstart.sh [PHOTOS...]     default: ../shared/data/faces-casia
#
# Models go to $FACEMAG_HOME (default ~/.facemag): MTCNN into mtcnn/, MobileFaceNet into the model
# store as its default model. Afterwards `facemag cluster ~/Photos` works from any folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DFACEMAG_BUILD_TESTS=OFF -DFACEMAG_BUILD_BENCH=OFF
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO cmake --install build --prefix "${FACEMAG_PREFIX:-/usr/local}" > /dev/null
facemag=$(command -v facemag || echo ./build/facemag)
echo "facemag: installed $facemag"
# The same install put the Python module where Debian's python3 finds packages under the prefix.
if py=$(/usr/bin/python3 -c 'import facemag, os; print(os.path.dirname(facemag.__file__))' 2>&1 | tail -n 1); then
  echo "facemag: Python module installed in $py (import facemag)"
else
  echo "facemag: the Python module is not importable by /usr/bin/python3 ($py); with a prefix other" \
    "than /usr/local, add PREFIX/lib/python3.*/dist-packages to PYTHONPATH"
fi

home=${FACEMAG_HOME:-$HOME/.facemag}
bundled=../shared/weights
if [ ! -f "$home/mtcnn/onet.pt" ]; then
  mkdir -p "$home/mtcnn"
  cp "$bundled"/mtcnn/{pnet,rnet,onet}.pt "$home/mtcnn/"
fi
if ! "$facemag" models path mobilefacenet-casia > /dev/null 2>&1; then
  "$facemag" models add mobilefacenet-casia "$bundled/mobilefacenet/068.ckpt" --arch mobilefacenet \
    --source "Xiaoccer/MobileFaceNet_Pytorch, model/best/068.ckpt (CASIA-WebFace, LFW 99.30%)"
fi
"$facemag" models default > /dev/null 2>&1 || "$facemag" models default mobilefacenet-casia > /dev/null

photos=("$@")
[ ${#photos[@]} -gt 0 ] || photos=(../shared/data/faces-casia)
"$facemag" cluster "${photos[@]}"
