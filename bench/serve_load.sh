#!/usr/bin/env bash
# Load on `facemag serve` over loopback (issue 16): /v1/embed with aligned faces and /v1/identify
# with photos at concurrency 1, 8 and 32 (a fixed number of requests each), per model, then a
# 60 s mixed run of enrolments and identifications that must lose no acknowledged enrolment.
#
#   bash bench/serve_load.sh [REQUESTS=10000] [MIXED_SECONDS=60]
#
# Models: the real MobileFaceNet (068.ckpt) and InceptionResnetV1 and iResNet100 with formula
# weights (speed does not depend on the weights' values). Run from the repository root after
# the build.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-10000}
mixed=${2:-60}
shared=../shared
cli=./build/facemag
bench=./build/bench/facemag_serve_bench
tmp=$(mktemp -d)
trap 'kill "$(cat "$tmp/server.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$tmp"' EXIT
mtcnn=(--mtcnn "$shared/weights/mtcnn")

start_server() {  # args...: prints the port (the server's pid goes to $tmp/server.pid)
  "$cli" serve --port 0 "$@" > "$tmp/server.out" 2> "$tmp/server.err" &
  echo $! > "$tmp/server.pid"
  for _ in $(seq 600); do
    grep -q listening "$tmp/server.out" 2>/dev/null && break
    sleep 0.1
  done
  sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/server.out" | head -1
}
stop_server() {  # SIGTERM, then wait until it has answered what was in flight and exited
  local pid
  pid=$(cat "$tmp/server.pid")
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
crops=("$shared"/golden/mobilefacenet/inputs/faces-casia__*__00[1-4]__face0.png)
photos=("$shared"/data/faces-casia/*/00[1-3].jpg)

# MobileFaceNet (real weights): embed aligned crops; identify photos against a small gallery.
"$cli" gallery create "$tmp/g.db" --arch mobilefacenet --weights "$shared/weights/mobilefacenet/068.ckpt" "${mtcnn[@]}" > /dev/null
"$cli" gallery enroll "$tmp/g.db" "$shared/data/faces-casia" --by-folder "${mtcnn[@]}" > /dev/null
port=$(start_server --gallery "$tmp/g.db" "${mtcnn[@]}")
"$bench" --port "$port" --route "/v1/embed?aligned=true" $(printf -- '--body %s ' "${crops[@]}") --requests "$requests"
"$bench" --port "$port" --route "/v1/identify" $(printf -- '--body %s ' "${photos[@]}") --requests $((requests / 10))
"$bench" --port "$port" --mixed "$mixed" --enroll-crop "${crops[0]}" $(printf -- '--body %s ' "${photos[@]}")
stop_server

# InceptionResnetV1 and iResNet100, formula weights: embed aligned crops of their input sizes.
for arch in inception_resnet_v1 iresnet100; do
  "$cli" formula-weights --arch "$arch" --out "$tmp/$arch.pth" > /dev/null
  case $arch in
    inception_resnet_v1) align=(--facenet) ;;
    *) align=() ;;
  esac
  "$cli" align "$shared/data/faces-casia/bruce/001.jpg" --out "$tmp/crops-$arch" "${align[@]}" "${mtcnn[@]}" > /dev/null
  crop=$(find "$tmp/crops-$arch" -name '*.png' | head -1)
  port=$(start_server --arch "$arch" --weights "$tmp/$arch.pth" "${mtcnn[@]}")
  "$bench" --port "$port" --route "/v1/embed?aligned=true" --body "$crop" --requests $((requests / 10))
  stop_server
done
