"""The PyTorch side of bench/embed_vs_pytorch.sh: inference (eval mode, no autograd) on
synthetic faces of the network's input size: iResNet as MagFace's models/iresnet.py lays it out
(the module of bench/train_peer.py), MobileFaceNet and InceptionResnetV1 (bench/peer_nets.py). Runs PyTorch the ways a user would tune it and reports each; the best is
the peer. Prints one JSON line per variant.

  python3 embed_peer.py --arch iresnet100 --batch 16 --precision bf16 [--repeat 4] [--threads 2]

Variants: "nchw" (the model as loaded), "channels_last", and for bf16 the model cast to
bfloat16 (weights and activations) in both layouts, plus "autocast" (float32 weights, LibTorch's
CPU autocast); "frozen" is torch.jit.trace + torch.jit.freeze (BatchNorm folded into the
convolutions) in channels-last.
"""
import argparse
import json
import resource
import statistics
import time

import torch

from peer_nets import InceptionResnetV1, MobileFaceNet
from train_peer import IResNet

INPUT = {"mobilefacenet": (3, 112, 96), "inception_resnet_v1": (3, 160, 160)}


def build(arch):
    if arch == "mobilefacenet":
        return MobileFaceNet()
    if arch == "inception_resnet_v1":
        return InceptionResnetV1()
    return IResNet(arch)


def measure(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="iresnet100")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--variant", default="all",
                   help="one of nchw, channels_last, autocast, frozen, or all")
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = build(a.arch).eval()
    images = torch.rand(a.batch, *INPUT.get(a.arch, (3, 112, 112)))
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32

    def variant(name):
        cl = torch.channels_last
        if name == "autocast":
            if a.precision != "bf16":
                return None
            net, x = base.to(memory_format=cl), images.contiguous(memory_format=cl)

            def run():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    net(x)
            return run
        fmt = torch.contiguous_format if name == "nchw" else cl
        net = base.to(dtype=dtype, memory_format=fmt)
        x = images.to(dtype).contiguous(memory_format=fmt)
        if name == "frozen":
            with torch.no_grad():
                net = torch.jit.freeze(torch.jit.trace(net, x))
        return lambda: net(x)

    names = ["nchw", "channels_last", "autocast", "frozen"] if a.variant == "all" else [a.variant]
    with torch.inference_mode():
        for name in names:
            fn = variant(name)
            if fn is None:
                continue
            seconds = measure(fn, a.repeat)
            print(json.dumps({"workload": "embed", "peer": "pytorch " + torch.__version__,
                              "variant": name, "model": a.arch, "precision": a.precision,
                              "batch": a.batch, "seconds": seconds,
                              "images_per_s": a.batch / seconds,
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
                  flush=True)


if __name__ == "__main__":
    main()
