#!/usr/bin/env bash
# Training speed: facemag against PyTorch running MagFace's training step (bench/train_peer.py),
# in the same run, alternating sides, each configuration in its own process (so peak memory is
# its own). Needs Debian's python3-torch.
#
#   bash bench/train_vs_pytorch.sh [archs] [batch] [precisions] [repeat] [layout] [rounds]
#   e.g. bash bench/train_vs_pytorch.sh "iresnet18 iresnet50" 64 "fp32 bf16" 3
# With rounds > 1 the whole comparison runs that many times, alternating sides, and a last table
# compares each side's best round: on a VM whose speed drifts by minutes, a ratio of two single
# runs a few minutes apart can move by 10 % or more.
set -euo pipefail
cd "$(dirname "$0")/.."
FACEMAG=${FACEMAG:-build/facemag}
archs=${1:-"iresnet18 iresnet50"}
batch=${2:-64}
precisions=${3:-"fp32 bf16"}
repeat=${4:-3}
layout=${5:-nchw}  # facemag's activations: nchw (the default of facemag train), channels-last or blocked
rounds=${6:-1}
threads=$(nproc)
# Both sides print one JSON object per line (Python's json.dumps puts a space after colons).
rate() { grep '"workload": *"train"' | sed 's/.*"images_per_s": *\([0-9.e+-]*\).*/\1/'; }
rss() { grep '"workload": *"train"' | sed 's/.*"peak_rss_mb": *\([0-9.e+-]*\).*/\1/'; }
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads"
row() { printf '%-11s %-5s %12s %12s %14s %7s %9s %9s\n' "$@"; }
ratio() { awk -v f="$1" -v b="$2" 'BEGIN { printf "%.2fx", f / b }'; }
larger() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a > b ? a : b) }'; }
declare -A best_fm best_pt best_cl
row arch prec facemag pytorch pytorch_best ratio rss_fm rss_pt
for round in $(seq "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "round $round"
  for arch in $archs; do
    for precision in $precisions; do
      fm=$("$FACEMAG" bench train --arch "$arch" --batch "$batch" --precision "$precision" --repeat "$repeat" --threads "$threads" --layout "$layout")
      pt=$(/usr/bin/python3 bench/train_peer.py --arch "$arch" --batch "$batch" --precision "$precision" --repeat "$repeat" --threads "$threads")
      # PyTorch at its best here: channels-last and glibc told to keep freed activations (what
      # facemag's runtime sets with mallopt); the default allocator unmaps and re-faults them.
      cl=$(MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=68719476736 /usr/bin/python3 \
        bench/train_peer.py --arch "$arch" --batch "$batch" --precision "$precision" --repeat "$repeat" \
        --threads "$threads" --channels-last)
      f=$(echo "$fm" | rate); p=$(echo "$pt" | rate); c=$(echo "$cl" | rate)
      best=$(larger "$p" "$c")
      row "$arch" "$precision" "$(printf %.1f "$f")" "$(printf %.1f "$p")" "$(printf %.1f "$c")" \
        "$(ratio "$f" "$best")" "$(printf %.0f "$(echo "$fm" | rss)")" "$(printf %.0f "$(echo "$pt" | rss)")"
      key="$arch $precision"
      best_fm[$key]=$(larger "$f" "${best_fm[$key]:-}")
      best_pt[$key]=$(larger "$p" "${best_pt[$key]:-}")
      best_cl[$key]=$(larger "$c" "${best_cl[$key]:-}")
    done
  done
done
if [ "$rounds" -gt 1 ]; then
  echo "best of $rounds rounds"
  for arch in $archs; do
    for precision in $precisions; do
      key="$arch $precision"
      f=${best_fm[$key]}; p=${best_pt[$key]}; c=${best_cl[$key]}
      row "$arch" "$precision" "$(printf %.1f "$f")" "$(printf %.1f "$p")" "$(printf %.1f "$c")" \
        "$(ratio "$f" "$(larger "$p" "$c")")" - -
    done
  done
fi
echo "(images/s of training steps, median of $repeat after a warm-up; pytorch: as MagFace runs it (NCHW, default"
echo " allocator); pytorch_best: channels-last + the allocator settings; ratio = facemag ($layout) / pytorch_best)"
