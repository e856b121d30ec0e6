#!/usr/bin/env bash
# `facemag eval ijb` against MagFace's own eval_ijb.py on the same IJB-C-sized synthetic set, in
# one run: wall time and peak memory of each (GNU time), and their printed TARs.
#
#   bash bench/ijb_vs_upstream.sh MAGFACE_CHECKOUT [WORK_DIR]
#
# MAGFACE_CHECKOUT: a clone of IrvingMeng/MagFace (its eval/eval_recognition/eval_ijb.py is run,
# not copied). Needs Debian's python3-numpy, python3-torch, python3-sklearn, python3-tqdm, time.
set -euo pipefail
magface=${1:?MagFace checkout}
work=${2:-/tmp/facemag-ijb-bench}
cd "$(dirname "$0")/.."
[ -f "$work/feat.list" ] || /usr/bin/python3 bench/make_ijb_synthetic.py "$work"
measure() {  # label, command...
  local label=$1; shift
  /usr/bin/time -f "$label: %e s wall, %M KB peak RSS" "$@" > "$work/$label.out" 2> "$work/$label.err" || {
    cat "$work/$label.err"; exit 1; }
  tail -n 1 "$work/$label.err"
  grep -E '^  [0-9]\.[0-9]{4}' "$work/$label.out" | tail -n 1
}
measure facemag-list ./build/facemag eval ijb --meta "$work" --features "$work/feat.list"
measure facemag-npy ./build/facemag eval ijb --meta "$work" --features "$work/features.npy"
measure upstream /usr/bin/python3 "$magface/eval/eval_recognition/eval_ijb.py" \
  --feat_list "$work/feat.list" --base_dir "$work" --type c
