#!/usr/bin/env bash
# Clustering at 10k / 100k / 1M synthetic faces (bench_cluster.cpp's photo library): facemag's
# graph average linkage, Chinese whispers on the same graph, exact average linkage where its
# matrix fits, and scikit-learn's AgglomerativeClustering / DBSCAN on the same embeddings where
# they fit. One JSON line per run (one process each, so peak RSS is the method's own).
#
#   bench/cluster_scale.sh [BUILD_DIR] [SIZES...]     (default: build 10000 100000 1000000)
set -euo pipefail
build=${1:-build}; shift || true
sizes=("${@:-10000 100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
threshold=${THRESHOLD:-0.35}
data=$(mktemp -d); trap 'rm -rf "$data"' EXIT
for n in "${sizes[@]}"; do
  "$build/bench/facemag_cluster_bench" "$n" --method graph --threshold "$threshold" --write "$data"
  "$build/bench/facemag_cluster_bench" "$n" --method whispers --threshold "$threshold"
  if ((n <= 20000)); then
    "$build/bench/facemag_cluster_bench" "$n" --method exact --threshold "$threshold"
    /usr/bin/python3 "$(dirname "$0")/cluster_peer.py" "$data" agglomerative "$threshold"
  fi
  if ((n <= 100000)); then
    /usr/bin/python3 "$(dirname "$0")/cluster_peer.py" "$data" dbscan "$threshold"
  fi
done
