"""The micro-batcher in process: what joins a batch (wait, token budget, input cap), truncation per
request, failures and cancellations, the queue limit, draining on close; vectors equal the library's."""

from __future__ import annotations

import time

import numpy as np
import pytest

from koe5.serve import ApiError, Batcher, Settings

KIND_CODE = {"query": 1.0, "passage": 2.0, None: 3.0}


class FakeEncoder:
    """Tokens = words + 2 specials; a vector says the text's length and the kind it was encoded as."""

    dim, max_length, batch_size, max_tokens = 4, 8, 64, 4096
    query_prefix, passage_prefix, name, backend = "q ", "p ", "fake", "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.delay = delay

    def tokenize(self, texts):
        return [[0] + [1] * len(t.split()) + [2] for t in texts]

    def encode(self, texts, kind=None):
        self.calls.append((list(texts), kind))
        if any("boom" in t for t in texts):
            raise RuntimeError("boom")
        time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = [len(t) for t in texts]
        out[:, 1] = KIND_CODE[kind]
        return out


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def batch(self, requests, inputs, tokens, seconds):
        self.batches.append(requests)

    def queue(self, requests):
        pass


def started(encoder, **settings) -> tuple[Batcher, Recorder]:
    recorder = Recorder()
    batcher = Batcher(encoder, Settings(**settings), recorder)
    batcher.start(warmup=False)
    return batcher, recorder


def test_requests_queued_together_run_as_one_batch():
    enc = FakeEncoder()
    batcher, rec = started(enc, batch_wait_ms=200)
    jobs = [(["a b", "c"], "passage"), (["d e f"], "query"), (["g"], "passage"), (["h i"], None)]
    futures = [batcher.submit(texts, kind, truncate=True) for texts, kind in jobs]
    results = [f.result(5) for f in futures]
    batcher.close()
    assert rec.batches == [4]
    assert sorted(kind or "" for _, kind in enc.calls) == ["", "passage", "query"]  # one call per kind
    for (texts, kind), result in zip(jobs, results, strict=True):
        assert result.vectors[:, 0].tolist() == [len(t) for t in texts]
        assert set(result.vectors[:, 1]) == {KIND_CODE[kind]}
        prefix = {"query": 1, "passage": 1, None: 0}[kind]  # "q " / "p " is one word
        assert result.tokens == [len(t.split()) + 2 + prefix for t in texts]


def test_the_token_budget_and_the_input_cap_split_batches():
    text = " ".join(["w"] * 10)  # 10 words + prefix + 2 specials = 13 tokens
    enc = FakeEncoder()
    enc.max_length = 64  # not cut
    batcher, rec = started(enc, batch_wait_ms=200, batch_tokens=3 * 13 + 1)  # three fit, four do not
    futures = [batcher.submit([text], "passage", truncate=True) for _ in range(4)]
    [f.result(5) for f in futures]
    batcher.close()
    assert rec.batches == [3, 1]

    batcher, rec = started(FakeEncoder(), batch_wait_ms=200, batch_inputs=4)
    futures = [batcher.submit(["a", "b", "c"], "query", truncate=True) for _ in range(3)]
    [f.result(5) for f in futures]
    batcher.close()
    assert rec.batches == [1, 1, 1]


def test_without_batching_each_request_runs_alone():
    batcher, rec = started(FakeEncoder(), batching=False, batch_wait_ms=200)
    futures = [batcher.submit(["a"], "query", truncate=True) for _ in range(5)]
    [f.result(5) for f in futures]
    batcher.close()
    assert rec.batches == [1] * 5


def test_over_long_inputs_are_cut_or_refused_per_request():
    batcher, _ = started(FakeEncoder(), batch_wait_ms=0)
    long = " ".join(["w"] * 10)  # 13 tokens, max_length 8
    cut = batcher.submit([long, "a"], "passage", truncate=True).result(5)
    assert cut.tokens == [8, 4] and cut.truncated == 1
    with pytest.raises(ApiError) as refused:
        batcher.submit(["a", long], "passage", truncate=False).result(5)
    assert (refused.value.status, refused.value.code) == (413, "max_tokens")
    assert "item 1 has 13 tokens" in refused.value.message
    assert batcher.submit(["a"], "passage", truncate=False).result(5).tokens == [4]
    batcher.close()


def test_a_failing_batch_answers_its_requests_and_the_worker_goes_on():
    batcher, _ = started(FakeEncoder(), batch_wait_ms=0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(["boom"], "query", truncate=True).result(5)
    assert batcher.submit(["fine"], "query", truncate=True).result(5).vectors.shape == (1, 4)
    batcher.close()


def test_a_cancelled_request_is_not_encoded():
    enc = FakeEncoder(delay=0.3)
    batcher, _ = started(enc, batch_wait_ms=0)
    busy = batcher.submit(["first"], "query", truncate=True)
    time.sleep(0.1)  # the worker is in the first forward pass
    gone = batcher.submit(["gone"], "query", truncate=True)
    assert gone.cancel()
    assert busy.result(5).vectors.shape == (1, 4)
    assert batcher.submit(["after"], "query", truncate=True).result(5).vectors.shape == (1, 4)
    batcher.close()
    assert ["gone"] not in [texts for texts, _ in enc.calls]


def test_queue_limit_then_close_drains_and_refuses():
    batcher, rec = started(FakeEncoder(), batch_wait_ms=300, max_queue=2)
    first = batcher.submit(["a"], "query", truncate=True)
    second = batcher.submit(["b"], "query", truncate=True)
    with pytest.raises(ApiError) as full:
        batcher.submit(["c"], "query", truncate=True)
    assert (full.value.status, full.value.code) == (429, "max_queue")
    assert full.value.headers == {"Retry-After": "1"}
    batcher.close(timeout=5)  # finishes what was admitted
    assert first.done() and second.done() and rec.batches == [2]
    assert batcher.pending == 0
    with pytest.raises(ApiError) as closed:
        batcher.submit(["d"], "query", truncate=True)
    assert (closed.value.status, closed.value.code) == (503, "shutting_down")


def test_batched_vectors_equal_the_library(tiny, sample_texts):
    batcher, rec = started(tiny, batch_wait_ms=100)
    jobs = [(sample_texts[i : i + 1 + i % 3], ("query", "passage", None)[i % 3]) for i in range(9)]
    futures = [batcher.submit(texts, kind, truncate=True) for texts, kind in jobs]
    results = [f.result(30) for f in futures]
    batcher.close()
    assert sum(rec.batches) == 9 and len(rec.batches) < 9
    for (texts, kind), result in zip(jobs, results, strict=True):
        np.testing.assert_allclose(result.vectors, tiny.encode(texts, kind), atol=2e-5)
        prefix = {"query": tiny.query_prefix, "passage": tiny.passage_prefix, None: ""}[kind]
        assert result.tokens == [len(ids) for ids in tiny.tokenize([prefix + t for t in texts])]
