"""Reranking over HTTP: TEI's /rerank and Cohere's /v1/rerank rank as the library does, /search with
rerank, every refusal (before the model runs), truncation from either side, the reranker's worker
batching concurrent requests, /info and /metrics, and a real koe5 serve --reranker process."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from koe5.search.reranking import passage
from koe5.serve import Settings, create_app
from koe5.serve.rerank_batcher import RerankBatcher
from serve_process import ServerProcess

QUERY = "한국의 수도는 어디인가요?"
MAX_LENGTH = 32  # short, so that two sample sentences together are cut


class Counting:
    """Counts the reranker's forward passes (its ``pair_logits``) and length checks (its
    ``pair_lengths``), so a test can say a request never reached the model."""

    def __init__(self, reranker) -> None:
        self.passes = self.tokenised = 0
        self.reranker = reranker
        self.forward, lengths = reranker.pair_logits, reranker.pair_lengths

        def counted_forward(*args, **kwargs):
            self.passes += 1
            return self.forward(*args, **kwargs)

        def counted_lengths(*args, **kwargs):
            self.tokenised += 1
            return lengths(*args, **kwargs)

        reranker.pair_logits, reranker.pair_lengths = counted_forward, counted_lengths

    def reset(self) -> None:
        self.passes = self.tokenised = 0

    def remove(self) -> None:
        self.reranker.pair_logits = self.forward


@pytest.fixture(scope="module")
def reranker(tiny_reranker_dir):
    from koe5.rerank import Reranker

    return Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def counter(reranker):
    counting = Counting(reranker)
    yield counting
    counting.remove()


@pytest.fixture(scope="module")
def index(tiny, docs, tmp_path_factory):
    from koe5.search import Index

    return Index.build(docs, tiny, tmp_path_factory.mktemp("rerank-serve") / "index")


@pytest.fixture(scope="module")
def client(tiny, index, reranker, counter):
    settings = Settings(max_inputs=8, max_chars=300, max_k=10, max_rerank_depth=12)
    with TestClient(create_app(tiny, index, settings, reranker=reranker)) as client:
        yield client


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=1e-5)


def in_input_order(response) -> list[float]:
    """The scores of a /rerank answer, in the order of the request's texts."""
    return [score for _, score in sorted((r["index"], r["score"]) for r in response.json())]


def code(response) -> str:
    body = response.json()
    return body["error"]["code"] if isinstance(body["error"], dict) else body["code"]


# --- both shapes rank as the library does -----------------------------------------------------------


def test_both_shapes_rank_as_the_library(client, reranker, sample_texts):
    texts = sample_texts[:6]
    expected = reranker.rank(QUERY, texts)  # two of the pairs are cut, as the library cuts them
    cut = str(int((reranker.pair_lengths(QUERY, texts) > MAX_LENGTH).sum()))
    tei = client.post("/rerank", json={"query": QUERY, "texts": texts})
    assert tei.status_code == 200 and tei.headers["x-koe5-truncated"] == cut == "2"
    assert [r["index"] for r in tei.json()] == [h.index for h in expected]
    assert all(set(r) == {"index", "score"} for r in tei.json())
    close([r["score"] for r in tei.json()], [h.score for h in expected])

    v1 = client.post("/v1/rerank", json={"query": QUERY, "documents": texts, "model": reranker.name})
    body = v1.json()
    assert v1.status_code == 200 and set(body) == {"id", "results", "model", "usage"}
    assert v1.headers["x-koe5-truncated"] == cut
    assert [r["index"] for r in body["results"]] == [h.index for h in expected]
    close([r["relevance_score"] for r in body["results"]], [h.score for h in expected])
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])
    tokens = np.minimum(reranker.pair_lengths(QUERY, texts), MAX_LENGTH).sum()
    assert body["model"] == reranker.name and body["usage"] == {"total_tokens": int(tokens)}


def test_raw_and_activated_scores(client, reranker, sample_texts):
    texts = sample_texts[:4]
    raw = in_input_order(client.post("/rerank", json={"query": QUERY, "texts": texts, "raw_scores": True}))
    activated = in_input_order(client.post("/rerank", json={"query": QUERY, "texts": texts}))
    close(raw, reranker.score(QUERY, texts, raw=True))
    close(activated, 1 / (1 + np.exp(-np.array(raw))))


def test_texts_documents_and_top_n(client, reranker, sample_texts):
    texts = sample_texts[:5]
    best = reranker.rank(QUERY, texts, top_k=2)
    tei = client.post("/rerank", json={"query": QUERY, "texts": texts, "return_text": True}).json()
    assert [r["text"] for r in tei] == [texts[r["index"]] for r in tei]
    documents = [texts[0], {"text": texts[1], "id": "ignored"}, *texts[2:]]
    v1 = client.post(
        "/v1/rerank", json={"query": QUERY, "documents": documents, "top_n": 2, "return_documents": True}
    ).json()
    assert [r["index"] for r in v1["results"]] == [h.index for h in best]
    assert [r["document"] for r in v1["results"]] == [{"text": h.text} for h in best]
    assert client.post("/rerank", json={"query": QUERY, "texts": []}).json() == []
    empty = client.post("/v1/rerank", json={"query": QUERY, "documents": [], "top_n": 3})
    assert empty.status_code == 200 and empty.json()["results"] == []
    assert empty.json()["usage"] == {"total_tokens": 0}


# --- refusals, before the model --------------------------------------------------------------------

BAD = [
    ("/rerank", {"query": QUERY, "texts": ["가"] * 9}, 413, "max_inputs", "at most 8"),
    ("/rerank", {"query": QUERY, "texts": ["가", "가" * 301]}, 413, "max_chars", "texts[1]"),
    ("/rerank", {"query": "  ", "texts": ["가"]}, 422, "empty_input", "query"),
    ("/rerank", {"query": QUERY, "texts": ["가", 5]}, 422, "invalid_request", "texts.1"),
    ("/rerank", {"query": QUERY, "texts": ["가"], "truncation_direction": "up"}, 422, "invalid_request", ""),
    ("/v1/rerank", {"query": QUERY, "documents": ["가"] * 9}, 413, "max_inputs", "at most 8"),
    ("/v1/rerank", {"query": QUERY, "documents": ["가", "가" * 301]}, 413, "max_chars", "documents[1]"),
    ("/v1/rerank", {"query": "", "documents": ["가"]}, 422, "empty_input", "query"),
    ("/v1/rerank", {"query": QUERY, "documents": ["가", 5]}, 422, "invalid_request", "documents.1"),
    ("/v1/rerank", {"query": QUERY, "documents": ["가"], "top_n": 0}, 422, "top_n", "at least 1"),
    ("/v1/rerank", {"query": QUERY, "documents": ["a", "b"], "top_n": 3}, 422, "top_n", "3, more than the 2"),
    ("/v1/rerank", {"query": QUERY, "documents": ["가"], "model": "x"}, 404, "model_not_found", "'x'"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "error", "named"), BAD)
def test_refusals_never_reach_the_model(client, counter, path, body, status, error, named):
    counter.reset()
    r = client.post(path, json=body)
    assert (r.status_code, code(r)) == (status, error)
    assert named in (r.json()["error"] if path == "/rerank" else r.json()["error"]["message"])
    assert (counter.tokenised, counter.passes) == (0, 0)


def test_a_pair_too_long_is_refused_naming_it_or_cut_and_counted(client, counter, sample_texts):
    long = f"{sample_texts[2]} {sample_texts[3]}"
    counter.reset()
    for path, key in [("/rerank", "texts"), ("/v1/rerank", "documents")]:
        refused = client.post(path, json={"query": QUERY, key: [sample_texts[1], long], "truncate": False})
        assert refused.status_code == 413 and code(refused) == "max_tokens" and "item 1" in refused.text
    assert counter.passes == 0  # tokenised to be measured, never scored
    cut = client.post("/rerank", json={"query": QUERY, "texts": [sample_texts[1], long]})
    assert cut.status_code == 200 and cut.headers["x-koe5-truncated"] == "1"


def test_left_truncation_keeps_the_end_right_keeps_the_start(client, sample_texts):
    shared, a, b = sample_texts[3], sample_texts[1], sample_texts[2]

    def scores(texts, side):
        ranks = client.post("/rerank", json={"query": QUERY, "texts": texts, "truncation_direction": side})
        assert ranks.status_code == 200 and ranks.headers["x-koe5-truncated"] == "2"
        return in_input_order(ranks)

    same_end = [f"{a} {shared}", f"{b} {shared}"]
    same_start = [f"{shared} {a}", f"{shared} {b}"]
    assert scores(same_end, "Left")[0] == pytest.approx(scores(same_end, "Left")[1], abs=1e-6)
    assert scores(same_end, "right")[0] != pytest.approx(scores(same_end, "right")[1], abs=1e-6)
    assert scores(same_start, "Right")[0] == pytest.approx(scores(same_start, "Right")[1], abs=1e-6)
    assert scores(same_start, "left")[0] != pytest.approx(scores(same_start, "left")[1], abs=1e-6)


# --- /search with rerank ---------------------------------------------------------------------------


def test_search_with_rerank_reorders_the_depth_and_keeps_the_retrieval_score(client, index, reranker):
    query = "서울 대한민국 수도"
    first = index.search(query, 12, "bm25")
    expected = reranker.rank(query, [passage(h.to_dict()) for h in first], top_k=3)
    r = client.post(
        "/search", json={"query": query, "k": 3, "mode": "bm25", "rerank": True, "rerank_depth": 12}
    )
    assert r.status_code == 200 and "x-koe5-truncated" in r.headers
    hits = r.json()["hits"]
    assert [h["doc_id"] for h in hits] == [first[e.index].doc_id for e in expected]
    close([h["score"] for h in hits], [e.score for e in expected])
    assert [h["retrieval_score"] for h in hits] == pytest.approx([first[e.index].score for e in expected])
    plain = client.post("/search", json={"query": query, "k": 3, "mode": "bm25"})
    assert "retrieval_score" not in plain.json()["hits"][0] and "x-koe5-truncated" not in plain.headers
    hybrid = client.post("/search", json={"query": query, "k": 2, "rerank": True}).json()["hits"]
    assert len(hybrid) == 2 and hybrid[0]["score"] >= hybrid[1]["score"]


def test_search_with_a_weighted_reranker_blends_as_the_library_does(tiny, index, tiny_reranker_dir):
    from koe5.rerank import Reranker

    blended = Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=MAX_LENGTH, weight=0.4)
    query = "서울 대한민국 수도"
    want = index.search(query, 3, "hybrid", rerank=blended, rerank_depth=10)
    settings = Settings(max_rerank_depth=12)
    with TestClient(create_app(tiny, index, settings, reranker=blended)) as client:
        assert client.get("/info").json()["reranker"]["weight"] == 0.4
        body = {"query": query, "k": 3, "rerank": True, "rerank_depth": 10}
        hits = client.post("/search", json=body).json()["hits"]
    assert [h["doc_id"] for h in hits] == [h.doc_id for h in want]
    close([h["score"] for h in hits], [h.score for h in want])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"rerank": True, "k": 5, "rerank_depth": 4}, "rerank_depth"),
        ({"rerank": True, "rerank_depth": 13}, "max_rerank_depth"),
        ({"rerank_depth": 20}, "rerank_depth"),
    ],
)
def test_search_rerank_depth_is_checked(client, body, error):
    r = client.post("/search", json={"query": "서울", **body})
    assert r.status_code == 422 and code(r) == error


def test_without_a_reranker_the_routes_name_the_flag(tiny, index):
    with TestClient(create_app(tiny, index)) as client:
        for path, body in [
            ("/rerank", {"query": QUERY, "texts": ["가"]}),
            ("/v1/rerank", {"query": QUERY, "documents": ["가"]}),
            ("/search", {"query": QUERY, "rerank": True}),
        ]:
            r = client.post(path, json=body)
            assert r.status_code == 404 and code(r) == "no_reranker" and "--reranker" in r.text
        assert client.get("/info").json()["reranker"] is None
        assert client.get("/health").json()["reranker"] is None


def test_info_health_and_metrics_show_the_reranker(client, reranker, sample_texts):
    info = client.get("/info").json()["reranker"]
    assert info == {"name": reranker.name, "max_length": MAX_LENGTH, "window": None, "activation": "sigmoid",
                    "weight": 1.0, "backend": "torch", "device": "cpu"}  # fmt: skip
    assert client.get("/health").json()["reranker"] == reranker.name
    client.post("/rerank", json={"query": QUERY, "texts": [f"{sample_texts[2]} {sample_texts[3]}", "가"]})
    text = client.get("/metrics").text
    for name in ("koe5_rerank_requests_total", "koe5_rerank_pairs_total", "koe5_rerank_truncated_total"):
        assert float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1]) >= 1
    assert 'koe5_requests_total{endpoint="/rerank",status="200"}' in text
    assert 'koe5_requests_total{endpoint="/v1/rerank",status="200"}' in text


# --- the worker batches concurrent requests --------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []

    def rerank_batch(self, requests, pairs, truncated, tokens, seconds):
        self.batches.append((requests, pairs, truncated))

    def rerank_queue(self, requests):
        pass


def test_concurrent_requests_are_scored_in_one_pass_as_alone(reranker, counter, sample_texts):
    recorder = Recorder()
    worker = RerankBatcher(reranker, Settings(batch_wait_ms=300), recorder)
    worker.start(warmup=False)
    try:
        counter.reset()
        one = worker.submit(QUERY, sample_texts[:4])
        two = worker.submit("부산", sample_texts[4:7], raw=True)
        first, second = one.result(30), two.result(30)
    finally:
        worker.close()
    cut = int((reranker.pair_lengths(QUERY, sample_texts[:4]) > MAX_LENGTH).sum())
    assert recorder.batches == [(2, 7, cut)] and counter.passes == 1
    assert (first.truncated, second.truncated) == (cut, 0)
    close(first.scores, reranker.score(QUERY, sample_texts[:4]))
    close(second.scores, reranker.score("부산", sample_texts[4:7], raw=True))


def test_without_a_fast_path_transformers_scores_the_pairs(reranker, sample_texts):
    # what a GPU reranker, or a model koe5.cpu.classifier does not cover, runs
    texts = sample_texts[:5]
    slow = copy.copy(reranker)
    slow.fast = None
    close(slow.pair_logits([QUERY] * len(texts), texts), reranker.score(QUERY, texts, raw=True))


# --- koe5 serve --reranker -------------------------------------------------------------------------


def test_koe5_serve_with_a_reranker_batches_concurrent_requests(
    tiny_model_dir, tiny_reranker_dir, tmp_path, sample_texts
):
    import httpx

    from koe5.rerank import Reranker

    args = ["--model", str(tiny_model_dir), "--reranker", str(tiny_reranker_dir), "--batch-wait-ms", "300"]
    proc = ServerProcess(args, tmp_path / "server.log")
    texts, queries = sample_texts[:5], [QUERY, "부산"]
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=30) as http, ThreadPoolExecutor(2) as pool:
            assert http.get("/health").json()["reranker"] == str(tiny_reranker_dir)
            ask = partial(_rerank, http, texts)
            together = list(pool.map(ask, queries))  # the worker waits 300 ms for the second
            metrics = http.get("/metrics").text
            body = http.post("/v1/rerank", json={"query": QUERY, "documents": texts, "top_n": 2}).json()
    finally:
        proc.stop()
    assert "koe5_rerank_requests_total 2.0" in metrics and "koe5_rerank_batch_requests_count 1.0" in metrics
    library = Reranker.load(str(tiny_reranker_dir), device="cpu")
    for query, ranks in zip(queries, together, strict=True):
        expected = library.rank(query, texts)
        assert [r["index"] for r in ranks] == [h.index for h in expected]
        close([r["score"] for r in ranks], [h.score for h in expected])
    assert [r["index"] for r in body["results"]] == [h.index for h in library.rank(QUERY, texts, top_k=2)]


def _rerank(http, texts: list[str], query: str) -> list[dict]:
    response = http.post("/rerank", json={"query": query, "texts": texts})
    assert response.status_code == 200
    return response.json()


def test_a_reranker_that_cannot_load_stops_the_server(tiny_model_dir):
    from koe5.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--model", str(tiny_model_dir), "--reranker", str(tiny_model_dir)]
    )
    assert result.exit_code != 0 and "not a reranker" in result.output


def test_serve_rerank_options_need_a_reranker(tiny_model_dir, tiny_reranker_dir):
    from koe5.cli import app

    base = ["serve", "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(app, [*base, "--rerank-backend", "onnx"])
    assert result.exit_code == 2 and "--rerank-backend need --reranker MODEL" in result.output
    result = CliRunner().invoke(app, [*base, "--rerank-window", "64"])
    assert result.exit_code == 2 and "--rerank-window and --rerank-backend need --reranker" in result.output
    # an ONNX backend for a reranker never exported: the error names the command that exports it
    onnx = ["--reranker", str(tiny_reranker_dir), "--rerank-backend", "onnx"]
    result = CliRunner().invoke(app, [*base, *onnx])
    assert result.exit_code == 2 and "--reranker --onnx" in result.output
