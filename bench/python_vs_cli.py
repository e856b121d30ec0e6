"""Throughput of the Python module against the CLI on the same photos, model and threads: does the
binding add anything? Photos -> MTCNN -> aligned crops -> embeddings, one face per photo
(keep="center"), in the same process run after run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_vs_cli.py \
        [--photos ../shared/data/lfw-half/images] [--count 400] [--repeat 3] \
        [--arch mobilefacenet --weights ../shared/weights/mobilefacenet/068.ckpt]

Sides, alternated within each repetition (median of the repetitions reported):
  cli            `facemag embed PHOTOS --keep center --npy F` as a process; its photos/s exclude
                 start-up, model loading and the first chunk's warm-up:
                 (N - B) / (t(N photos) - t(the first B photos)), B = --batch.
  py-call        one Embedder.embed_photos(paths) call (the library's FileEmbedder, as the CLI).
  py-chunks      a Python loop over chunks of --batch paths, one embed_photos() per chunk.
  py-per-photo   a Python loop over photos: Detector.detect, Embedder.crop, Embedder.embed per
                 photo (what a user writes first; no batching, so slower by design: measured once).
Peak RSS: the CLI's process (getrusage of children), the Python process (facemag.peak_rss_mb()).
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=str(REPO.parent / "shared" / "data" / "lfw-half" / "images"))
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--arch", default="mobilefacenet")
    p.add_argument("--weights", default=str(REPO.parent / "shared" / "weights" / "mobilefacenet" / "068.ckpt"))
    p.add_argument("--mtcnn", default=str(REPO.parent / "shared" / "weights" / "mtcnn"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--cli", default=str(REPO / "build" / "facemag"))
    a = p.parse_args()

    import numpy as np

    import facemag

    photos = sorted(str(f) for f in pathlib.Path(a.photos).rglob("*.jpg"))[: a.count]
    model = ["--arch", a.arch, "--weights", a.weights, "--mtcnn", a.mtcnn, "--threads", str(a.threads),
             "--batch", str(a.batch)]
    threads = facemag.set_threads(a.threads)
    detector = facemag.Detector(mtcnn_dir=a.mtcnn)
    embedder = facemag.Embedder(arch=a.arch, weights=a.weights, threads=a.threads, batch=a.batch)
    print(json.dumps({"cpu": facemag.cpu_model_name(), "kernels": facemag.cpu_kernel_family(),
                      "cores": os.cpu_count(), "threads": threads,
                      "model": embedder.name, "precision": embedder.precision, "photos": len(photos),
                      "batch": a.batch, "facemag": facemag.__version__, "numpy": np.__version__,
                      "python": sys.version.split()[0]}))

    tmp = pathlib.Path(tempfile.mkdtemp())

    def cli(paths):
        t0 = time.perf_counter()
        subprocess.run([a.cli, "embed", *paths, "--keep", "center", *model,
                        "--npy", str(tmp / f"cli{len(paths)}.npy"),
                        "--out", os.devnull], check=True, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def py_call():
        t0 = time.perf_counter()
        faces = embedder.embed_photos(photos, detector=detector, keep="center")
        return time.perf_counter() - t0, faces

    def py_chunks():
        t0 = time.perf_counter()
        for i in range(0, len(photos), a.batch):
            embedder.embed_photos(photos[i:i + a.batch], detector=detector, keep="center")
        return time.perf_counter() - t0

    def py_per_photo():
        t0 = time.perf_counter()
        for path in photos:
            found = detector.detect(path)
            if found:
                embedder.embed(embedder.crop(path, found[0], bgr=True), bgr=True)
        return time.perf_counter() - t0

    embedder.embed_photos(photos[:a.batch], detector=detector)  # warm-up (oneDNN primitives)
    rates = {"cli": [], "py-call": [], "py-chunks": []}
    for _ in range(a.repeat):
        whole, first = cli(photos), cli(photos[:a.batch])
        rates["cli"].append((len(photos) - a.batch) / (whole - first))
        seconds, faces = py_call()
        rates["py-call"].append(len(photos) / seconds)
        rates["py-chunks"].append(len(photos) / py_chunks())
    same = np.array_equal(faces.embeddings, np.load(tmp / f"cli{len(photos)}.npy"))
    per_photo = len(photos) / py_per_photo()
    cli_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cli_rate = statistics.median(rates["cli"])
    print(f"{'side':14} {'photos/s':>9} {'vs cli':>7} {'spread':>15}  peak RSS MB")
    for side, values in rates.items():
        med = statistics.median(values)
        rss = cli_rss if side == "cli" else facemag.peak_rss_mb()
        print(f"{side:14} {med:9.1f} {med / cli_rate:6.3f}x {min(values):6.1f}-{max(values):<7.1f}  {rss:.0f}")
    print(f"{'py-per-photo':14} {per_photo:9.1f} {per_photo / cli_rate:6.3f}x {'(once)':>15}")
    print(f"faces: {len(faces)}; embed_photos == CLI --npy bit for bit: {same}")


if __name__ == "__main__":
    main()
