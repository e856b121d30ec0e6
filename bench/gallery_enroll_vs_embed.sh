#!/usr/bin/env bash
# Enrolment throughput against the embedding pipeline alone, same photos, same run:
#   bash bench/gallery_enroll_vs_embed.sh PHOTO_FOLDER [ROUNDS]
# (PHOTO_FOLDER: one sub-folder per person, e.g. one photo per person of ../shared/data/lfw-half.)
# Prints faces/s of `facemag embed` (detect, align, embed, write JSON Lines) and of
# `facemag gallery enroll --by-folder` (the same, plus SHA-256 of each photo and the SQLite
# transactions) into a fresh gallery each round, and their ratio; model loading included in both.
set -euo pipefail
folder=$1
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
facemag=${FACEMAG:-$root/build/facemag}
shared=${FACEMAG_SHARED:-$root/../shared}
model=(--arch mobilefacenet --weights "$shared/weights/mobilefacenet/068.ckpt" --mtcnn "$shared/weights/mtcnn" --flip)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'; }
faces=0
embed_times=() enroll_times=()
for ((r = 0; r < rounds; r++)); do
  embed_times+=("$(seconds "$facemag" embed "$folder" --keep center "${model[@]}")")
  rm -f "$work/g.db"*
  "$facemag" gallery create "$work/g.db" "${model[@]}" >/dev/null
  enroll_times+=("$(seconds "$facemag" gallery enroll "$work/g.db" "$folder" --by-folder "${model[@]}")")
  faces=$("$facemag" gallery list "$work/g.db" 2>/dev/null | python3 -c 'import sys,json; print(sum(json.loads(l)["faces"] for l in sys.stdin))')
done
embed=$(printf '%s\n' "${embed_times[@]}" | median)
enroll=$(printf '%s\n' "${enroll_times[@]}" | median)
awk -v f="$faces" -v a="$embed" -v b="$enroll" 'BEGIN {
  printf "{\"faces\": %d, \"embed_s\": %.2f, \"enroll_s\": %.2f, \"embed_faces_per_s\": %.1f, \"enroll_faces_per_s\": %.1f, \"enroll_over_embed\": %.3f}\n", f, a, b, f / a, f / b, a / b }'
