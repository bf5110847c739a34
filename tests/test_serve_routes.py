"""Each router alone, on a bare FastAPI app with a state of its own (no create_app): what a handler
does with the state it is given, the shared request checks, and the settings' error type."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from koe5.errors import InputError, Koe5Error, SettingsError
from koe5.serve import ApiError, Settings
from koe5.serve.checks import check_dimensions, check_texts, shorten
from koe5.serve.errors import api_error
from koe5.serve.routes import embeddings, info, search
from koe5.serve.state import ServeState


def _bare_app(router, state: ServeState) -> FastAPI:
    app = FastAPI()
    app.state.koe5 = state
    app.add_exception_handler(ApiError, api_error)
    app.include_router(router)
    return app


def test_the_info_router_alone(tiny):
    state = ServeState(tiny, settings=Settings(max_inputs=7, max_queue=9))
    with TestClient(_bare_app(info.router, state)) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "model": tiny.name,
            "dim": tiny.dim,
            "max_length": tiny.max_length,
            "backend": tiny.backend,
            "index": None,
            "queue": 0,
            "reranker": None,
        }
        card = client.get("/v1/models").json()["data"][0]
        assert card == {"id": tiny.name, "object": "model", "created": state.started, "owned_by": "koe5"}
        body = client.get("/info").json()
        assert body["max_client_batch_size"] == 7 and body["max_concurrent_requests"] == 9
        assert body["max_batch_tokens"] == state.batcher.batch_tokens and body["dim"] == tiny.dim
        state.metrics.reject("max_inputs")
        assert 'koe5_rejected_total{code="max_inputs"} 1.0' in client.get("/metrics").text
        state.batcher.close()  # never started: closing only marks it
        draining = client.get("/health")
        assert draining.status_code == 503 and draining.json()["status"] == "draining"


def test_the_embeddings_router_alone(tiny, sample_texts):
    state = ServeState(tiny, settings=Settings(max_inputs=2, max_chars=500))
    state.batcher.start()
    try:
        with TestClient(_bare_app(embeddings.router, state)) as client:
            r = client.post("/embed", json={"inputs": sample_texts[:2], "prompt_name": "query"})
            assert r.status_code == 200 and r.headers["X-Koe5-Truncated"] == "0"
            np.testing.assert_allclose(np.array(r.json()), tiny.encode_queries(sample_texts[:2]), atol=2e-5)
            r = client.post("/v1/embeddings", json={"input": sample_texts[0]})
            assert r.json()["model"] == tiny.name and r.json()["usage"]["prompt_tokens"] > 0
            r = client.post("/v1/embeddings", json={"input": ["a", "b", "c"]})
            assert r.status_code == 413 and r.json()["error"]["code"] == "max_inputs"
            r = client.post("/embed", json={"inputs": "x" * 501})
            assert r.status_code == 413 and r.json()["code"] == "max_chars"  # TEI's shape on /embed
    finally:
        state.batcher.close()
    assert 'koe5_rejected_total{code="max_chars"} 1.0' in state.metrics.render()[0].decode()


class _Hit:
    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id

    def to_dict(self) -> dict:
        return {"doc_id": self.doc_id, "score": 1.0}


class _Index:
    """Answers bm25 searches without a model: what the search router does around an index."""

    def __init__(self) -> None:
        self.asked: list[tuple] = []

    def search(self, query, k, mode, filters, query_vector=None):
        self.asked.append((query, k, mode, filters, query_vector))
        if filters == {"bad": 1}:
            raise InputError("filter 'bad' is not in the index's metadata")
        return [_Hit(f"d{i}") for i in range(k)]


def test_the_search_router_alone():
    index = _Index()
    state = ServeState(None, index=index, settings=Settings(max_k=3))
    with TestClient(_bare_app(search.router, state)) as client:
        r = client.post("/search", json={"query": "서울", "k": 2, "mode": "bm25"})
        assert r.json() == {
            "query": "서울",
            "mode": "bm25",
            "k": 2,
            "hits": [{"doc_id": "d0", "score": 1.0}, {"doc_id": "d1", "score": 1.0}],
        }
        assert index.asked == [("서울", 2, "bm25", None, None)]
        r = client.post("/search", json={"query": "서울", "k": 4, "mode": "bm25"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "max_k"
        r = client.post("/search", json={"query": "서울", "k": 1, "mode": "bm25", "filters": {"bad": 1}})
        assert r.status_code == 422 and "not in the index" in r.json()["error"]["message"]
    state.index = None
    with TestClient(_bare_app(search.router, state)) as client:
        r = client.post("/search", json={"query": "서울"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_index"


def test_the_shared_checks():
    settings = Settings(max_inputs=2, max_chars=5)
    assert check_texts("안녕", "input", settings) == ["안녕"]
    with pytest.raises(ApiError) as empty:
        check_texts([], "inputs", settings)
    assert (empty.value.status, empty.value.code, empty.value.param) == (422, "empty_input", "inputs")
    with pytest.raises(ApiError, match=r"input\[1\] has 6 characters; at most 5 \(max_chars\)"):
        check_texts(["a", "abcdef"], "input", settings)
    encoder = SimpleNamespace(dim=8, name="m", spec=SimpleNamespace(extra={}))
    assert (
        check_dimensions(None, encoder, settings) is None and check_dimensions(8, encoder, settings) is None
    )
    with pytest.raises(ApiError, match="not trained for shorter embeddings"):
        check_dimensions(4, encoder, settings)
    assert check_dimensions(4, encoder, Settings(allow_dimensions=True)) == 4
    short = shorten(np.array([[3.0, 4.0, 12.0]], dtype=np.float32), 2)
    np.testing.assert_allclose(short, [[0.6, 0.8]])


def test_settings_raise_the_koe5_error_type():
    with pytest.raises(SettingsError, match=r"^Settings.max_queue must be positive, got -1$") as bad:
        Settings(max_queue=-1)
    assert isinstance(bad.value, Koe5Error) and isinstance(bad.value, ValueError)
    with pytest.raises(SettingsError, match="printable ASCII"):
        Settings(api_key=" padded ")
