#!/usr/bin/env python3
"""An IJB-C-sized synthetic set in IJB's layout, for benchmarking `facemag eval ijb` against
MagFace's eval/eval_recognition/eval_ijb.py on the same features (bench/ijb_vs_upstream.sh).

Writes OUT/meta/ijbc_face_tid_mid.txt, OUT/meta/ijbc_template_pair_label.txt, OUT/features.npy
and OUT/feat.list (MagFace's text feature list: name, then the values). Seeded; needs NumPy
(Debian python3-numpy). Defaults are IJB-C's sizes: 227,630 images, 23,124 templates,
15,658,489 pairs.
"""
import argparse
import os

import numpy as np

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("out")
p.add_argument("--images", type=int, default=227630)
p.add_argument("--templates", type=int, default=23124)
p.add_argument("--identities", type=int, default=3531)
p.add_argument("--pairs", type=int, default=15658489)
p.add_argument("--dim", type=int, default=512)
p.add_argument("--seed", type=int, default=7)
a = p.parse_args()
rng = np.random.default_rng(a.seed)
os.makedirs(os.path.join(a.out, "meta"), exist_ok=True)

# Templates: an identity each; images spread over templates (every template gets one), media ids
# per template from a small pool.
template_identity = rng.integers(0, a.identities, a.templates)
image_template = np.concatenate(
    [np.arange(a.templates), rng.integers(0, a.templates, a.images - a.templates)])
rng.shuffle(image_template)
image_media = image_template * 8 + rng.integers(0, 8, a.images)
with open(os.path.join(a.out, "meta", "ijbc_face_tid_mid.txt"), "w") as f:
    for i in range(a.images):
        f.write(f"{i + 1}.jpg {image_template[i] + 1} {image_media[i]}\n")

centres = rng.standard_normal((a.identities, a.dim)).astype(np.float32)
quality = rng.uniform(0.1, 1.0, a.images).astype(np.float32)
feats = np.empty((a.images, a.dim), np.float32)
for s in range(0, a.images, 20000):
    e = min(a.images, s + 20000)
    noise = 1.5 * rng.standard_normal((e - s, a.dim)).astype(np.float32)
    x = quality[s:e, None] * centres[template_identity[image_template[s:e]]] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    feats[s:e] = x * (10 + 30 * quality[s:e, None])
np.save(os.path.join(a.out, "features.npy"), feats)
with open(os.path.join(a.out, "feat.list"), "w") as f:
    for s in range(0, a.images, 5000):
        block = feats[s:s + 5000]
        lines = [f"{s + k + 1}.jpg " + " ".join(f"{v:.7g}" for v in row) + " \n"
                 for k, row in enumerate(block.tolist())]
        f.writelines(lines)

# Pairs: every pair of templates of one identity up to 1 in 100, the rest random impostors.
by_identity = {}
for t, i in enumerate(template_identity):
    by_identity.setdefault(i, []).append(t)
genuine = [(x, y) for ts in by_identity.values() for k, x in enumerate(ts) for y in ts[k + 1:]]
genuine = genuine[: a.pairs // 100]
n_imp = a.pairs - len(genuine)
t1 = rng.integers(0, a.templates, n_imp)
t2 = rng.integers(0, a.templates, n_imp)
same = template_identity[t1] == template_identity[t2]
t2[same] = (t2[same] + 1) % a.templates
g = np.array(genuine, dtype=np.int64).reshape(-1, 2)
p1 = np.concatenate([g[:, 0], t1]) + 1
p2 = np.concatenate([g[:, 1], t2]) + 1
lab = np.concatenate([np.ones(len(g), np.int64),
                      (template_identity[t1] == template_identity[t2]).astype(np.int64)])
order = rng.permutation(len(p1))
with open(os.path.join(a.out, "meta", "ijbc_template_pair_label.txt"), "w") as f:
    for s in range(0, len(order), 1000000):
        idx = order[s:s + 1000000]
        f.write("".join(f"{x} {y} {l}\n" for x, y, l in zip(p1[idx], p2[idx], lab[idx])))
print(f"{a.images} images, {a.templates} templates, {len(p1)} pairs ({len(g)} genuine) in {a.out}")
