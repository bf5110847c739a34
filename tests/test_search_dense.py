"""Dense search: exact and HNSW agree; filters; the automatic choice."""

from __future__ import annotations

import numpy as np
import pytest

from koe5.errors import InputError
from koe5.search.dense import DenseIndex, HNSWParams, choose_kind


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_is_brute_force(vectors):
    index = DenseIndex(32)
    index.add(vectors[:1000])
    index.add(vectors[1000:])  # two blocks behave as one
    q = vectors[7]
    rows, scores = index.search(q, 10)
    expected = np.argsort(-(vectors @ q))[:10]
    assert rows.tolist() == expected.tolist() and rows[0] == 7
    np.testing.assert_allclose(scores, (vectors @ q)[expected], rtol=1e-5)


def test_hnsw_finds_nearly_all_of_the_exact_top_10(vectors):
    exact, hnsw = DenseIndex(32), DenseIndex(32, "hnsw", HNSWParams(m=16, ef_construction=64, ef_search=64))
    exact.add(vectors)
    hnsw.add(vectors)
    found = [len(set(hnsw.search(q, 10)[0]) & set(exact.search(q, 10)[0])) for q in vectors[:50]]
    assert np.mean(found) / 10 > 0.9


def test_filters_apply_to_both_kinds(vectors, tmp_path):
    allowed = np.zeros(len(vectors), bool)
    allowed[::3] = True
    for kind in ("exact", "hnsw"):
        index = DenseIndex(32, kind)
        index.add(vectors)
        rows, _ = index.search(vectors[1], 5, allowed)
        assert len(rows) == 5 and allowed[rows].all()
        few = np.zeros(len(vectors), bool)
        few[[4, 9]] = True
        assert sorted(index.search(vectors[1], 5, few)[0].tolist()) == [4, 9]
    index.save_graph(tmp_path / "g.faiss")
    again = DenseIndex(32)
    again.add(vectors)
    again.load_graph(tmp_path / "g.faiss")
    assert again.kind == "hnsw" and again.search(vectors[3], 1)[0][0] == 3


def test_choose_kind():
    assert choose_kind(10) == "exact" and choose_kind(10**7) == "hnsw"
    assert choose_kind(10, "hnsw") == "hnsw" and choose_kind(10**7, "exact") == "exact"
    assert choose_kind(500, "auto", threshold=100) == "hnsw"
    with pytest.raises(InputError, match="auto, exact or hnsw"):
        choose_kind(10, "ivf")
    with pytest.raises(InputError, match="shape"):
        DenseIndex(32).add(np.zeros((2, 16), np.float32))
