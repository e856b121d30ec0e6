#!/usr/bin/env bash
# Inference speed and memory: facemag's iResNet against PyTorch (bench/embed_peer.py) in the same
# run, alternating sides, every configuration in its own process (so each peak RSS is its own).
# The peer is PyTorch's best variant for the precision (nchw, channels-last, bf16 cast or
# autocast, jit-frozen; glibc told to keep freed buffers as facemag's runtime does). Needs
# Debian's python3-torch.
#
#   bash bench/embed_vs_pytorch.sh [archs] [batches] [precisions] [repeat]
#   e.g. bash bench/embed_vs_pytorch.sh "iresnet50 iresnet100" "1 16" "fp32 bf16" 4
set -euo pipefail
cd "$(dirname "$0")/.."
FACEMAG=${FACEMAG:-build/facemag}
archs=${1:-"iresnet100"}
batches=${2:-"1 16"}
precisions=${3:-"fp32 bf16"}
repeat=${4:-4}
threads=$(nproc)
field() { grep '"workload": *"embed"' | sed "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/"; }
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads," \
  "oneDNN kernels: $("$FACEMAG" bench embed --batch 1 --repeat 1 | sed -n 's/.*"kernels":"\([^"]*\)".*/\1/p')"
printf '%-10s %-5s %5s %9s %9s %-14s %7s %8s %8s\n' arch prec batch facemag pytorch variant ratio \
  rss_fm rss_pt
for arch in $archs; do
  for precision in $precisions; do
    for batch in $batches; do
      fm=$("$FACEMAG" bench embed --arch "$arch" --batch "$batch" --precision "$precision" \
        --repeat "$repeat" --threads "$threads")
      variants="nchw channels_last frozen"
      [ "$precision" = bf16 ] && variants="nchw channels_last autocast frozen"
      best=0 best_name="" best_rss=0
      for variant in $variants; do
        pt=$(MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=68719476736 /usr/bin/python3 \
          bench/embed_peer.py --arch "$arch" --batch "$batch" --precision "$precision" \
          --variant "$variant" --repeat "$repeat" --threads "$threads")
        rate=$(echo "$pt" | field images_per_s)
        if awk -v r="$rate" -v b="$best" 'BEGIN { exit !(r > b) }'; then
          best=$rate best_name=$variant best_rss=$(echo "$pt" | field peak_rss_mb)
        fi
      done
      f=$(echo "$fm" | field images_per_s)
      printf '%-10s %-5s %5d %9.1f %9.1f %-14s %6.2fx %8.0f %8.0f\n' "$arch" "$precision" "$batch" \
        "$f" "$best" "$best_name" "$(awk -v f="$f" -v b="$best" 'BEGIN { print f / b }')" \
        "$(echo "$fm" | field peak_rss_mb)" "$best_rss"
    done
  done
done
echo "(images/s, median of $repeat after a warm-up; pytorch: its best variant here; ratio = facemag / pytorch;"
echo " rss: peak resident MB of the process, weights included)"
