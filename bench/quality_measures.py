"""Face-quality measures for a model that is not MagFace-trained, compared (issue 41).

The real MobileFaceNet (068.ckpt) on the lfw-half photos of LFW's folds 1-5 pairs, aligned from
the published landmarks (no mirror features, so a quality is one face's). Each measure gives one
value per photo; `facemag eval erc --quality Q.npy` ranks the pairs of folds 1-3 and of folds 4-5
by it (FNMR at FMR 1e-3 and 1e-2 over 0-40 % rejected). Then, on 300 photos drawn with seed 0,
how often each measure ranks the photo above its degraded copies (Gaussian blur sigma 2, 3, 6;
darkened to 1/4; down-scaled to 1/4), and above all five at once.

Measures:
  magnitude            the raw embedding's L2 norm
  magnitude*sharpness  facemag's quality for models that are not MagFace-trained (Embedder.quality)
  serfiq               SER-FIQ (Terhoerst et al. 2020): 2 sigmoid(-mean pairwise distance) of the
                       unit embeddings of 100 dropout passes (p 0.5) through the last layer
                       (linear1), from the GDC output; PyTorch with this checkpoint (bench/peer_nets.py)
  serfiq_gdc           the same with dropout on conv2's output, through the GDC and linear1
  detector             MTCNN's probability of the photo's centre face (facemag's detector)
  sharpness            variance of the Laplacian of the grey aligned crop (facemag.crop_sharpness)
  size                 eye distance + eye-to-mouth distance in the photo, from the landmarks
  pose                 minus the nose's offset from the face's centre line, in eye distances

  /usr/bin/python3 bench/quality_measures.py [OUT]      (about 4 minutes on 2 cores)
"""
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "build", "python"))
import facemag  # noqa: E402
from peer_nets import MobileFaceNet  # noqa: E402

SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared"))
LFW = os.path.join(SHARED, "data", "lfw-half")
WEIGHTS = os.path.join(SHARED, "weights", "mobilefacenet", "068.ckpt")
FACEMAG = os.environ.get("FACEMAG", os.path.join(ROOT, "build", "facemag"))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "quality-measures")
DEGRADATIONS = ["blur2", "blur3", "blur6", "dark", "small"]


def read_pairs():
    photos, index, pairs, same = [], {}, [], []

    def photo(name, n):
        p = f"{name}/{name}_{int(n):04d}.jpg"
        if p not in index:
            index[p] = len(photos)
            photos.append(p)
        return index[p]

    for line in open(os.path.join(LFW, "pairs.txt")).read().splitlines()[1:3001]:
        f = line.split("\t")
        if len(f) == 3:
            pairs.append((photo(f[0], f[1]), photo(f[0], f[2])))
            same.append(1)
        else:
            pairs.append((photo(f[0], f[1]), photo(f[2], f[3])))
            same.append(0)
    marks = {}
    for line in open(os.path.join(LFW, "landmarks.txt")):
        f = line.split()
        marks[f[0]] = np.array(f[1:], dtype=np.float32).reshape(5, 2)
    return photos, np.array(pairs), np.array(same), [marks[p] for p in photos]


class SerFiq:
    """Dropout passes through MobileFaceNet's last layers, BatchNorms folded (inference)."""

    def __init__(self, passes=100, p=0.5):
        self.net = MobileFaceNet().eval()
        self.net.load_state_dict(torch.load(WEIGHTS, map_location="cpu")["net_state_dict"])
        self.passes, self.p = passes, p
        self.kept = {}
        self.net.conv2.register_forward_hook(lambda m, i, o: self.kept.__setitem__("conv2", o))
        self.net.linear7.register_forward_hook(lambda m, i, o: self.kept.__setitem__("gdc", o))

        def folded(block):
            bn = block.bn
            scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
            return scale, (bn.bias - bn.running_mean * scale).detach()

        s7, self.h7 = folded(self.net.linear7)
        self.k7 = (self.net.linear7.conv.weight.detach()[:, 0] * s7[:, None, None]).flatten(1)
        s1, self.h1 = folded(self.net.linear1)
        self.w1 = self.net.linear1.conv.weight.detach().flatten(1) * s1[:, None]

    def agreement(self, e):
        e = e / e.norm(dim=1, keepdim=True)
        return float(2 * torch.sigmoid(-torch.cdist(e, e).sum() / (self.passes ** 2)))

    def __call__(self, crops_bgr, seed=0):
        x = torch.from_numpy(np.stack([c[:, :, ::-1] for c in crops_bgr]).astype(np.float32))
        x = (x.permute(0, 3, 1, 2) - 127.5) / 128
        g = torch.Generator().manual_seed(seed)
        last, gdc = [], []
        with torch.no_grad():
            features = self.net(x)
            for z in self.kept["gdc"].flatten(1):
                mask = (torch.rand(self.passes, z.numel(), generator=g) >= self.p) / (1 - self.p)
                last.append(self.agreement((mask * z) @ self.w1.T + self.h1))
            for c in self.kept["conv2"].flatten(2):
                mask = (torch.rand(self.passes, *c.shape, generator=g) >= self.p) / (1 - self.p)
                z = ((mask * c) * self.k7).sum(-1) + self.h7
                gdc.append(self.agreement(z @ self.w1.T + self.h1))
        return features.numpy(), np.array(last), np.array(gdc)


def centre_score(detections, shape):
    if not detections:
        return 0.0
    h, w = shape[:2]

    def key(d):  # facemag's --keep center
        b = d.box
        area = (b[2] - b[0]) * (b[3] - b[1])
        return area - 2 * (((b[0] + b[2]) / 2 - w / 2) ** 2 + ((b[1] + b[3]) / 2 - h / 2) ** 2)

    return float(max(detections, key=key).score)


def measure(images, marks, embedder, detector, serfiq):
    crops = [facemag.align(im, lm, template="sphereface-96x112", bgr=True)
             for im, lm in zip(images, marks)]
    raw = embedder.embed(crops, bgr=True)
    magnitude = np.linalg.norm(raw.astype(np.float64), axis=1)
    features, last, gdc = serfiq(crops)
    # The PyTorch network is the same model: its features are facemag's within float32 rounding.
    assert np.abs(features - raw).max() < 2e-3, np.abs(features - raw).max()
    size, pose = [], []
    for lm in marks:
        eyes = np.linalg.norm(lm[1] - lm[0])
        mid_eye, mid_mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
        size.append(eyes + np.linalg.norm(mid_mouth - mid_eye))
        pose.append(-abs(lm[2][0] - (mid_eye[0] + mid_mouth[0]) / 2) / eyes)
    return {
        "magnitude": magnitude,
        "magnitude*sharpness": embedder.quality(crops, bgr=True).astype(np.float64),
        "serfiq": last,
        "serfiq_gdc": gdc,
        "detector": np.array([centre_score(detector.detect(im, bgr=True), im.shape) for im in images]),
        "sharpness": np.array([facemag.crop_sharpness(c, bgr=True) for c in crops]),
        "size": np.array(size),
        "pose": np.array(pose),
    }


def degrade(image, marks, kind):
    if kind.startswith("blur"):
        return cv2.GaussianBlur(image, (0, 0), float(kind[4:])), marks
    if kind == "dark":
        return (image.astype(np.float32) * 0.25).astype(np.uint8), marks
    if kind == "small":
        return cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA), marks * 0.25
    raise ValueError(kind)


def erc(features, pairs, same, quality_file):
    """facemag eval erc's JSON: mean FNMR over 0-40 % rejected by FMR, and the Spearman."""
    report = quality_file + "." + os.path.basename(pairs) + ".json"
    subprocess.run([FACEMAG, "eval", "erc", "--features", features, "--labels", same,
                    "--pair-index", pairs, "--fmr", "0.001", "0.01", "--quality", quality_file,
                    "--json", report], capture_output=True, text=True, check=True)
    with open(report) as f:
        r = json.load(f)
    random = {}  # rejection at random (the same for every measure): mean over 0-40 %
    for fmr in (0.001, 0.01):
        values = [p["random_fnmr"] for step in r["steps"] if step["reject_rate"] <= 0.4 + 1e-9
                  for p in step["points"] if abs(p["fmr"] - fmr) < 1e-12]
        random[fmr] = sum(values) / len(values)
    return {float(k): v for k, v in r["mean_fnmr_0_40"].items()}, r["spearman_genuine"], random


def main():
    os.makedirs(OUT, exist_ok=True)
    facemag.set_threads(2)
    torch.set_num_threads(2)
    photos, pairs, same, marks = read_pairs()
    embedder = facemag.Embedder(arch="mobilefacenet", weights=WEIGHTS)
    detector = facemag.Detector(os.path.join(SHARED, "weights", "mtcnn"))
    serfiq = SerFiq()
    started = time.time()
    images = [cv2.imread(os.path.join(LFW, "images", p)) for p in photos]
    q = measure(images, marks, embedder, detector, serfiq)
    features = os.path.join(OUT, "features.npy")
    np.save(features, embedder.embed([facemag.align(im, lm, template="sphereface-96x112", bgr=True)
                                      for im, lm in zip(images, marks)], bgr=True))
    folds = {"1-3": slice(0, 1800), "4-5": slice(1800, 3000)}
    for name, rows in folds.items():
        np.save(os.path.join(OUT, f"pairs-{name}.npy"), pairs[rows])
        np.save(os.path.join(OUT, f"same-{name}.npy"), same[rows])
    sample = np.random.default_rng(0).choice(len(photos), 300, replace=False)
    above = {k: {} for k in q}
    above_all = {k: np.ones(len(sample), bool) for k in q}
    for kind in DEGRADATIONS:
        copies = [degrade(images[i], marks[i], kind) for i in sample]
        d = measure([c[0] for c in copies], [c[1] for c in copies], embedder, detector, serfiq)
        for k in q:
            wins = q[k][sample] > d[k]
            above[k][kind] = float(wins.mean())
            above_all[k] &= wins
    print(f"measured in {time.time() - started:.0f} s; {len(photos)} photos, 1800 + 1200 pairs")
    print("| measure | folds 1-3: FMR 1e-3 / 1e-2 | folds 4-5: FMR 1e-3 / 1e-2 | Spearman 4-5 | "
          + " | ".join(DEGRADATIONS) + " | all five |")
    print("| --- " * (5 + len(DEGRADATIONS)) + "|")
    table, random_cells = {}, {}
    for k in q:
        quality_file = os.path.join(OUT, f"quality-{k.replace('*', '-')}.npy")
        np.save(quality_file, q[k])
        cells = []
        for name in folds:
            means, spearman, random = erc(features, os.path.join(OUT, f"pairs-{name}.npy"),
                                          os.path.join(OUT, f"same-{name}.npy"), quality_file)
            cells.append(f"{100 * means[0.001]:.2f} / {100 * means[0.01]:.2f}")
            random_cells[name] = f"{100 * random[0.001]:.2f} / {100 * random[0.01]:.2f}"
        ranks = [f"{above[k][kind]:.3f}" for kind in DEGRADATIONS]
        table[k] = {"erc": cells, "spearman": spearman, "above": above[k],
                    "above_all": float(above_all[k].mean())}
        print(f"| {k} | {cells[0]} | {cells[1]} | {spearman:.3f} | " + " | ".join(ranks)
              + f" | {above_all[k].mean():.3f} |")
    print(f"| rejection at random | {random_cells['1-3']} | {random_cells['4-5']} | | | | | | | |")
    table["random"] = {"erc": [random_cells["1-3"], random_cells["4-5"]]}
    with open(os.path.join(OUT, "quality-measures.json"), "w") as f:
        json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
