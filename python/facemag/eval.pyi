"""facemag.eval: evaluation on NumPy arrays; results are the dicts of `facemag eval ... --json`."""
from typing import Any, Dict, Optional, Sequence

import numpy.typing as npt

def pairs(
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    pair_index: Optional[npt.ArrayLike] = None,
    *,
    protocol: str = "magface",
    folds: int = 10,
    subtract_mean: bool = True,
    fmrs: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4),
) -> Dict[str, Any]:
    """{"kfold": {...} or "lfw": {...}, "roc": {auc, eer, tar_at_fmr, ...}}."""

def erc(
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    pair_index: Optional[npt.ArrayLike] = None,
    *,
    fmrs: Sequence[float] = (1e-3,),
    random_repeats: int = 20,
    quality: Optional[Sequence[float]] = None,
) -> Dict[str, Any]:
    """{"steps": [...], "spearman_genuine", "mean_fnmr_0_40"}."""

def ijb(
    features: npt.ArrayLike, meta: str, *, type: str = "c", quality_weighted: bool = False
) -> Dict[str, Any]:
    """{type, quality_weighted, images, templates, pairs, tar_at_far: [...], auc}."""

def cluster(embeddings: npt.ArrayLike, threshold: float, *, method: str = "auto") -> Dict[str, Any]:
    """{"labels": N int64 array, "groups": [{faces: [...], mean_similarity}], "method"}."""

def cluster_scores(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> Dict[str, Any]:
    """{groups, identities, pairwise: {precision, recall, f}, bcubed: {...}, nmi}."""
