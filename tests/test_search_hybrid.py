"""Fusion of dense and BM25 rankings."""

from __future__ import annotations

import math

import pytest

from koe5.errors import InputError
from koe5.search.hybrid import DEFAULT_FUSION, Fusion, coverage, peak


def test_rrf_uses_ranks_only():
    dense = {"a": 0.9, "b": 0.8, "c": 0.1}
    sparse = {"b": 120.0, "d": 3.0}
    fused = Fusion("rrf", weight=0.5, rrf_k=60).fuse(dense, sparse)
    assert list(fused) == ["b", "a", "d", "c"]
    assert fused["b"] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert fused["a"] == pytest.approx(0.5 / 61)
    # scaling one side's scores changes nothing
    assert Fusion("rrf").fuse(dense, {k: v * 1000 for k, v in sparse.items()}) == Fusion("rrf").fuse(
        dense, sparse
    )


def test_minmax_combines_normalised_scores():
    fused = Fusion("minmax", weight=0.25).fuse({"a": 0.9, "b": 0.7}, {"b": 10.0, "c": 5.0})
    assert fused == pytest.approx({"b": 0.75, "a": 0.25, "c": 0.0})
    assert Fusion("minmax", weight=0.5).fuse({"a": 0.5}, {}) == {"a": 0.5}  # one candidate: scaled to 1


def test_weight_extremes_reproduce_one_side():
    dense = {"a": 3.0, "b": 2.0, "c": 1.0}
    sparse = {"c": 9.0, "b": 1.0}
    assert list(Fusion("rrf", weight=1.0).fuse(dense, sparse))[:3] == ["a", "b", "c"]
    assert next(iter(Fusion("minmax", weight=0.0).fuse(dense, sparse))) == "c"


def test_depth_limits_the_candidates():
    dense = {str(i): 1.0 - i / 100 for i in range(50)}
    assert len(Fusion("rrf", depth=10).fuse(dense, {})) == 10


def test_settings_are_checked():
    with pytest.raises(InputError, match="unknown fusion method"):
        Fusion("sum")
    with pytest.raises(InputError, match="between 0 and 1"):
        Fusion("rrf", weight=1.5)
    assert DEFAULT_FUSION.to_dict()["method"] in ("rrf", "minmax", "dbsf")


def test_dbsf_scales_by_each_sides_distribution():
    dense = {"a": 0.9, "b": 0.8, "c": 0.1}
    sparse = {"b": 12.0, "d": 3.0}
    fused = Fusion("dbsf", weight=0.5).fuse(dense, sparse)

    def scaled(scores, key):
        values = list(scores.values())
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return (scores[key] - mean + 3 * sd) / (6 * sd)

    # a candidate one side did not return gets that side's lowest scaled score
    assert fused["a"] == pytest.approx(0.5 * scaled(dense, "a") + 0.5 * scaled(sparse, "d"))
    assert fused["d"] == pytest.approx(0.5 * scaled(dense, "c") + 0.5 * scaled(sparse, "d"))
    assert list(fused) == ["b", "a", "c", "d"]  # c and d tie: dense order first
    # an outlying best match keeps its distance: min-max would put both tops at 1
    outlier = Fusion("dbsf", weight=0.5).fuse(
        {"x": 0.5, "y": 0.49, "z": 0.48}, {"y": 30.0, "x": 1.0, "z": 0.9}
    )
    assert next(iter(outlier)) == "y"


def test_adaptive_weight_follows_bm25_coverage():
    fusion = Fusion("minmax", weight=0.4, adaptive=(0.2, 0.8))
    assert fusion.dense_weight(1.0) == pytest.approx(0.2)
    assert fusion.dense_weight(0.0) == pytest.approx(0.8)
    assert fusion.dense_weight(0.5) == pytest.approx(0.5)
    assert fusion.dense_weight(3.0) == pytest.approx(0.2)  # capped
    assert fusion.dense_weight(None) == 0.4  # no signal: the fixed weight
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    sparse = {"c": 10.0, "b": 4.0, "a": 1.0}
    # a query BM25 covers fully leans on BM25, one it barely covers leans on the model
    assert next(iter(fusion.fuse(dense, sparse, coverage=1.0))) == "c"
    assert next(iter(fusion.fuse(dense, sparse, coverage=0.0))) == "a"
    assert fusion.fuse(dense, sparse, coverage=0.25) == Fusion("minmax", weight=0.65).fuse(dense, sparse)


def test_coverage_signal():
    assert coverage(None, 5.0) is None
    assert coverage(3.0, 0.0) is None
    assert coverage(2.0, 8.0) == pytest.approx(0.25)
    assert coverage(12.0, 8.0) == 1.0


def test_fusion_round_trips_through_a_manifest_and_names_itself():
    import json

    fusion = Fusion("dbsf", adaptive=(0.1, 0.9))
    again = Fusion(**json.loads(json.dumps(fusion.to_dict())))
    assert again == fusion and again.adaptive == (0.1, 0.9)
    assert fusion.label == "dbsf-adaptive-0.1-0.9"
    assert Fusion("rrf", weight=0.3).label == "rrf-0.3"
    with pytest.raises(InputError, match="adaptive"):
        Fusion(adaptive=(0.9, 0.1))


def test_peak_measures_how_far_the_best_score_stands_out():
    assert peak([1.0, 1.0, 1.0, 1.0]) == 0.0  # flat: nothing stands out
    assert peak([5.0, 1.0]) == 0.0  # too few to tell
    sharp, flat = peak([10.0, 1.0, 1.0, 1.0, 1.0]), peak([10.0, 9.0, 8.0, 7.0, 6.0])
    assert sharp == pytest.approx(2.0) and flat == pytest.approx(2**0.5)
    assert peak([0.01 * v for v in (10.0, 1.0, 1.0, 1.0, 1.0)]) == pytest.approx(sharp)  # scale-free


def test_confidence_weight_follows_the_sharper_list_and_the_coverage():
    fusion = Fusion("minmax", adaptive=(0.1, 0.7), confidence=(1.0, 0.0, 2.0))
    # equal peaks, no coverage: the middle of the range
    assert fusion.dense_weight(0.0, (3.0, 3.0)) == pytest.approx(0.4)
    # the sharper side leads; a covered query leans on BM25
    assert fusion.dense_weight(0.0, (6.0, 2.0)) > 0.68 > 0.12 > fusion.dense_weight(0.0, (2.0, 6.0))
    assert fusion.dense_weight(1.0, (3.0, 3.0)) == pytest.approx(0.1 + 0.6 / (1 + math.exp(2.0)))
    assert fusion.dense_weight(None, (3.0, 3.0)) == pytest.approx(0.4)  # no BM25 match: no coverage
    assert 0.1 <= fusion.dense_weight(0.0, (1e6, 0.0)) <= 0.7  # bounded, no overflow
    with pytest.raises(InputError, match="peaks of its two lists"):
        fusion.dense_weight(0.0)  # not silently the coverage ramp of 0.1-0.7
    # in a fusion: a model list that cannot tell its candidates apart gives way to a sharp BM25 list
    flat_dense = {"a": 0.81, "b": 0.80, "c": 0.80, "d": 0.79, "e": 0.80}
    sharp_bm25 = {"c": 20.0, "a": 2.0, "b": 1.0, "d": 1.5, "e": 1.2}
    assert next(iter(fusion.fuse(flat_dense, sharp_bm25, coverage=0.0))) == "c"
    assert next(iter(Fusion("minmax", weight=0.7).fuse(flat_dense, sharp_bm25))) == "a"
    sharp_dense = {"a": 0.95, "b": 0.70, "c": 0.71, "d": 0.70, "e": 0.69}
    flat_bm25 = {"c": 5.0, "a": 4.9, "b": 4.9, "d": 4.8, "e": 4.9}
    assert next(iter(fusion.fuse(sharp_dense, flat_bm25, coverage=0.0))) == "a"
    w = fusion.dense_weight(0.3, (peak(list(sharp_dense.values())), peak(list(flat_bm25.values()))))
    fixed = Fusion("minmax", weight=w)
    assert fusion.fuse(sharp_dense, flat_bm25, coverage=0.3) == fixed.fuse(sharp_dense, flat_bm25)


def test_confidence_fusion_round_trips_and_needs_a_range():
    import json

    fusion = Fusion("minmax", adaptive=(0.1, 0.7), confidence=(0.5, 0.5, 1))
    again = Fusion(**json.loads(json.dumps(fusion.to_dict())))
    assert again == fusion and again.confidence == (0.5, 0.5, 1.0)
    assert fusion.label == "minmax-adaptive-0.1-0.7-confidence-0.5-0.5-1"
    # a manifest written before the field existed still opens, as the coverage fusion it was
    old = Fusion("minmax", adaptive=(0.2, 0.8)).to_dict()
    del old["confidence"]
    assert Fusion(**old) == Fusion("minmax", adaptive=(0.2, 0.8)) and Fusion(**old).confidence is None
    with pytest.raises(InputError, match="confidence fusion needs adaptive"):
        Fusion("minmax", confidence=(1.0, 0.0, 0.0))
