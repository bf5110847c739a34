"""Fusion of dense and BM25 rankings."""

from __future__ import annotations

import pytest

from koe5.errors import InputError
from koe5.search.hybrid import DEFAULT_FUSION, Fusion


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
    assert DEFAULT_FUSION.to_dict()["method"] in ("rrf", "minmax")
