"""Two photos: find the face in each, embed it, print both qualities and whether they show the same
person (what MagFace's inference notebook does, in facemag).

    python3 examples/compare_two_photos.py A.jpg B.jpg [--arch iresnet100 --weights magface.pth]

With no model flags it uses the store's default model (the quick start registers MobileFaceNet);
quality as MagFace defines it needs a MagFace model (iresnet*). Expected on
../shared/data/faces-casia/bruce/001.jpg and .../bruce/002.jpg with MobileFaceNet: one face each,
similarity about 0.6, decision "same".
"""
import argparse

import facemag


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--arch")
    p.add_argument("--weights")
    p.add_argument("--mtcnn", help="folder of pnet.pt, rnet.pt, onet.pt (default ~/.facemag/mtcnn)")
    args = p.parse_args()

    detector = facemag.Detector(mtcnn_dir=args.mtcnn)
    embedder = facemag.Embedder(arch=args.arch, weights=args.weights)
    print(f"model: {embedder.name} ({embedder.architecture}, {embedder.output_size}-d)")

    # One face per photo: the one the photo is about (keep="center").
    faces = embedder.embed_photos([args.a, args.b], detector=detector, keep="center")
    for path, reason in faces.failures:
        raise SystemExit(f"{path}: {reason}")
    if faces.faceless:
        raise SystemExit(f"no face in {[(args.a, args.b)[i] for i in faces.faceless]}")
    for face in faces.faces:
        d = face.detection
        box = ", ".join(f"{v:.1f}" for v in d.box)
        print(f"{face.source}: {face.faces_in_photo} face(s); kept box [{box}], "
              f"detector score {d.score:.4f}, quality (magnitude) {face.quality:.2f}")
    if not embedder.manifest["magnitude_is_quality"]:
        print(f"(note: {embedder.name} is not MagFace-trained: its magnitude is not a calibrated quality)")

    decision = embedder.verify(faces.embeddings[0], faces.embeddings[1])
    print(f"similarity {decision['similarity']:.3f} at threshold {decision['threshold']:.3f}: "
          f"{decision['decision']}")


if __name__ == "__main__":
    main()
