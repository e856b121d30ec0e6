"""Type stubs of facemag's binding (import facemag; these are its contracts).

Images: numpy uint8 arrays H x W x 3, C-contiguous, RGB unless bgr=True (OpenCV's BGR), values
0..255; or paths (str / os.PathLike) decoded by the library (EXIF orientation applied).
Embeddings: float32, raw (never normalised): an embedding's L2 norm is its MagFace quality.
"""
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, os.PathLike]
Image = Union[npt.NDArray[np.uint8], PathLike]
"""H x W x 3 uint8 (RGB unless bgr=True) or a path."""
Images = Union[Image, npt.NDArray[np.uint8], Sequence[Image]]
"""One image, an N x H x W x 3 uint8 array, or a list of images."""
Float32 = npt.NDArray[np.float32]

class Error(RuntimeError):
    """Base of every error facemag raises on purpose (facemag::Error)."""

class ModelLoadError(Error):
    """A model or checkpoint that cannot be read or does not fit its architecture."""

class InvalidInputError(Error, ValueError):
    """A caller's input (image, array, path, list, name) that is malformed or out of range."""

class VersionMismatchError(Error):
    """A file written by an unsupported version of its format."""

class GalleryError(Error):
    """A gallery that cannot be read or written, or one bound to another model."""

def set_threads(threads: int) -> int:
    """LibTorch's thread count for the process (0 = all cores); returns the count in effect."""

def cpu_model_name() -> str: ...
def cpu_kernel_family() -> str: ...
def peak_rss_mb() -> float: ...

class Detection:
    """A detected face. box: float32 [x1, y1, x2, y2] pixels; score: probability 0..1;
    landmarks: float32 5 x 2 (x, y): left eye, right eye, nose, left mouth corner, right mouth
    corner, as seen in the image."""

    def __init__(self, box: npt.ArrayLike, score: float, landmarks: npt.ArrayLike) -> None: ...
    @property
    def box(self) -> Float32: ...
    @property
    def score(self) -> float: ...
    @property
    def landmarks(self) -> Float32: ...
    def to_dict(self) -> Dict[str, Any]: ...

class Detector:
    """MTCNN exactly as facenet-pytorch's (same weights, thresholds, NMS), largest face first.
    Immutable and thread-safe; detect() releases the GIL."""

    def __init__(
        self,
        mtcnn_dir: Optional[PathLike] = None,
        min_face_size: int = 20,
        thresholds: Tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> None:
        """mtcnn_dir: pnet.pt, rnet.pt, onet.pt (default $FACEMAG_HOME/mtcnn).
        Raises ModelLoadError."""
    @overload
    def detect(self, images: Image, *, bgr: bool = False, as_arrays: bool = False) -> List[Detection]: ...
    @overload
    def detect(
        self, images: Sequence[Image], *, bgr: bool = False, as_arrays: bool = False
    ) -> List[List[Detection]]: ...
    def detect(self, images: Images, *, bgr: bool = False, as_arrays: bool = False) -> Any:
        """One image: a list of Detection; several: a list of lists. as_arrays=True: the
        (boxes N x 4, probs N, points N x 5 x 2) float32 of facenet-pytorch's
        MTCNN.detect(img, landmarks=True); (None, [None], None) without a face."""
    @property
    def mtcnn_dir(self) -> str: ...
    @property
    def min_face_size(self) -> int: ...
    @property
    def thresholds(self) -> List[float]: ...
    @property
    def factor(self) -> float: ...

@overload
def align(
    image: Image,
    landmarks: Union[Detection, npt.ArrayLike],
    *,
    template: str = "arcface-112x112",
    bgr: bool = False,
    return_matrix: bool = False,
) -> npt.NDArray[np.uint8]: ...
@overload
def align(
    image: Image,
    landmarks: Union[Detection, npt.ArrayLike],
    *,
    template: str = "arcface-112x112",
    bgr: bool = False,
    return_matrix: bool = True,
) -> Tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]: ...
def crop_sharpness(crop: Image, *, bgr: bool = False) -> float:
    """Variance of the Laplacian of the crop's grey levels at 112 rows (the sharpness factor's)."""
def margin_crop(
    image: Image,
    box: Union[Detection, npt.ArrayLike],
    *,
    image_size: int = 160,
    margin: int = 0,
    bgr: bool = False,
) -> npt.NDArray[np.uint8]:
    """facenet-pytorch's extract_face crop (image_size x image_size x 3 uint8)."""

class PhotoFace:
    photo: int
    """Index of the input photo."""
    source: str
    index: int
    """The face's index in the detector's order (largest first)."""
    faces_in_photo: int
    detection: Detection
    quality: float

class PhotoEmbeddings:
    embeddings: Float32
    """N x D raw embeddings, row i of faces[i]."""
    faces: List[PhotoFace]
    failures: List[Tuple[str, str]]
    """(input, reason) of inputs that could not be read."""
    faceless: List[int]
    """Inputs without a face."""
    @property
    def qualities(self) -> Float32:
        """N float32: each face's quality (Embedder.quality_source)."""
    @property
    def photo(self) -> npt.NDArray[np.int64]: ...
    def __len__(self) -> int: ...

class Embedder:
    """A face recognition model: aligned crops (uint8 H x W x 3, the model's input size: 112 x 112
    iResNet, 96 wide x 112 high MobileFaceNet, 160 x 160 FaceNet; RGB unless bgr=True) in,
    float32 raw embeddings out (their norm is the MagFace quality). Immutable and thread-safe;
    calls that run the network release the GIL."""

    def __init__(
        self,
        arch: Optional[str] = None,
        weights: Optional[PathLike] = None,
        model: Optional[str] = None,
        manifest: Optional[PathLike] = None,
        precision: str = "fp32",
        threads: int = 0,
        batch: int = 16,
        flip: bool = False,
        prewhiten: bool = False,
        verify: bool = True,
        int8_calibration: Optional[PathLike] = None,
        clustering: bool = False,
    ) -> None:
        """arch: iresnet18|34|50|100, mobilefacenet, inception_resnet_v1; weights: checkpoint;
        model: a store name; none: the store's default model. precision: fp32, bf16, int8,
        reference. clustering: embed as `facemag cluster` does (MobileFaceNet: with the mirror
        image). Raises ModelLoadError, InvalidInputError."""
    @staticmethod
    def formula(
        arch: str, precision: str = "fp32", threads: int = 0, batch: int = 16, flip: bool = False
    ) -> "Embedder":
        """Deterministic untrained weights (the goldens'): tests and benchmarks."""
    def embed(self, faces: Images, *, bgr: bool = False) -> Float32:
        """N x D float32 raw embeddings (always 2-D); equal to `facemag embed --aligned --npy`."""
    def quality(self, faces: Images, *, bgr: bool = False) -> Float32:
        """N float32 qualities: the raw embeddings' magnitudes for a MagFace model, else each
        magnitude times its crop's sharpness factor (see quality_source)."""
    def embed_photos(
        self,
        photos: Images,
        *,
        detector: Optional[Detector] = None,
        keep: str = "center",
        bgr: bool = False,
    ) -> PhotoEmbeddings:
        """Detect, align, embed. keep: center | largest | best | all. For paths: exactly
        `facemag embed --keep KEEP --npy`."""
    def crop(self, image: Image, detection: Detection, *, bgr: bool = False) -> npt.NDArray[np.uint8]:
        """The model's input crop of a detected face."""
    def verify(
        self,
        a: npt.ArrayLike,
        b: npt.ArrayLike,
        *,
        threshold: Optional[float] = None,
        fmr: float = 0.0,
    ) -> Dict[str, Any]:
        """`facemag verify` on two raw embeddings: similarity, threshold, decision, qualities."""
    @property
    def manifest(self) -> Dict[str, Any]:
        """name, architecture, input_width, input_height, color_order, pixel_offset, pixel_scale,
        alignment_template, embedding_size, magnitude_is_quality, thresholds, sha256, source..."""
    @property
    def cluster_threshold(self) -> float:
        """The mean cosine at which grouping stops (`facemag cluster`'s default cut)."""
    @property
    def name(self) -> str: ...
    @property
    def quality_source(self) -> str:
        """"magnitude" (MagFace models) or "magnitude*sharpness"."""
    @property
    def architecture(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def output_size(self) -> int: ...
    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width)."""
    @property
    def weights(self) -> str: ...
    @property
    def batch(self) -> int: ...

class Gallery:
    """A persistent 1:N gallery (SQLite file or postgresql:// URL) bound to one model; the store
    `facemag gallery` uses. Results are dicts in the CLI's JSON forms."""

    @staticmethod
    def create(location: str, embedder: Embedder) -> "Gallery": ...
    @staticmethod
    def open(
        location: str, embedder: Optional[Embedder] = None, index: str = "auto", index_file: str = ""
    ) -> "Gallery": ...
    @staticmethod
    def exists(location: str) -> bool: ...
    def enroll(
        self,
        photos: Union[PathLike, Sequence[PathLike]],
        embedder: Embedder,
        *,
        detector: Optional[Detector] = None,
        person: Optional[str] = None,
        keep: str = "center",
        min_quality: float = 0.0,
        force: bool = False,
    ) -> Dict[str, Any]: ...
    @overload
    def search(
        self, embeddings: npt.NDArray[np.floating], *, top_k: int = 5, min_quality: float = 0.0,
        threshold: Optional[float] = None,
    ) -> Any:
        """One D-vector: a dict; N x D: a list of dicts {candidates, decision, person, threshold}."""
    @overload
    def search(self, embeddings: Sequence[float], *, top_k: int = 5, min_quality: float = 0.0,
               threshold: Optional[float] = None) -> Dict[str, Any]: ...
    def search_photos(
        self,
        photos: Union[PathLike, Sequence[PathLike]],
        embedder: Embedder,
        *,
        detector: Optional[Detector] = None,
        top_k: int = 5,
        keep: str = "all",
        min_quality: float = 0.0,
        threshold: Optional[float] = None,
    ) -> Dict[str, Any]: ...
    def persons(self) -> List[Dict[str, Any]]: ...
    def faces(self, person: Optional[str] = None) -> List[Dict[str, Any]]: ...
    def remove(self, person: str) -> None: ...
    def remove_face(self, face_id: int) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def check(self) -> List[str]: ...
    def index_status(self) -> Dict[str, Any]: ...
    def index_recall(self, queries: int = 200, k: int = 10) -> float: ...
    @property
    def model(self) -> Dict[str, Any]: ...
    @property
    def location(self) -> str: ...
    def __len__(self) -> int: ...
