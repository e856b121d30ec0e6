"""Enrol people from a folder of photos (one sub-folder per person) into a gallery, then ask who is
in another photo: 1:N identification, as `facemag gallery enroll` / `search` do.

    python3 examples/gallery_search.py PEOPLE_FOLDER PROBE.jpg [--gallery g.db] [--arch A --weights W]

The gallery is an SQLite file (default: a temporary one) that the CLI reads too
(`facemag gallery list g.db`). Expected with ../shared/data/faces-casia and its pam/001.jpg as the
probe, MobileFaceNet: 45 faces of 3 people enrolled; the probe's face: "match" pam, with its own
stored face at similarity 1.00.
"""
import argparse
import pathlib
import tempfile

import facemag


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("people")
    p.add_argument("probe")
    p.add_argument("--gallery")
    p.add_argument("--arch")
    p.add_argument("--weights")
    p.add_argument("--mtcnn")
    args = p.parse_args()

    detector = facemag.Detector(mtcnn_dir=args.mtcnn)
    embedder = facemag.Embedder(arch=args.arch, weights=args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        location = args.gallery or str(pathlib.Path(tmp) / "gallery.db")
        if facemag.Gallery.exists(location):
            gallery = facemag.Gallery.open(location, embedder)
        else:
            gallery = facemag.Gallery.create(location, embedder)
        enrolled = gallery.enroll(args.people, embedder, detector=detector)
        print(f"enrolled {enrolled['added']} face(s) ({enrolled['duplicates']} already there, "
              f"{enrolled['refused']} too poor) into {location}")
        for person in gallery.persons():
            print(f"   {person['person']}: {person['faces']} face(s), mean quality "
                  f"{person['mean_quality']:.2f}")

        result = gallery.search_photos([args.probe], embedder, detector=detector, top_k=3)
        for failure in result["failures"]:
            print(f"{failure['path']}: {failure['reason']}")
        for answer in result["answers"]:
            best = answer["candidates"][0] if answer["candidates"] else None
            who = answer.get("person", "-")
            print(f"face {answer['face']} of {answer['path']}: {answer['decision']} {who}"
                  + (f" (template similarity {best['similarity']:.2f}, best face "
                     f"{best['best_face_similarity']:.2f})" if best else ""))


if __name__ == "__main__":
    main()
