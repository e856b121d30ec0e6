"""Bad input raises the exception of the C++ hierarchy with a clear message, never crashes."""
import numpy as np
import pytest

import facemag
from conftest import MOBILEFACENET, MTCNN, SHARED, need


def test_the_hierarchy_mirrors_the_library():
    assert issubclass(facemag.Error, RuntimeError)
    for cls in (facemag.ModelLoadError, facemag.InvalidInputError, facemag.VersionMismatchError,
                facemag.GalleryError):
        assert issubclass(cls, facemag.Error)
    assert issubclass(facemag.InvalidInputError, ValueError)
    assert facemag.InvalidInputError.__module__ == "facemag"


@pytest.fixture(scope="module")
def embedder():
    return facemag.Embedder.formula("iresnet18")


@pytest.mark.parametrize(
    "faces, words",
    [
        (np.zeros((2, 112, 112, 3), np.float32), "expected uint8 pixels (0-255), found dtype float32"),
        (np.zeros((112, 112), np.uint8), "a 2-D array of shape (112, 112) (grayscale?)"),
        (np.zeros((112, 112, 4), np.uint8), "expected an array of shape (H, W, 3), found (112, 112, 4)"),
        (np.zeros((2, 112, 112, 1), np.uint8), "expected an array of shape (N, H, W, 3)"),
        (np.zeros((224, 224, 3), np.uint8)[::2, ::2], "a non-contiguous array"),
        (np.zeros((112, 112, 3), np.uint8).transpose(1, 0, 2), "a non-contiguous array"),
        (np.zeros((100, 100, 3), np.uint8), "faces: image is 100x100, an aligned face for"),
        ("/nonexistent/face.png", "/nonexistent/face.png"),
        ([np.zeros((112, 112, 3), np.uint8), 7], "faces[1]: expected a NumPy uint8 array"),
        (42, "faces: expected a NumPy uint8 array, a path, or a list of them; found int"),
        (np.zeros((0, 112, 112, 3), np.uint8), "an empty array"),
    ],
)
def test_bad_faces_raise_invalid_input_naming_the_problem(embedder, faces, words):
    with pytest.raises(facemag.InvalidInputError) as e:
        embedder.embed(faces)
    assert words in str(e.value)


def test_bad_images_for_the_detector(tmp_path):
    need(MTCNN / "onet.pt")
    detector = facemag.Detector(mtcnn_dir=MTCNN)
    with pytest.raises(facemag.InvalidInputError, match="grayscale"):
        detector.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(facemag.InvalidInputError, match="missing.jpg"):
        detector.detect(tmp_path / "missing.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(facemag.InvalidInputError, match="junk.jpg"):
        detector.detect([np.zeros((50, 50, 3), np.uint8), junk])
    with pytest.raises(facemag.InvalidInputError, match="min_face_size"):
        facemag.Detector(mtcnn_dir=MTCNN, min_face_size=0).detect(np.zeros((50, 50, 3), np.uint8))


def test_bad_models_raise_model_load_or_invalid_input(tmp_path):
    with pytest.raises(facemag.InvalidInputError, match="unknown architecture 'resnet9000'"):
        facemag.Embedder.formula("resnet9000")
    with pytest.raises(facemag.InvalidInputError, match="unknown precision 'fp8'"):
        facemag.Embedder.formula("iresnet18", precision="fp8")
    with pytest.raises(facemag.InvalidInputError, match="batch must be at least 1"):
        facemag.Embedder.formula("iresnet18", batch=0)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage")
    with pytest.raises(facemag.ModelLoadError) as e:
        facemag.Embedder(arch="iresnet18", weights=bad)
    assert "bad.pth" in str(e.value)
    with pytest.raises(facemag.Error):
        facemag.Embedder(arch="iresnet18", weights=tmp_path / "absent.pth")
    with pytest.raises(facemag.ModelLoadError):
        facemag.Detector(mtcnn_dir=tmp_path)
    need(MOBILEFACENET)
    # MobileFaceNet's checkpoint is not an iResNet: a strict load names what does not fit.
    with pytest.raises(facemag.ModelLoadError):
        facemag.Embedder(arch="iresnet18", weights=MOBILEFACENET)


def test_bad_arguments_of_align_verify_and_eval(embedder):
    image = np.zeros((120, 120, 3), np.uint8)
    with pytest.raises(facemag.InvalidInputError, match="5 \\(x, y\\) points"):
        facemag.align(image, np.zeros((4, 2)))
    with pytest.raises(facemag.InvalidInputError, match="nonsense"):
        facemag.align(image, np.zeros((5, 2)), template="nonsense")
    with pytest.raises(facemag.InvalidInputError, match="one embedding"):
        embedder.verify(np.ones((2, 512)), np.ones(512))
    with pytest.raises(facemag.InvalidInputError, match="unknown face choice .everyone."):
        embedder.embed_photos([image], keep="everyone")
    with pytest.raises(facemag.InvalidInputError, match="labels"):
        facemag.eval.pairs(np.ones((20, 8), np.float32), np.array(["a"] * 10))
    with pytest.raises(facemag.InvalidInputError):
        facemag.eval.pairs(np.ones((20, 8), np.float32), np.ones(7, np.int64))
    with pytest.raises(facemag.InvalidInputError, match="clustering method"):
        facemag.eval.cluster(np.ones((4, 8), np.float32), 0.5, method="kmeans")


def test_a_missing_gallery_is_a_gallery_error(tmp_path):
    with pytest.raises(facemag.Error):
        facemag.Gallery.open(str(tmp_path / "none.db"))
