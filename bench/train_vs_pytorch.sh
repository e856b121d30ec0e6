#!/usr/bin/env bash
# Training speed: facemag against PyTorch running MagFace's training step (bench/train_peer.py),
# in the same run, alternating sides, each configuration in its own process (so peak memory is
# its own). Needs Debian's python3-torch.
#
#   bash bench/train_vs_pytorch.sh [archs] [batch] [precisions] [repeat]
#   e.g. bash bench/train_vs_pytorch.sh "iresnet18 iresnet50" 64 "fp32 bf16" 3
set -euo pipefail
cd "$(dirname "$0")/.."
FACEMAG=${FACEMAG:-build/facemag}
archs=${1:-"iresnet18 iresnet50"}
batch=${2:-64}
precisions=${3:-"fp32 bf16"}
repeat=${4:-3}
layout=${5:-nchw}  # facemag's activations: nchw (the default of facemag train), channels-last or blocked
threads=$(nproc)
# Both sides print one JSON object per line (Python's json.dumps puts a space after colons).
rate() { grep '"workload": *"train"' | sed 's/.*"images_per_s": *\([0-9.e+-]*\).*/\1/'; }
rss() { grep '"workload": *"train"' | sed 's/.*"peak_rss_mb": *\([0-9.e+-]*\).*/\1/'; }
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads"
printf '%-11s %-5s %12s %12s %14s %7s %9s %9s\n' arch prec facemag pytorch pytorch_best ratio rss_fm rss_pt
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
    best=$(awk -v p="$p" -v c="$c" 'BEGIN { print (p > c ? p : c) }')
    printf '%-11s %-5s %12.1f %12.1f %14.1f %6.2fx %9.0f %9.0f\n' "$arch" "$precision" "$f" "$p" "$c" \
      "$(awk -v f="$f" -v b="$best" 'BEGIN { print f / b }')" "$(echo "$fm" | rss)" "$(echo "$pt" | rss)"
  done
done
echo "(images/s of training steps, median of $repeat after a warm-up; pytorch: as MagFace runs it (NCHW, default"
echo " allocator); pytorch_best: channels-last + the allocator settings; ratio = facemag ($layout) / pytorch_best)"
