"""A folder of photos grouped by person, with a similarity heatmap (the Neuromatch face-recognition
tutorial's exercise, in facemag).

    python3 examples/group_by_person.py PHOTOS_FOLDER [--heatmap heatmap.png] [--arch A --weights W]

Every face of every photo is embedded; faces are grouped by average linkage at the model's
clustering threshold (Embedder.cluster_threshold). With matplotlib installed (python3-matplotlib)
--heatmap draws the faces' cosine similarities, sorted by group. Expected on
../shared/data/faces-casia with MobileFaceNet: 46 faces in 13 groups, the three people in groups of
12, 11 and 10 faces, the rest alone or in pairs: the groups `facemag cluster` prints.
"""
import argparse
import pathlib

import numpy as np

import facemag


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos")
    p.add_argument("--heatmap", help="write the similarity heatmap here (PNG; needs matplotlib)")
    p.add_argument("--arch")
    p.add_argument("--weights")
    p.add_argument("--mtcnn")
    args = p.parse_args()

    detector = facemag.Detector(mtcnn_dir=args.mtcnn)
    # As `facemag cluster` embeds (MobileFaceNet: with the mirror image), for its threshold.
    embedder = facemag.Embedder(arch=args.arch, weights=args.weights, clustering=True)
    photos = sorted(str(f) for f in pathlib.Path(args.photos).rglob("*")
                    if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    faces = embedder.embed_photos(photos, detector=detector, keep="all")
    print(f"{len(faces)} faces in {len(photos)} photos ({embedder.name})")

    threshold = embedder.cluster_threshold  # the cut `facemag cluster` makes
    grouped = facemag.eval.cluster(faces.embeddings, threshold)
    groups = grouped["groups"]
    print(f"{len(groups)} group(s) at mean cosine similarity >= {threshold:.2f}")
    root = pathlib.Path(args.photos)
    for number, group in enumerate(groups, 1):
        if len(group["faces"]) < 2:
            continue
        print(f"group {number}: {len(group['faces'])} face(s), mean similarity "
              f"{group['mean_similarity']:.2f}")
        for face in group["faces"][:3]:
            source = pathlib.Path(faces.faces[face["row"]].source).relative_to(root)
            print(f"   {face['similarity']:.2f}  {face['verdict']:6}  {source}")
    alone = sum(len(g["faces"]) == 1 for g in groups)
    print(f"{alone} face(s) alone")

    if args.heatmap:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise SystemExit("--heatmap needs matplotlib (Debian: python3-matplotlib)")
        unit = faces.embeddings / np.linalg.norm(faces.embeddings, axis=1, keepdims=True)
        order = np.argsort(grouped["labels"], kind="stable")
        similarity = unit[order] @ unit[order].T
        fig, ax = plt.subplots(figsize=(7, 6))
        image = ax.imshow(similarity, cmap="viridis", vmin=-0.2, vmax=1)
        fig.colorbar(image, label="cosine similarity")
        ax.set_title(f"{len(faces)} faces sorted by group ({embedder.name})")
        fig.savefig(args.heatmap, dpi=100)
        print(f"heatmap: {args.heatmap}")


if __name__ == "__main__":
    main()
