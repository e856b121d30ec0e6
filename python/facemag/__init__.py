"""facemag: face detection, alignment, recognition with MagFace quality, galleries and evaluation,
from facemag's C++ library (no PyTorch needed at run time).

    import facemag
    detector = facemag.Detector()                  # MTCNN, as facenet-pytorch's
    embedder = facemag.Embedder(model="mobilefacenet-casia")  # or arch=..., weights=...
    faces = embedder.embed_photos(["a.jpg", "b.jpg"], detector=detector)
    faces.embeddings                               # N x D float32, raw (norm = quality)

Images are NumPy uint8 arrays H x W x 3 in RGB order (bgr=True for OpenCV's BGR) or paths.
Errors are facemag.Error and its subclasses ModelLoadError, InvalidInputError (also a
ValueError), VersionMismatchError and GalleryError, with the library's messages.
See docs/python.md.
"""
from ._facemag import (  # noqa: F401
    Detection,
    Detector,
    Embedder,
    Error,
    Gallery,
    GalleryError,
    InvalidInputError,
    ModelLoadError,
    PhotoEmbeddings,
    PhotoFace,
    VersionMismatchError,
    __version__,
    align,
    cpu_kernel_family,
    cpu_model_name,
    crop_sharpness,
    margin_crop,
    peak_rss_mb,
    set_threads,
)
from . import eval  # noqa: F401,E402

__all__ = [
    "Detection",
    "Detector",
    "Embedder",
    "Error",
    "Gallery",
    "GalleryError",
    "InvalidInputError",
    "ModelLoadError",
    "PhotoEmbeddings",
    "PhotoFace",
    "VersionMismatchError",
    "align",
    "cpu_kernel_family",
    "cpu_model_name",
    "crop_sharpness",
    "eval",
    "margin_crop",
    "peak_rss_mb",
    "set_threads",
]
