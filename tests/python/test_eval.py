"""facemag.eval on arrays against the goldens of MagFace's evaluation scripts (eval_1v1.py,
eval_quality.py, eval_ijb.py) and against `facemag eval cluster` on the same features."""
import json

import numpy as np
import pytest

import facemag
from conftest import GOLDEN, golden_json, golden_npy


def test_pairs_reproduce_eval_1v1_fold_accuracies():
    ref = golden_json("eval/eval.json")["pairs600"]["verification"]
    features = golden_npy("eval/pairs600_features.npy")
    issame = golden_npy("eval/pairs600_issame.npy")
    out = facemag.eval.pairs(features, issame)
    kfold = out["kfold"]
    assert kfold["fold_accuracies"] == ref["fold_accuracies"]  # exact: ratios of counts
    assert kfold["mean"] == pytest.approx(ref["mean"], abs=1e-12)
    assert kfold["std"] == pytest.approx(ref["std"], abs=1e-12)
    assert "roc" in out and 0.5 < out["roc"]["auc"] <= 1
    # Booleans and float64 features are read as the CLI reads them; the caller's arrays are kept.
    kept = features.copy()
    again = facemag.eval.pairs(features.astype(np.float64), issame.astype(bool))
    assert again["kfold"]["fold_accuracies"] == ref["fold_accuracies"]
    np.testing.assert_array_equal(features, kept)


def test_erc_reproduces_eval_quality_fnmr_curve():
    ref = golden_json("eval/eval.json")["erc4000"]["error_versus_reject"]
    features = golden_npy("eval/erc_features.npy")
    pairs = golden_npy("eval/erc_pairs.npy")
    issame = golden_npy("eval/erc_issame.npy")
    out = facemag.eval.erc(features, issame, pairs, fmrs=[1e-3])
    fnmr = [s["points"][0]["fnmr"] for s in out["steps"] if s["points"]]
    assert fnmr == ref["fnmr_at_fmr_1e-3"]
    assert [s["reject_rate"] for s in out["steps"]] == pytest.approx(ref["reject_rates"])


def test_erc_ranks_by_a_quality_given_per_row():
    features = golden_npy("eval/erc_features.npy")
    pairs = golden_npy("eval/erc_pairs.npy")
    issame = golden_npy("eval/erc_issame.npy")
    by_magnitude = facemag.eval.erc(features, issame, pairs, fmrs=[1e-3])
    norms = np.linalg.norm(features.astype(np.float32).astype(np.float64), axis=1)
    given = facemag.eval.erc(features, issame, pairs, fmrs=[1e-3], quality=norms)
    assert given["quality_source"] == "quality"
    fnmr = lambda out: [[p["fnmr"] for p in s["points"]] for s in out["steps"]]  # noqa: E731
    assert fnmr(given) == fnmr(by_magnitude)
    worse = facemag.eval.erc(features, issame, pairs, fmrs=[1e-3], quality=-norms)
    assert worse["mean_fnmr_0_40"]["1e-03"] > by_magnitude["mean_fnmr_0_40"]["1e-03"]
    with pytest.raises(facemag.InvalidInputError, match="10 qualities for"):
        facemag.eval.erc(features, issame, pairs, quality=norms[:10])


@pytest.mark.parametrize("qlt", [0, 1])
def test_ijb_reproduces_eval_ijb_tars(qlt):
    ref = golden_json("ijb/ijb.json")["results"][f"magface_qlt_{qlt}"]
    features = golden_npy("ijb/features.npy")
    out = facemag.eval.ijb(features, GOLDEN / "ijb" / "meta", type="c", quality_weighted=bool(qlt))
    assert [t["tar"] for t in out["tar_at_far"]] == [t["tar"] for t in ref["tar_at_far"]]
    assert out["auc"] == pytest.approx(ref["auc"], abs=2e-7)
    assert out["pairs"] == 30000


def test_cluster_and_its_scores_equal_the_cli(cli, tmp_path):
    features = golden_npy("eval/pairs600_features.npy")
    identity = golden_npy("eval/pairs600_identity.npy")
    grouped = facemag.eval.cluster(features, 0.3)
    labels = grouped["labels"]
    assert labels.shape == (1200,) and grouped["method"] == "exact"
    assert len(grouped["groups"]) == labels.max() + 1
    ours = facemag.eval.cluster_scores(labels, identity)
    np.save(tmp_path / "f.npy", features)
    np.save(tmp_path / "l.npy", identity)
    cli("eval", "cluster", "--features", tmp_path / "f.npy", "--labels", tmp_path / "l.npy",
        "--threshold", "0.3", "--json", tmp_path / "c.json")
    theirs = json.loads((tmp_path / "c.json").read_text())["scores"]
    # The same groups; the CLI numbers identities itself, so BCubed sums in another order (1 ulp).
    assert ours["groups"] == theirs["groups"] and ours["pairwise"] == theirs["pairwise"]
    assert ours["bcubed"] == pytest.approx(theirs["bcubed"], rel=1e-14)
    assert ours["nmi"] == pytest.approx(theirs["nmi"], rel=1e-14)


def test_cluster_scores_of_known_groupings():
    perfect = facemag.eval.cluster_scores([0, 0, 1, 1, 2], [5, 5, 7, 7, 9])
    assert perfect["pairwise"]["f"] == 1.0 and perfect["bcubed"]["f"] == 1.0 and perfect["nmi"] == pytest.approx(1.0)
    merged = facemag.eval.cluster_scores([0, 0, 0, 0], [1, 1, 2, 2])
    assert merged["pairwise"]["precision"] == pytest.approx(2 / 6)
    assert merged["pairwise"]["recall"] == 1.0
