"""Long candidates read in windows (MaxP): a text scores as its best window, in the library and the server."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from koe5.errors import ModelError
from koe5.rerank import Reranker
from koe5.rerank.windows import best, expand, split
from koe5.serve import Settings, create_app

QUERY = "한국의 수도는 어디인가요?"


@pytest.fixture(scope="module")
def windowed(tiny_reranker_dir):
    return Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=48, window=16)


@pytest.fixture(scope="module")
def whole(tiny_reranker_dir):
    return Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=48)


def test_a_long_text_is_cut_into_half_overlapping_windows_of_its_own_characters(whole, sample_texts):
    text = " ".join(sample_texts)
    tokens = whole.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = split(whole.tokenizer, text, 16)
    assert len(tokens) > 16 and len(pieces) == -(-(len(tokens) - 16) // 8) + 1
    assert all(piece in text for piece in pieces)  # the text's own characters, in order
    assert text.startswith(pieces[0]) and text.endswith(pieces[-1])
    assert all(len(whole.tokenizer(p, add_special_tokens=False)["input_ids"]) <= 17 for p in pieces)
    assert split(whole.tokenizer, sample_texts[0], 64) == [sample_texts[0]]  # short: itself
    found, owner = expand(whole.tokenizer, [sample_texts[0], text], 16)
    assert found == [sample_texts[0], *pieces] and owner.tolist() == [0] + [1] * len(pieces)
    maxima = best(np.array([0.1, 0.3, 0.9, 0.2]), np.array([0, 1, 1, 1]), 2)
    assert maxima.tolist() == pytest.approx([0.1, 0.9])


def test_a_text_scores_as_its_best_window_and_nothing_is_cut(windowed, whole, sample_texts):
    texts = [sample_texts[0], " ".join(sample_texts), " ".join(sample_texts[2:6])]
    stats = windowed.score_with_stats(QUERY, texts, raw=True)
    pieces, owner = windowed.windows(texts)
    assert len(pieces) > len(texts)
    for i in range(len(texts)):
        alone = whole.score(QUERY, [p for p, o in zip(pieces, owner, strict=True) if o == i], raw=True)
        assert stats.scores[i] == pytest.approx(alone.max(), abs=1e-5)
    assert stats.truncated == 0 and whole.score_with_stats(QUERY, texts).truncated > 0
    assert windowed.score(QUERY, texts, truncate=False).shape == (3,)  # nothing too long to refuse
    ranked = windowed.rank(QUERY, texts, top_k=2)
    assert [r.index for r in ranked] == np.argsort(-stats.scores, kind="stable")[:2].tolist()


def test_window_0_reads_texts_whole_as_none_does(tiny_reranker_dir, whole, sample_texts):
    off = Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=48, window=0)
    texts = [" ".join(sample_texts), sample_texts[0]]
    assert off.window is None and off.score(QUERY, texts).tolist() == whole.score(QUERY, texts).tolist()


@pytest.mark.parametrize("window", [-1, 7, 48, 100, True, 16.0])
def test_a_window_that_cannot_fit_beside_a_query_is_refused_by_name(tiny_reranker_dir, window, monkeypatch):
    from koe5.rerank import model

    def no_load(*args):
        raise AssertionError("the weights were loaded before the window was checked")

    monkeypatch.setattr(model, "_load_cross_encoder", no_load)
    with pytest.raises(ModelError, match="window must be a whole number of tokens"):
        Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=48, window=window)


def test_the_server_reads_windows_as_the_library_does(tiny, windowed, sample_texts):
    texts = [sample_texts[0], " ".join(sample_texts), sample_texts[3]]
    want = windowed.score(QUERY, texts)
    with TestClient(create_app(tiny, None, Settings(), reranker=windowed)) as client:
        found = client.post("/rerank", json={"query": QUERY, "texts": texts}).json()
        assert client.get("/info").json()["reranker"]["window"] == 16
        refused = client.post("/rerank", json={"query": QUERY * 20, "texts": texts, "truncate": False})
    got = {r["index"]: r["score"] for r in found}
    assert [got[i] for i in range(3)] == pytest.approx(want.tolist(), abs=1e-5)
    assert refused.status_code == 413 and "item 0" in refused.json()["error"]  # a long query: the window too
