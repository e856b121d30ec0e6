#!/usr/bin/python3
"""scikit-learn's clustering on the same embeddings as facemag_cluster_bench (its --write DIR).

  cluster_peer.py DIR agglomerative|dbscan THRESHOLD

agglomerative: AgglomerativeClustering(linkage="average", metric="cosine",
  distance_threshold=1 - THRESHOLD): the same definition as facemag's exact average linkage.
dbscan: DBSCAN(metric="cosine", eps=1 - THRESHOLD, min_samples=3), as photo applications
  (Immich) cluster faces; noise faces count as groups of one.
Prints one JSON line with the same fields as facemag_cluster_bench.
"""
import json
import resource
import sys
import time

import numpy as np
from sklearn.cluster import DBSCAN, AgglomerativeClustering
from sklearn.metrics import normalized_mutual_info_score


def pair_count(counts):
    return float((counts * (counts - 1) / 2).sum())


def scores(predicted, truth):
    """Pairwise and BCubed F as facemag's score_clustering defines them."""
    _, pred = np.unique(predicted, return_inverse=True)
    _, true = np.unique(truth, return_inverse=True)
    joint = {}
    for p, t in zip(pred, true):
        joint[(p, t)] = joint.get((p, t), 0) + 1
    both = np.array(list(joint.values()), dtype=np.float64)
    pred_sizes = np.bincount(pred).astype(np.float64)
    true_sizes = np.bincount(true).astype(np.float64)
    together, same, agree = pair_count(pred_sizes), pair_count(true_sizes), pair_count(both)
    precision = agree / together if together else 1.0
    recall = agree / same if same else 1.0
    pairwise = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # BCubed: a face's precision is |its group and its person| / |its group|.
    keys = list(joint.keys())
    cell = np.array([joint[k] for k in keys], dtype=np.float64)
    bp = sum(c * c / pred_sizes[k[0]] for k, c in zip(keys, cell)) / len(pred)
    br = sum(c * c / true_sizes[k[1]] for k, c in zip(keys, cell)) / len(pred)
    bcubed = 2 * bp * br / (bp + br)
    return pairwise, bcubed


def main():
    folder, method, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3])
    x = np.load(f"{folder}/embeddings.npy")
    people = np.load(f"{folder}/people.npy")
    start = time.perf_counter()
    if method == "agglomerative":
        labels = AgglomerativeClustering(n_clusters=None, distance_threshold=1 - threshold,
                                         metric="cosine", linkage="average").fit_predict(x)
    else:
        labels = DBSCAN(eps=1 - threshold, min_samples=3, metric="cosine").fit_predict(x)
        noise = labels < 0
        labels[noise] = labels.max() + 1 + np.arange(noise.sum())
    seconds = time.perf_counter() - start
    pairwise, bcubed = scores(labels, people)
    print(json.dumps({
        "faces": len(x), "dim": x.shape[1], "method": "sklearn-" + method,
        "threshold": threshold, "seconds": seconds, "groups": int(len(np.unique(labels))),
        "bcubed_f": bcubed, "pairwise_f": pairwise,
        "nmi": normalized_mutual_info_score(people, labels),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
