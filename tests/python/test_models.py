"""Detector, align and Embedder against the goldens of the original Python code (../shared/golden,
tolerances from its README and JSON files) and against the CLI on the same inputs."""
import sys
import threading
import time

import numpy as np
import pytest

import facemag
from conftest import GOLDEN, MOBILEFACENET, MTCNN, SHARED, golden_json, golden_npy, json_lines, need


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


# ---- detection ----

def test_detections_match_facenet_pytorch_golden_on_every_image(detector):
    golden = golden_json("mtcnn/detections.json")  # 60 images, 68 faces
    paths = [SHARED / "data" / g["image"] for g in golden["images"]]
    need(*paths)
    found = detector.detect(paths)
    assert len(found) == len(golden["images"])
    faces = 0
    for g, ours in zip(golden["images"], found):
        assert len(ours) == len(g["faces"]), g["image"]
        for d, ref in zip(ours, g["faces"]):
            assert isinstance(d, facemag.Detection)
            assert d.box.dtype == np.float32 and d.box.shape == (4,)
            assert d.landmarks.dtype == np.float32 and d.landmarks.shape == (5, 2)
            np.testing.assert_allclose(d.box, ref["box"], atol=1.0, rtol=0)
            np.testing.assert_allclose(d.landmarks, ref["landmarks"], atol=1.0, rtol=0)
            assert abs(d.score - ref["prob"]) <= 1e-4
            faces += 1
    assert faces == golden["num_faces"] == 68


def test_array_input_rgb_and_bgr_give_the_detections_of_the_file(detector):
    cv2 = pytest.importorskip("cv2")
    path = SHARED / "data" / "facenet-test-images" / "multiface.jpg"
    need(path)
    bgr = cv2.imread(str(path))
    from_file = detector.detect(path)
    from_bgr = detector.detect(bgr, bgr=True)
    from_rgb = detector.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
    assert len(from_file) == len(from_bgr) == len(from_rgb) == 6
    for a, b, c in zip(from_file, from_bgr, from_rgb):
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.box, c.box)
        np.testing.assert_array_equal(a.landmarks, c.landmarks)
        assert a.score == b.score == c.score


def test_as_arrays_is_facenet_pytorch_detect_layout(detector):
    golden = golden_json("mtcnn/detections.json")
    images = [g for g in golden["images"] if g["image"].startswith("facenet-test-images/")]
    assert len(images) == 5
    for g in images:
        need(SHARED / "data" / g["image"])
        boxes, probs, points = detector.detect(SHARED / "data" / g["image"], as_arrays=True)
        n = len(g["faces"])
        assert boxes.shape == (n, 4) and boxes.dtype == np.float32
        assert probs.shape == (n,) and probs.dtype == np.float32
        assert points.shape == (n, 5, 2) and points.dtype == np.float32
        np.testing.assert_allclose(boxes, [f["box"] for f in g["faces"]], atol=1.0, rtol=0)
        np.testing.assert_allclose(probs, [f["prob"] for f in g["faces"]], atol=1e-4, rtol=0)
        np.testing.assert_allclose(points, [f["landmarks"] for f in g["faces"]], atol=1.0, rtol=0)
    # No face: facenet-pytorch's (None, [None], None).
    assert detector.detect(np.zeros((200, 300, 3), np.uint8), as_arrays=True) == (None, [None], None)
    # Several images with different face counts: an object array of the per-image results.
    paths = [SHARED / "data" / g["image"] for g in images]
    boxes, probs, points = detector.detect(paths, as_arrays=True)
    assert boxes.dtype == object and len(boxes) == 5
    for g, b in zip(images, boxes):
        assert b.shape == (len(g["faces"]), 4)


def test_a_batch_array_is_detected_as_its_images(detector):
    photos = golden_json("mtcnn/detections.json")["images"]
    toy = [SHARED / "data" / g["image"] for g in photos if g["image"].startswith("magface-toy/")][:3]
    need(*toy)
    cv2 = pytest.importorskip("cv2")
    images = [cv2.imread(str(p))[:, :, ::-1] for p in toy]
    if len({im.shape for im in images}) != 1:
        pytest.skip("magface-toy photos are not of one size")
    stacked = np.ascontiguousarray(np.stack(images))
    batch = detector.detect(stacked)
    one_by_one = [detector.detect(np.ascontiguousarray(im)) for im in images]
    assert len(batch) == 3
    for a, b in zip(batch, one_by_one):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.box, y.box, atol=1e-3)


# ---- alignment ----

def test_align_matches_the_golden_crops_and_matrices():
    cv2 = pytest.importorskip("cv2")
    golden = golden_json("align/align.json")
    for face in golden["faces"][::4]:  # 17 of the 68 faces
        photo = SHARED / "data" / face["image"]
        need(photo, GOLDEN / face["png"])
        crop, matrix = facemag.align(photo, np.array(face["landmarks"], np.float32), bgr=True,
                                     return_matrix=True)
        expected = cv2.imread(str(GOLDEN / face["png"]))
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        assert np.abs(crop.astype(float) - expected).mean() <= 1.0, face["png"]
        np.testing.assert_allclose(matrix, face["matrix"], rtol=1e-6, atol=1e-6 * np.abs(face["matrix"]).max())
        # An RGB array comes back in RGB: the same pixels, channels reversed.
        rgb = np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])
        np.testing.assert_array_equal(facemag.align(rgb, face["landmarks"]), crop[:, :, ::-1])


def test_margin_crop_is_the_box_resized():
    image = np.zeros((100, 100, 3), np.uint8)
    image[20:60, 30:70] = 200
    crop = facemag.margin_crop(image, [30, 20, 70, 60], image_size=40)
    assert crop.shape == (40, 40, 3)
    assert (crop == 200).all()


# ---- embeddings ----

@pytest.mark.parametrize("arch", ["iresnet18", "iresnet50"])
def test_iresnet_formula_weights_match_magface_golden(arch):
    ref = golden_npy(f"iresnet/{arch}.npy")
    meta = golden_json(f"iresnet/{arch}.json")
    inputs = [GOLDEN / p for p in meta["inputs"]]
    need(*inputs)
    embedder = facemag.Embedder.formula(arch)
    ours = embedder.embed(inputs)  # files are read as BGR, as MagFace's cv2.imread
    assert ours.shape == (10, 512) and ours.dtype == np.float32
    assert cosine(ours, ref).min() >= 0.99999
    np.testing.assert_allclose(embedder.quality(inputs), meta["norms"], rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ours.astype(np.float64), axis=1), meta["norms"], rtol=1e-4)


def test_inception_resnet_v1_formula_weights_match_facenet_golden():
    meta = golden_json("inception_resnet_v1/inception_resnet_v1.json")
    ref = golden_npy("inception_resnet_v1/embeddings.npy")
    inputs = [GOLDEN / i["file"] for i in meta["inputs"]]
    need(*inputs)
    ours = facemag.Embedder.formula("inception_resnet_v1").embed(inputs)
    # Raw: facenet-pytorch's embedding is its unit vector.
    assert cosine(ours, ref).min() >= 1 - 1e-7


def laplacian_variance(grey):
    """The variance of the 4-neighbour Laplacian, borders mirrored without repeating the edge
    (OpenCV's default BORDER_REFLECT_101 is NumPy's "reflect")."""
    g = np.pad(grey.astype(np.float64), 1, mode="reflect")
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return lap.var()


def test_quality_of_a_model_not_magface_trained_is_the_magnitude_times_the_crops_sharpness(
        mobilefacenet):
    cv2 = pytest.importorskip("cv2")
    meta = golden_json("mobilefacenet/mobilefacenet.json")
    ref = golden_npy("mobilefacenet/embeddings.npy")
    pngs = [GOLDEN / "mobilefacenet" / f["png"] for f in meta["faces"]]
    need(*pngs)
    assert mobilefacenet.quality_source == "magnitude*sharpness"
    assert facemag.Embedder.formula("iresnet18").quality_source == "magnitude"
    bgr = [cv2.imread(str(p)) for p in pngs]  # 112 rows: measured as they are
    sharpness = np.array([laplacian_variance(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)) for b in bgr])
    np.testing.assert_allclose([facemag.crop_sharpness(b, bgr=True) for b in bgr], sharpness,
                               rtol=1e-5)
    expected = np.linalg.norm(ref.astype(np.float64), axis=1) * np.minimum(1, sharpness / 69.0)
    # ../shared/golden/README.md: relative norm error <= 1e-4.
    np.testing.assert_allclose(mobilefacenet.quality(pngs), expected, rtol=1e-4)
    assert (sharpness < 69).any() and (sharpness >= 69).any()  # both sides of the reference


def test_mobilefacenet_real_weights_match_golden_with_rgb_and_bgr_arrays(mobilefacenet):
    cv2 = pytest.importorskip("cv2")
    meta = golden_json("mobilefacenet/mobilefacenet.json")
    ref = golden_npy("mobilefacenet/embeddings.npy")
    ref_flip = golden_npy("mobilefacenet/embeddings_flip.npy")
    pngs = [GOLDEN / "mobilefacenet" / f["png"] for f in meta["faces"]]
    need(*pngs)
    bgr = np.stack([cv2.imread(str(p)) for p in pngs])  # N x 112 x 96 x 3
    assert mobilefacenet.input_size == (112, 96)
    ours = mobilefacenet.embed(bgr, bgr=True)
    assert ours.shape == (len(pngs), 128)
    assert cosine(ours, ref).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)
    # The same faces as RGB arrays and as files: the same bits.
    np.testing.assert_array_equal(mobilefacenet.embed(np.ascontiguousarray(bgr[..., ::-1])), ours)
    np.testing.assert_array_equal(mobilefacenet.embed(pngs), ours)
    # Mirror features (flip=True) concatenate the golden's two outputs.
    flipped = facemag.Embedder(arch="mobilefacenet", weights=MOBILEFACENET, flip=True)
    both = flipped.embed(pngs[:8])
    assert both.shape == (8, 256)
    assert cosine(both[:, 128:], ref_flip[:8]).min() >= 0.99999
    # The caller's array is never modified (no normalisation in place).
    before = bgr.copy()
    mobilefacenet.embed(bgr, bgr=True)
    np.testing.assert_array_equal(bgr, before)


def test_manifest_and_attributes_state_the_contract(mobilefacenet):
    m = mobilefacenet.manifest
    assert m["architecture"] == "mobilefacenet"
    assert m["color_order"] in ("RGB", "rgb")
    assert m["input_width"] == 96 and m["input_height"] == 112
    assert m["embedding_size"] == 128
    assert mobilefacenet.output_size == 128
    assert mobilefacenet.precision == "fp32"
    doc = facemag.Embedder.__doc__
    for words in ("RGB", "bgr=True", "uint8", "112 x 112", "float32", "quality"):
        assert words in doc, words


def test_embed_equals_cli_embed_npy_bit_for_bit(mobilefacenet, cli, tmp_path):
    meta = golden_json("mobilefacenet/mobilefacenet.json")
    pngs = [GOLDEN / "mobilefacenet" / f["png"] for f in meta["faces"]]
    need(*pngs)
    npy = tmp_path / "crops.npy"
    cli("embed", "--aligned", *pngs, "--arch", "mobilefacenet", "--weights", MOBILEFACENET,
        "--npy", npy, "--out", tmp_path / "records.jsonl")
    np.testing.assert_array_equal(mobilefacenet.embed(pngs), np.load(npy))


def test_embed_photos_equals_cli_embed_npy_bit_for_bit(mobilefacenet, detector, cli, tmp_path):
    casia = SHARED / "data" / "faces-casia"
    need(casia)
    photos = sorted(casia.rglob("*.jpg"))
    assert len(photos) == 45
    for keep in ("center", "all"):
        npy = tmp_path / f"{keep}.npy"
        cli("embed", *photos, "--keep", keep, "--arch", "mobilefacenet", "--weights", MOBILEFACENET,
            "--mtcnn", MTCNN, "--npy", npy, "--out", tmp_path / f"{keep}.records.jsonl")
        ours = mobilefacenet.embed_photos(photos, detector=detector, keep=keep)
        np.testing.assert_array_equal(ours.embeddings, np.load(npy))
        rows = json_lines((tmp_path / f"{keep}.records.jsonl").read_text())
        assert [r["path"] for r in rows] == [f.source for f in ours.faces]
        assert [r.get("face", 0) for r in rows] == [f.index for f in ours.faces]
        np.testing.assert_array_equal(ours.qualities, np.float32([r["quality"] for r in rows]))
    assert len(ours) == 46  # neil/010.jpg shows a bystander too
    assert ours.failures == [] and ours.faceless == []
    # Arrays go through the same pipeline: the same faces, the same numbers.
    cv2 = pytest.importorskip("cv2")
    arrays = [np.ascontiguousarray(cv2.imread(str(p))[:, :, ::-1]) for p in photos]
    from_arrays = mobilefacenet.embed_photos(arrays, detector=detector, keep="all")
    np.testing.assert_array_equal(from_arrays.photo, ours.photo)
    assert cosine(from_arrays.embeddings, ours.embeddings).min() >= 0.99999


def test_verify_decides_as_the_cli(mobilefacenet, detector, cli):
    a = SHARED / "data" / "faces-casia" / "bruce" / "001.jpg"
    b = SHARED / "data" / "faces-casia" / "bruce" / "002.jpg"
    need(a, b)
    faces = mobilefacenet.embed_photos([a, b], detector=detector)
    ours = mobilefacenet.verify(faces.embeddings[0], faces.embeddings[1])
    out, _ = cli("verify", a, b, "--arch", "mobilefacenet", "--weights", MOBILEFACENET, "--mtcnn",
                 MTCNN, "--json")
    theirs = json_lines(out)[0]
    assert ours["decision"] == theirs["decision"]
    assert ours["threshold"] == theirs["threshold"]
    # The CLI detects the two photos one by one, embed_photos together: batched convolutions
    # round differently (~1e-5 px on a box), hence not bit for bit here.
    assert ours["similarity"] == pytest.approx(theirs["similarity"], abs=1e-4)
    assert ours["quality_a"] == pytest.approx(theirs["quality_a"], rel=1e-4)


# ---- threads and the GIL ----

def test_two_threads_embedding_at_once_give_the_results_of_one(mobilefacenet):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (64, 112, 96, 3), dtype=np.uint8)
    alone = mobilefacenet.embed(faces)
    results = [None, None]

    def work(i):
        results[i] = mobilefacenet.embed(faces)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(results[0], alone)
    np.testing.assert_array_equal(results[1], alone)


def test_the_gil_is_released_while_the_network_runs():
    embedder = facemag.Embedder.formula("iresnet18", batch=32)
    faces = np.random.default_rng(1).integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)
    embedder.embed(faces[:2])  # warm-up
    done = threading.Event()
    ticks = [0]

    def count():
        while not done.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        # What the counter does in 5 switch intervals while this thread sleeps (GIL free)...
        before = ticks[0]
        time.sleep(5 * sys.getswitchinterval())
        reference = ticks[0] - before
        # ...and while embed() runs (~1 s). Were the GIL held, the counter could run only in the
        # switch intervals around the call (at most ~2 of them, 0.4 x reference).
        before = ticks[0]
        embedder.embed(faces)
        during = ticks[0] - before
    finally:
        done.set()
        counter.join()
    assert during > 2 * reference, (during, reference)
