"""A gallery made in Python is read by the CLI and back: the same store, the same records."""
import numpy as np
import pytest

import facemag
from conftest import MOBILEFACENET, MTCNN, SHARED, json_lines, need

CASIA = SHARED / "data" / "faces-casia"


def model_flags():
    return ["--arch", "mobilefacenet", "--weights", MOBILEFACENET, "--mtcnn", MTCNN]


def test_python_gallery_is_read_by_the_cli(mobilefacenet, detector, cli, tmp_path):
    need(CASIA / "pam" / "001.jpg")
    db = str(tmp_path / "py.db")
    g = facemag.Gallery.create(db, mobilefacenet)
    assert g.model["model_name"] == mobilefacenet.name
    assert g.model["embedding_size"] == 128
    result = g.enroll(CASIA, mobilefacenet, detector=detector)  # person = first sub-folder
    assert result["added"] == 45 and result["duplicates"] == 0 and result["failures"] == []
    assert {f["person"] for f in result["faces"]} == {"bruce", "neil", "pam"}
    assert all(isinstance(f["face_id"], int) for f in result["faces"])

    # The CLI lists and shows what Python stored, in the same JSON forms.
    out, _ = cli("gallery", "list", db)
    assert json_lines(out) == g.persons()
    assert [p["faces"] for p in g.persons()] == [15, 15, 15]
    out, _ = cli("gallery", "show", db, "pam")
    assert json_lines(out) == g.faces("pam")

    # Searching a photo: the CLI's records and Python's are the same, field for field.
    probe = str(CASIA / "pam" / "001.jpg")
    out, _ = cli("gallery", "search", db, probe, "--top-k", "3", *model_flags())
    answers = g.search_photos([probe], mobilefacenet, detector=detector, top_k=3)
    assert answers["failures"] == []
    assert answers["answers"] == json_lines(out)
    first = answers["answers"][0]
    assert first["decision"] == "match" and first["person"] == "pam"
    assert first["candidates"][0]["best_face_similarity"] == pytest.approx(1.0, abs=1e-5)

    # Searching raw embeddings decides by the same rules.
    emb = mobilefacenet.embed_photos([probe, str(CASIA / "neil" / "003.jpg")], detector=detector)
    found = g.search(emb.embeddings, top_k=2)
    assert [f["person"] for f in found] == ["pam", "neil"]
    one = g.search(emb.embeddings[0])
    assert one["decision"] == "match" and len(one["candidates"]) == 3
    assert g.check() == []

    # Enrolling the same photos again stores nothing twice.
    again = g.enroll(CASIA / "pam", mobilefacenet, detector=detector, person="pam")
    assert again["added"] == 0 and again["duplicates"] == 15

    # Python's management is seen by the CLI.
    g.rename("pam", "pamela")
    g.remove("bruce")
    out, _ = cli("gallery", "list", db)
    assert [p["person"] for p in json_lines(out)] == ["neil", "pamela"]
    out, _ = cli("gallery", "check", db)
    assert "2 people, 30 faces" in out


def test_cli_gallery_is_read_by_python(mobilefacenet, detector, cli, tmp_path):
    need(CASIA / "pam" / "001.jpg")
    db = str(tmp_path / "cli.db")
    cli("gallery", "create", db, *model_flags())
    cli("gallery", "enroll", db, CASIA / "neil", "--person", "neil", *model_flags())
    g = facemag.Gallery.open(db, mobilefacenet)
    assert [(p["person"], p["faces"]) for p in g.persons()] == [("neil", 15)]
    stored = g.faces("neil")
    assert len(stored) == 15 and all(len(f["image_sha256"]) == 64 for f in stored)
    # Python adds a person; the CLI finds them.
    g.enroll([CASIA / "bruce"], mobilefacenet, detector=detector, person="bruce")
    out, _ = cli("gallery", "search", db, CASIA / "bruce" / "004.jpg", *model_flags())
    assert json_lines(out)[0]["person"] == "bruce"
    # The CLI adds a person; Python's open gallery follows the change without reading it all again.
    assert g.index_status()["people"] == 2
    cli("gallery", "enroll", db, CASIA / "pam", "--person", "pam", *model_flags())
    pam = mobilefacenet.embed_photos([str(CASIA / "pam" / "001.jpg")], detector=detector)
    assert g.search(pam.embeddings[0])["person"] == "pam"
    status = g.index_status()
    assert (status["kind"], status["people"], status["full_loads"]) == ("exact", 3, 1)
    assert status["people_followed"] >= 1
    assert g.index_recall(queries=20) == 1.0
    # An hnsw index, saved where asked and read back by the next open.
    saved = tmp_path / "people.hnsw"
    first = facemag.Gallery.open(db, index="hnsw", index_file=str(saved))
    assert first.index_status()["kind"] == "hnsw" and saved.exists()
    again = facemag.Gallery.open(db, index="hnsw", index_file=str(saved))
    assert again.index_status()["from_saved_file"] is True
    assert again.search(pam.embeddings[0])["person"] == "pam"
    # A gallery refuses another model (here: 256-d mirror features), naming both.
    flipped = facemag.Embedder(arch="mobilefacenet", weights=MOBILEFACENET, flip=True)
    with pytest.raises(facemag.GalleryError) as e:
        facemag.Gallery.open(db, flipped)
    assert "256" in str(e.value) and "128" in str(e.value)
    with pytest.raises(facemag.GalleryError, match="exists"):
        facemag.Gallery.create(db, mobilefacenet)
    with pytest.raises(facemag.GalleryError):
        g.remove("nobody")


def test_search_refuses_embeddings_of_another_size(mobilefacenet, tmp_path):
    g = facemag.Gallery.create(str(tmp_path / "g.db"), mobilefacenet)
    with pytest.raises(facemag.Error):
        g.search(np.ones(512, np.float32))
