"""Evaluation on NumPy arrays, as `facemag eval ...` computes it from files (the same library
functions; results are the dicts of the CLI's --json).

    pairs(features, labels, pair_index=None, *, protocol="magface", folds=10,
          subtract_mean=True, fmrs=[1e-1, 1e-2, 1e-3, 1e-4])
        1:1 verification: MagFace eval_1v1.py's k-fold accuracy ("kfold") or LFW's folds
        ("lfw"), and the ROC ("roc": AUC, EER, TAR at each FMR).
    erc(features, labels, pair_index=None, *, fmrs=[1e-3], random_repeats=20, quality=None)
        Error versus reject as MagFace's eval_quality.py (pairs ranked by the smaller magnitude,
        or with quality= one value per feature row, by the smaller of those).
    ijb(features, meta, *, type="c", quality_weighted=False)
        IJB-B/C 1:1 template verification as MagFace's eval_ijb.py; `meta` is the folder of
        ijb{b,c}_face_tid_mid.txt and ijb{b,c}_template_pair_label.txt, features row i = line i.
    cluster(embeddings, threshold, *, method="auto")
        Average-linkage groups at a mean-cosine threshold: {"labels": N int64, "groups": [...],
        "method": "exact" | "graph"}.
    cluster_scores(predicted, truth)
        Pairwise and BCubed precision/recall/F and NMI of a grouping against identities.

features: N x D embeddings (raw, any scale; float arrays are read as float32); without pair_index
rows 2p and 2p+1 form pair p, else pair_index is P x 2 row numbers; labels: P values 1 (same) / 0.
Bad shapes or values raise facemag.InvalidInputError.
"""
from ._facemag._eval import cluster, cluster_scores, erc, ijb, pairs  # noqa: F401

__all__ = ["pairs", "erc", "ijb", "cluster", "cluster_scores"]
