#!/usr/bin/env bash
# Fine-tunes the real MobileFaceNet (068.ckpt) with the MagFace loss on the people of lfw-half's
# folds 1-3 who have two or more photos, then compares it with the original on the pairs of
# folds 4-5 (LFW's folds hold disjoint people: faces the training never saw). Prints accuracy,
# the error-versus-reject curves (FNMR at FMR 1e-3 as the pairs of smallest magnitude are
# rejected) and writes both plots. Not part of the test suite (about 15 minutes on 2 cores).
#
#   bash bench/finetune_lfw.sh [OUT] [extra facemag train options...]
set -euo pipefail
cd "$(dirname "$0")/.."
FACEMAG=${FACEMAG:-build/facemag}
SHARED=${SHARED:-../shared}
OUT=${1:-build/finetune-lfw}
shift || true
LFW=$(cd "$SHARED/data/lfw-half" && pwd)  # absolute: list paths are read relative to the list
WEIGHTS=$SHARED/weights/mobilefacenet/068.ckpt
mkdir -p "$OUT"

# pairs.txt: a header, then 600 lines per fold. Folds 1-3 are lines 2-1801, folds 4-5 1802-3001.
awk 'NR >= 2 && NR <= 1801 { print $1; if (NF == 4) print $3 }' "$LFW/pairs.txt" | sort -u >"$OUT/people-folds-1-3.txt"
: >"$OUT/train.list"
label=0
while read -r name; do
  photos=("$LFW/images/$name"/*.jpg)
  if ((${#photos[@]} >= 2)); then
    for photo in "${photos[@]}"; do echo "$photo $label" >>"$OUT/train.list"; done
    label=$((label + 1))
  fi
done <"$OUT/people-folds-1-3.txt"
{ printf '2\t300\n'; sed -n '1802,3001p' "$LFW/pairs.txt"; } >"$OUT/pairs-folds-4-5.txt"
echo "training set: $label people, $(wc -l <"$OUT/train.list") photos"

common=(--arch mobilefacenet --landmarks "$LFW/landmarks.txt")
train=("$FACEMAG" train "$OUT/train.list" --out "$OUT/run" --init "$WEIGHTS" --align "${common[@]}")
# MagFace's advice for fine-tuning: l_a below and u_a above the magnitudes the model gives now.
"${train[@]}" --suggest-bounds >"$OUT/bounds.json"
l_a=$(sed 's/.*"l_a":\([0-9.e+-]*\).*/\1/' "$OUT/bounds.json")
u_a=$(sed 's/.*"u_a":\([0-9.e+-]*\).*/\1/' "$OUT/bounds.json")
echo "magnitude bounds: l_a $l_a, u_a $u_a"
start=$(date +%s)
"${train[@]}" --overwrite --imprint --l-a "$l_a" --u-a "$u_a" --epochs 6 --lr 0.001 \
  --lr-drop-epochs 4 --batch 64 "$@"
echo "training took $(($(date +%s) - start)) s"
last=$(ls "$OUT"/run/[0-9]*.pth | tail -1)

evaluate() {  # name weights
  "$FACEMAG" eval pairs --protocol lfw --lfw-pairs "$OUT/pairs-folds-4-5.txt" --root "$LFW/images" \
    "${common[@]}" --weights "$2" --json "$OUT/$1-pairs.json" | grep -E "^(fold|[0-9] |AVE)" || true
  "$FACEMAG" eval erc --lfw-pairs "$OUT/pairs-folds-4-5.txt" --root "$LFW/images" \
    "${common[@]}" --weights "$2" --fmr 0.001 0.01 --plot "$OUT/$1-erc.png" --json "$OUT/$1-erc.json"
}
echo "== original 068.ckpt"; evaluate original "$WEIGHTS"
echo "== fine-tuned $last"; evaluate finetuned "$last"
