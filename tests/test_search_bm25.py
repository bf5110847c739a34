"""Korean BM25: bm25s over Kiwi morphemes; add/remove without re-analysis; save/load."""

from __future__ import annotations

import numpy as np
import pytest

from koe5.errors import InputError
from koe5.search.bm25 import KoreanBM25, top_k

TEXTS = ["서울은 대한민국의 수도이다.", "부산은 항구 도시이다.", "서울의 지하철 노선", "제주도의 귤"]


@pytest.fixture(scope="module")
def bm25():
    return KoreanBM25().index(TEXTS)


def test_particles_do_not_hide_matches(bm25):
    rows, scores = bm25.search(["서울에서 지하철 타기", "부산의 항구"], k=3)
    assert rows.shape == scores.shape == (2, 3)
    assert rows[0, :2].tolist() == [2, 0] and rows[0, 2] == -1 and scores[0, 2] == -np.inf
    assert rows[1, 0] == 1 and scores[0, 0] > scores[0, 1] > 0


def test_empty_analysis_gives_padding_not_an_error(bm25):
    rows, scores = bm25.search(["?!...", "그리고", "없는단어xyz"], k=2)
    assert (rows[:2] == -1).all() and np.isneginf(scores[:2]).all()
    assert bm25.scores("?!").tolist() == [0.0] * len(TEXTS)


def test_scores_match_a_hand_computed_bm25(bm25):
    # Lucene BM25 for the single term 지하철, in one of four texts of lengths 3, 3, 3, 2 terms
    n, df, tf, dl = 4, 1, 1, 3
    avgdl = sum(len(bm25.tokens(i)) for i in range(4)) / 4
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    expected = idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * dl / avgdl))
    assert bm25.scores("지하철")[2] == pytest.approx(expected, rel=1e-5)


def test_idf_total_sums_the_distinct_known_terms(bm25):
    def idf(df: int, n: int = 4) -> float:
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))

    # 서울 is in two texts, 지하철 in one; a repeated term counts once, an unknown one not at all
    ids = bm25.query_ids("서울 서울 지하철 없는단어xyz")
    assert bm25.idf_total(ids) == pytest.approx(idf(2) + idf(1))
    assert bm25.idf_total(bm25.query_ids("?!")) == 0.0
    shrunk = KoreanBM25().index(TEXTS)
    shrunk.remove([3])  # 귤 is gone with its text: no longer a known term
    assert shrunk.idf_total(shrunk.query_ids("귤 지하철")) == pytest.approx(idf(1, n=3))


def test_add_and_remove_equal_a_fresh_index():
    grown = KoreanBM25().index(TEXTS[:2])
    assert grown.add(TEXTS[2:]).tolist() == [2, 3]
    fresh = KoreanBM25().index(TEXTS)
    np.testing.assert_allclose(grown.scores("서울 지하철 귤"), fresh.scores("서울 지하철 귤"), rtol=1e-6)
    grown.remove([0, 3])
    smaller = KoreanBM25().index([TEXTS[1], TEXTS[2]])
    np.testing.assert_allclose(
        grown.scores("서울 지하철 항구"), smaller.scores("서울 지하철 항구"), rtol=1e-6
    )
    grown.remove([0, 1])
    assert len(grown) == 0 and grown.search(["서울"], 2)[0].tolist() == [[-1, -1]]


def test_save_and_load(bm25, tmp_path):
    bm25.save(tmp_path / "bm25")
    again = KoreanBM25.load(tmp_path / "bm25")
    assert len(again) == len(TEXTS) and again.k1 == bm25.k1
    np.testing.assert_array_equal(again.search(["서울 지하철"], 4)[0], bm25.search(["서울 지하철"], 4)[0])
    with pytest.raises(InputError, match="not a koe5 BM25 index"):
        KoreanBM25.load(tmp_path)


def test_top_k_keeps_positive_scores_best_first():
    rows, vals = top_k(np.array([0.0, 2.0, 1.0, 2.0, 0.5], dtype=np.float32), 3)
    assert rows.tolist() == [1, 3, 2] and vals.tolist() == [2.0, 2.0, 1.0]
    assert top_k(np.zeros(3, np.float32), 2)[0].tolist() == []


def test_bad_arguments(bm25):
    with pytest.raises(InputError):
        KoreanBM25(k1=-1)
    with pytest.raises(InputError, match="list of queries"):
        bm25.search("서울", 2)
    with pytest.raises(InputError, match="k must be positive"):
        bm25.search(["서울"], 0)
