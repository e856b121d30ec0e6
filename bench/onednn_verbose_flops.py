"""Where a oneDNN pass goes: reads the verbose log of a facemag run (ONEDNN_VERBOSE=1) and prints,
for the last of `--runs` equal passes, the time, arithmetic and GFLOP/s of each kind of primitive
(convolutions by kernel size, stride, depthwise and oneDNN implementation), to read against the
CPU's multiply-add peak (build/bench/facemag_fma_peak). Convolutions that facemag runs itself
(its Winograd layers on AVX2) are not in oneDNN's log: the pass's own time (`seconds` of `facemag
bench embed`) minus the total here is theirs and the LibTorch tail's.

    ONEDNN_VERBOSE=1 build/facemag bench embed --arch mobilefacenet --batch 16 --repeat 3 > log.txt
    python3 bench/onednn_verbose_flops.py log.txt --runs 4 [--layers]

--runs: the passes in the log (bench embed: --repeat plus its warm-up); --layers also lists every
primitive of the last pass.
"""
import argparse
import collections
import re


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log")
    p.add_argument("--runs", type=int, required=True, help="equal passes in the log")
    p.add_argument("--layers", action="store_true", help="list every primitive of the last pass")
    a = p.parse_args()
    rows = [line.strip().split(",") for line in open(a.log) if line.startswith("onednn_verbose,exec")]
    convolutions = [i for i, r in enumerate(rows) if r[3] == "convolution"]
    if not convolutions or len(convolutions) % a.runs:
        raise SystemExit(f"{len(convolutions)} convolutions do not split into {a.runs} equal passes")
    last = rows[convolutions[-(len(convolutions) // a.runs)]:]
    kinds = collections.defaultdict(lambda: [0.0, 0.0])  # kind -> [ms, flop]
    listing = []
    for r in last:
        ms, impl, problem = float(r[-1]), r[4], r[-2]
        flop = 0.0
        if r[3] == "convolution":
            d = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", problem)}
            groups = d.get("g", 1)
            kh, kw = d["kh"], d.get("kw", d["kh"])
            flop = 2.0 * d.get("mb", 1) * d["oc"] * (d["ic"] // groups) * d["oh"] * d.get("ow", d["oh"]) * kh * kw
            kind = f"conv {kh}x{kw} stride {d['sh']}{' depthwise' if groups > 1 else ''} ({impl})"
        else:
            kind = f"{r[3]} ({impl})"
        kinds[kind][0] += ms
        kinds[kind][1] += flop
        listing.append((ms, r[3], impl, problem, flop))
    total_ms = sum(v[0] for v in kinds.values())
    total_flop = sum(v[1] for v in kinds.values())
    print(f"last pass: {total_ms:.2f} ms in oneDNN, {total_flop / 1e9:.2f} GFLOP in its convolutions "
          f"({total_flop / total_ms / 1e6:.1f} GFLOP/s)")
    for kind, (ms, flop) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        rate = f"{flop / ms / 1e6:7.1f} GFLOP/s" if flop else ""
        print(f"{ms:9.2f} ms {100 * ms / total_ms:5.1f} % {flop / 1e9:8.2f} GFLOP {rate}  {kind}")
    if a.layers:
        for ms, primitive, impl, problem, flop in listing:
            rate = f"{flop / ms / 1e6:.1f} GFLOP/s" if flop else ""
            print(f"{ms:8.3f} ms  {primitive:12} {impl:22} {problem:60} {rate}")


if __name__ == "__main__":
    main()
