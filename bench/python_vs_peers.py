"""Photos -> face -> embedding from a Python loop: the facemag module against the PyTorch pipelines
a Python user would otherwise write, on the same lfw-half photos, threads and network sizes, in the
same run: images/s and peak RSS (issues 40 and 42).

    PYTHONPATH=build/python /usr/bin/python3 bench/python_vs_peers.py \
        [--photos ../shared/data/lfw-half/images] [--count 200] [--repeat 3] [--threads 2] \
        [--sides facemag-facenet-loop,facenet-pytorch,...]

Sides (each repetition runs every side once, in a fresh process, the order rotated from one
repetition to the next; photos/s = N / the time of the N photos after a warm-up on the first
--warmup of them, model loading excluded; the median of the repetitions is reported, peak RSS is
the process's own ru_maxrss, the largest of the repetitions):
  facemag-facenet-loop      per photo: cv2.imread, Detector.detect, Embedder.crop of the first
                            (largest) face, Embedder.embed; InceptionResnetV1 with facemag's
                            formula weights (Embedder.formula, the goldens' deterministic weights).
  facemag-facenet-batch     one Embedder.embed_photos(paths, keep="largest") call: the library's
                            batched path (reads and embeds --batch photos at a time).
  facenet-pytorch           facenet-pytorch's pipeline, re-implemented (facenet-pytorch cannot be
                            installed here): per photo cv2.imread, BGR->RGB, MTCNN.detect
                            (bench/mtcnn_peer.py, faithful to facenet-pytorch's goldens within
                            4e-4 px), extract_face of the first (largest) face (margin 0, 160x160:
                            for a NumPy image facenet-pytorch crops the truncated box and resizes
                            with cv2.INTER_AREA, as facemag does), fixed_image_standardization,
                            InceptionResnetV1 (bench/peer_nets.py, PyTorch's default random
                            initialisation, eval mode, inference_mode) and F.normalize as its
                            forward does.
  facemag-iresnet100-loop   as facemag-facenet-loop with iresnet100 (formula weights): the crop is
                            the ArcFace 112x112 similarity alignment, BGR, x / 255.
  facemag-iresnet100-batch  as facemag-facenet-batch with iresnet100.
  magface                   MagFace inference: the same MTCNN peer, ArcFace 5-point template,
                            Umeyama similarity (least squares, as skimage's SimilarityTransform)
                            + cv2.warpAffine (bilinear, border 0) on the BGR photo, ToTensor
                            (BGR, x / 255, no mean), MagFace's iResNet-100 (bench/train_peer.py,
                            random initialisation, eval mode, inference_mode).
  facemag-detect            detection only: cv2.imread of --batch photos at a time, one
                            Detector.detect(list) call for them (the library's batched MTCNN).
  facenet-pytorch-detect    facenet-pytorch's detection as its users call it: per photo
                            cv2.imread, BGR->RGB, MTCNN.detect (the peer above).
  facemag-mobilefacenet-batch  as facemag-facenet-batch with mobilefacenet (formula weights): the
                            crop is the SphereFace 112x96 similarity alignment.
  mobilefacenet-peer        the same MTCNN peer, SphereFace 5-point template (96x112), Umeyama
                            similarity + cv2.warpAffine on the RGB photo, (x - 127.5) / 128 as the
                            MobileFaceNet_Pytorch repository does, MobileFaceNet (bench/peer_nets.py,
                            random initialisation, eval mode, inference_mode).
Weights do not change the amount of arithmetic; both sides run fp32, batch 1 per face in the loops.
Threads: torch.set_num_threads(N) on the PyTorch sides, facemag.set_threads(N) and
Embedder(threads=N) on facemag's (N = --threads, 2 by default); OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS (Debian's PyTorch runs Linear layers in OpenBLAS) are set to N unless set.
Measure on an otherwise idle machine: with N = the core count, a second busy process makes every
OpenMP barrier wait for a descheduled thread (10-20x slower loops of small operations).
Output: one JSON line per process on stderr as it ends, then one JSON line per side (medians) and a
markdown table with facemag / peer ratios of photos/s and of peak RSS on stdout.
"""
import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# side -> (kind, architecture, the peer it is compared with)
SIDES = {
    "facemag-facenet-loop": ("facemag-loop", "inception_resnet_v1", "facenet-pytorch"),
    "facemag-facenet-batch": ("facemag-batch", "inception_resnet_v1", "facenet-pytorch"),
    "facenet-pytorch": ("facenet-peer", "inception_resnet_v1", None),
    "facemag-iresnet100-loop": ("facemag-loop", "iresnet100", "magface"),
    "facemag-iresnet100-batch": ("facemag-batch", "iresnet100", "magface"),
    "magface": ("magface-peer", "iresnet100", None),
    "facemag-detect": ("facemag-detect", "mtcnn", "facenet-pytorch-detect"),
    "facenet-pytorch-detect": ("detect-peer", "mtcnn", None),
    "facemag-mobilefacenet-batch": ("facemag-batch", "mobilefacenet", "mobilefacenet-peer"),
    "mobilefacenet-peer": ("mobilefacenet-peer", "mobilefacenet", None),
}

# ArcFace / insightface 5-point template of the 112x112 crop (MagFace's alignment).
ARCFACE_112 = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
               [41.5493, 92.3655], [70.7299, 92.2041]]
# SphereFace / MobileFaceNet 5-point template of the 96x112 crop.
SPHEREFACE_96X112 = [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                     [33.5493, 92.3655], [62.7299, 92.2041]]


def photo_list(a):
    photos = sorted(str(f) for f in pathlib.Path(a.photos).rglob("*.jpg"))[: a.count]
    if not photos:
        sys.exit(f"no .jpg under {a.photos}")
    return photos


def similarity(src, dst):
    """Umeyama's least-squares similarity (rotation, uniform scale, translation) taking src to
    dst, as skimage.transform.SimilarityTransform.estimate: the 2 x 3 matrix."""
    import numpy as np

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[1] = -1
    u, sv, vt = np.linalg.svd(cov)
    rot = u @ np.diag(sign) @ vt
    scale = (sv * sign).sum() / s.var(0).sum()
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


# -- the sides, each run in its own process -------------------------------------------------------

def facemag_side(kind, arch, a, photos):
    """Returns (load seconds, run(paths) -> (faces, sum of the first boxes), versions)."""
    import cv2

    import facemag

    t0 = time.perf_counter()
    facemag.set_threads(a.threads)
    detector = facemag.Detector(mtcnn_dir=a.mtcnn)
    embedder = None if kind == "facemag-detect" else facemag.Embedder.formula(
        arch, threads=a.threads, batch=a.batch)
    load = time.perf_counter() - t0

    def loop(paths):
        faces, box_sum = 0, 0.0
        for path in paths:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            found = detector.detect(bgr, bgr=True)
            if found:
                embedding = embedder.embed(embedder.crop(bgr, found[0], bgr=True), bgr=True)
                faces += embedding.shape[0]
                box_sum += float(found[0].box.astype("float64").sum())
        return faces, box_sum

    def batch(paths):
        result = embedder.embed_photos(paths, detector=detector, keep="largest")
        return len(result), sum(float(f.detection.box.astype("float64").sum()) for f in result.faces)

    def detect(paths):
        faces, box_sum = 0, 0.0
        for start in range(0, len(paths), a.batch):
            images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths[start:start + a.batch]]
            for found in detector.detect(images, bgr=True):
                if found:
                    faces += 1
                    box_sum += float(found[0].box.astype("float64").sum())
        return faces, box_sum

    versions = {"facemag": facemag.__version__, "cpu": facemag.cpu_model_name(),
                "kernels": facemag.cpu_kernel_family()}
    if embedder is not None:
        versions.update(model=embedder.name, precision=embedder.precision)
    runs = {"facemag-loop": loop, "facemag-batch": batch, "facemag-detect": detect}
    return load, runs[kind], versions


def peer_side(kind, arch, a, photos):
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mtcnn_peer import MtcnnPeer

    t0 = time.perf_counter()
    torch.set_num_threads(a.threads)
    mtcnn = MtcnnPeer(a.mtcnn)
    if kind == "facenet-peer":
        from peer_nets import InceptionResnetV1
        net = InceptionResnetV1().eval()
    elif kind == "mobilefacenet-peer":
        from peer_nets import MobileFaceNet
        net = MobileFaceNet().eval()
    elif kind == "detect-peer":
        net = None
    else:
        from train_peer import IResNet
        net = IResNet(arch).eval()
    load = time.perf_counter() - t0
    template = np.array(SPHEREFACE_96X112 if kind == "mobilefacenet-peer" else ARCFACE_112)

    def facenet_input(rgb, box):
        # extract_face(img, box, image_size=160, margin=0) for a NumPy image, then
        # fixed_image_standardization.
        h, w = rgb.shape[:2]
        x1, y1 = int(max(box[0], 0)), int(max(box[1], 0))
        x2, y2 = int(min(box[2], w)), int(min(box[3], h))
        face = cv2.resize(rgb[y1:y2, x1:x2], (160, 160), interpolation=cv2.INTER_AREA)
        face = torch.from_numpy(np.float32(face).transpose(2, 0, 1).copy())
        return ((face - 127.5) / 128.0).unsqueeze(0)

    def magface_input(bgr, points):
        m = similarity(points.astype(np.float64), template)
        crop = cv2.warpAffine(bgr, m, (112, 112), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return torch.from_numpy(crop).permute(2, 0, 1).contiguous().float().div(255).unsqueeze(0)

    def mobilefacenet_input(rgb, points):
        m = similarity(points.astype(np.float64), template)
        crop = cv2.warpAffine(rgb, m, (96, 112), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        face = torch.from_numpy(crop).permute(2, 0, 1).contiguous().float()
        return ((face - 127.5) / 128.0).unsqueeze(0)

    def loop(paths):
        faces, box_sum = 0, 0.0
        with torch.inference_mode():
            for path in paths:
                bgr = cv2.imread(path, cv2.IMREAD_COLOR)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                boxes, _, points = mtcnn.detect(rgb)
                if boxes is None:
                    continue
                if kind == "facenet-peer":
                    F.normalize(net(facenet_input(rgb, boxes[0])), p=2, dim=1)
                elif kind == "mobilefacenet-peer":
                    net(mobilefacenet_input(rgb, points[0]))
                elif kind == "magface-peer":
                    net(magface_input(bgr, points[0]))
                faces += 1  # the first face, embedded above (detect-peer: detected only)
                box_sum += float(boxes[0].astype(np.float64).sum())
        return faces, box_sum

    return load, loop, {"torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__}


def run_side(name, a):
    """In the child process: load, warm up, time the N photos, print one JSON line."""
    kind, arch, _ = SIDES[name]
    photos = photo_list(a)
    side = facemag_side if kind.startswith("facemag") else peer_side
    load, run, versions = side(kind, arch, a, photos)
    run(photos[: a.warmup])
    t0 = time.perf_counter()
    faces, box_sum = run(photos)
    seconds = time.perf_counter() - t0
    print(json.dumps({"side": name, "arch": arch, "photos": len(photos), "faces": faces,
                      "first_box_sum": round(box_sum, 3), "seconds": seconds,
                      "photos_per_s": len(photos) / seconds, "load_s": load,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": a.threads, **versions}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=str(SHARED / "data" / "lfw-half" / "images"))
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="facemag's batch (embed_photos)")
    p.add_argument("--warmup", type=int, default=5, help="photos run before timing, per process")
    p.add_argument("--mtcnn", default=str(SHARED / "weights" / "mtcnn"))
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated, of: " + ", ".join(SIDES))
    p.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side in this process
    a = p.parse_args()
    if a.side:
        run_side(a.side, a)
        return

    sides = [s.strip() for s in a.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        p.error(f"unknown side(s) {unknown}; known: {', '.join(SIDES)}")
    photos = photo_list(a)
    print(json.dumps({"photos": len(photos), "from": a.photos, "repeat": a.repeat, "threads": a.threads,
                      "cores": os.cpu_count(), "batch": a.batch, "warmup": a.warmup,
                      "python": platform.python_version(), "sides": sides}), flush=True)
    forwarded = ["--photos", a.photos, "--count", str(a.count), "--threads", str(a.threads),
                 "--batch", str(a.batch), "--warmup", str(a.warmup), "--mtcnn", a.mtcnn]
    env = dict(os.environ)
    if a.threads > 0:  # OpenMP (LibTorch, PyTorch) and OpenBLAS (PyTorch's Linear) pools alike
        env.setdefault("OMP_NUM_THREADS", str(a.threads))
        env.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))
    runs = {s: [] for s in sides}
    for r in range(a.repeat):
        order = sides[r % len(sides):] + sides[: r % len(sides)]
        for name in order:
            out = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--side", name,
                                  *forwarded], check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
            record = json.loads(out.strip().splitlines()[-1])
            record["rep"] = r
            print(json.dumps(record), file=sys.stderr, flush=True)
            runs[name].append(record)

    summary = {}
    for name, records in runs.items():
        rates = [x["photos_per_s"] for x in records]
        last = records[-1]
        summary[name] = {
            "side": name, "arch": SIDES[name][1], "photos": last["photos"], "faces": last["faces"],
            "first_box_sum": last["first_box_sum"], "photos_per_s": statistics.median(rates),
            "min": min(rates), "max": max(rates), "repeat": len(rates),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in records),
            "load_s": statistics.median(x["load_s"] for x in records), "threads": a.threads,
            **{k: last[k] for k in ("facemag", "torch", "cpu", "kernels", "model") if k in last}}
        print(json.dumps(summary[name]), flush=True)

    print()
    print("| side | model | photos/s (median) | spread | faces | peak RSS MB | photos/s vs peer | RSS vs peer |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in summary.items():
        peer = summary.get(SIDES[name][2]) if SIDES[name][2] else None
        speed = f"{s['photos_per_s'] / peer['photos_per_s']:.2f}x" if peer else ("peer" if not SIDES[name][2] else "-")
        rss = f"{s['peak_rss_mb'] / peer['peak_rss_mb']:.2f}x" if peer else ("peer" if not SIDES[name][2] else "-")
        print(f"| {name} | {s['arch']} | {s['photos_per_s']:.1f} | {s['min']:.1f}-{s['max']:.1f} | "
              f"{s['faces']}/{s['photos']} | {s['peak_rss_mb']:.0f} | {speed} | {rss} |")


if __name__ == "__main__":
    main()
