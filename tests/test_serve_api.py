"""koe5 serve against a real server process on 127.0.0.1: the openai client, raw HTTP, TEI's /embed,
/search, auth, every limit, malformed JSON, concurrent requests, metrics, the committed schema."""

from __future__ import annotations

import base64
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve_process import ServerProcess

KEY = "test-key-7f3a9c"
AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = "서울은 한국의 수도이다. " * 80  # ~570 tokens with the tiny model: over its 512, under max_chars
KINDS = ("query", "passage")
OPENAPI = Path(__file__).parents[1] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def index_dir(tiny, sample_texts, tmp_path_factory) -> Path:
    from koe5.search import Index

    docs = [{"id": f"d{i}", "text": t, "year": 2020 + i % 3} for i, t in enumerate(sample_texts)]
    folder = tmp_path_factory.mktemp("serve") / "index"
    Index.build(docs, tiny, folder)
    return folder


@pytest.fixture(scope="module")
def server(index_dir, tmp_path_factory):
    args = ["--index", str(index_dir), "--max-inputs", "32", "--max-chars", "2000"]
    args += ["--max-body-bytes", "65536", "--batch-wait-ms", "20"]
    proc = ServerProcess(args, tmp_path_factory.mktemp("serve-log") / "server.log", {"KOE5_API_KEY": KEY})
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        yield client


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=2e-5)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    return body["error"]["code"] if isinstance(body["error"], dict) else body["code"]


# --- the openai client, unchanged ------------------------------------------------------------------


def test_openai_client_gets_the_library_vectors(server, tiny, sample_texts):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    texts = sample_texts[:5]
    response = client.embeddings.create(model="text-embedding-3-small", input=texts)  # base64 underneath
    assert [d.index for d in response.data] == list(range(5))
    close([d.embedding for d in response.data], tiny.encode_passages(texts))
    tokens = sum(len(ids) for ids in tiny.tokenize([tiny.passage_prefix + t for t in texts]))
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
    assert response.model == tiny.name

    floats = client.embeddings.create(model="koe5", input=texts[0], encoding_format="float")
    close(floats.data[0].embedding, tiny.encode_passages([texts[0]])[0])
    query = client.embeddings.create(model="koe5", input=[texts[1]], extra_body={"input_type": "query"})
    close(query.data[0].embedding, tiny.encode_queries([texts[1]])[0])


def test_openai_client_sees_errors_as_its_own_exceptions(server, sample_texts):
    import openai

    bad_key = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.embeddings.create(model="koe5", input="서울")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as too_many:
        client.embeddings.create(model="koe5", input=["서울"] * 33)
    assert too_many.value.status_code == 413 and too_many.value.code == "max_inputs"
    with pytest.raises(openai.UnprocessableEntityError) as dims:
        client.embeddings.create(model="koe5", input="서울", dimensions=64)
    assert dims.value.code == "dimensions"


def test_openai_client_lists_the_model(server, tiny):
    import openai

    models = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0).models.list()
    assert [m.id for m in models.data] == [tiny.name]
    assert models.data[0].owned_by == "koe5" and models.data[0].created > 1_700_000_000
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()


# --- raw HTTP --------------------------------------------------------------------------------------


def test_raw_embeddings_request_and_response_shape(http, tiny, sample_texts):
    r = http.post("/v1/embeddings", json={"input": sample_texts[:3], "model": "x", "input_type": "none"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["x-koe5-truncated"] == "0"
    body = r.json()
    assert body["object"] == "list" and set(body) == {"object", "data", "model", "usage"}
    assert [set(d) for d in body["data"]] == [{"object", "index", "embedding"}] * 3
    close([d["embedding"] for d in body["data"]], tiny.encode(sample_texts[:3], None))

    b64 = http.post("/v1/embeddings", json={"input": sample_texts[0], "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    close(vector, tiny.encode_passages([sample_texts[0]])[0])


def test_tei_embed(http, tiny, sample_texts):
    r = http.post("/embed", json={"inputs": sample_texts[:2]})
    assert r.status_code == 200
    close(r.json(), tiny.encode_passages(sample_texts[:2]))  # absent prompt_name: passage
    query = http.post("/embed", json={"inputs": sample_texts[0], "prompt_name": "query", "normalize": True})
    close(query.json(), tiny.encode_queries([sample_texts[0]]))
    raw = http.post("/embed", json={"inputs": [sample_texts[0]], "prompt_name": "none"})
    close(raw.json(), tiny.encode([sample_texts[0]], None))
    for field, value in [("normalize", False), ("truncation_direction", "Left"), ("prompt_name", "nope")]:
        bad = http.post("/embed", json={"inputs": "서울", field: value})
        assert bad.status_code == 422, field
        assert bad.json() == {"error": bad.json()["error"], "error_type": "validation", "code": field}


def test_tei_info(server, http, tiny):
    body = http.get("/info").json()
    assert body["model_id"] == tiny.name and body["model_dtype"] == "float32"
    assert body["model_type"] == {"embedding": {"pooling": "mean"}}
    assert body["max_input_length"] == tiny.max_length and body["dim"] == tiny.dim
    assert body["max_client_batch_size"] == 32 and body["auto_truncate"] is True  # the server's flags
    assert body["max_batch_tokens"] >= tiny.max_length and body["backend"] == "torch"
    assert body["mkl_shim"] in ("active", "off", "not needed", "not built", "too late")
    assert body["attention_kernel"] in ("active", "off", "unsupported CPU", "not built", "other OpenMP")
    assert httpx.get(f"{server.url}/info").status_code == 401  # like every route but /health


def test_truncate_or_refuse_per_request(http, tiny):
    cut = http.post("/embed", json={"inputs": [LONG, "서울"], "truncate": True})
    assert cut.status_code == 200 and cut.headers["x-koe5-truncated"] == "1"
    close(cut.json()[0], tiny.encode_passages([LONG])[0])  # the library cuts the same way
    default = http.post("/v1/embeddings", json={"input": [LONG]})  # the server's default: cut
    assert default.status_code == 200 and default.json()["usage"]["prompt_tokens"] == tiny.max_length
    for path, key in [("/embed", "inputs"), ("/v1/embeddings", "input")]:
        refused = http.post(path, json={key: ["서울", LONG], "truncate": False})
        assert refused.status_code == 413 and error_code(refused) == "max_tokens"
        assert "item 1" in refused.text
    assert http.post("/embed", json={"inputs": "서울"}).status_code == 200  # the worker lives on


def test_search(http, sample_texts):
    r = http.post("/search", json={"query": sample_texts[0], "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["mode"] == "hybrid" and body["k"] == 3 and len(body["hits"]) == 3
    assert body["hits"][0]["doc_id"] == "d0"
    assert set(body["hits"][0]) == {
        "doc_id",
        "score",
        "chunk_id",
        "text",
        "title",
        "metadata",
        "start",
        "end",
    }
    for mode in ("dense", "bm25"):
        assert (
            http.post("/search", json={"query": sample_texts[0], "mode": mode}).json()["hits"][0]["doc_id"]
            == "d0"
        )
    filtered = http.post(
        "/search", json={"query": sample_texts[0], "k": 10, "filters": {"year": 2021}}
    ).json()
    assert filtered["hits"] and all(h["metadata"]["year"] == 2021 for h in filtered["hits"])
    assert http.post("/search", json={"query": "서울", "mode": "fuzzy"}).status_code == 422
    assert error_code(http.post("/search", json={"query": "서울", "k": 101})) == "max_k"
    assert error_code(http.post("/search", json={"query": "  "})) == "empty_input"


# --- auth ------------------------------------------------------------------------------------------


def test_bearer_auth(server):
    url = server.url
    assert httpx.get(f"{url}/health").status_code == 200  # open, for load balancers
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": KEY},
        {"Authorization": "Basic x"},
    ):
        for method, path in [("POST", "/v1/embeddings"), ("POST", "/embed"), ("GET", "/metrics")]:
            r = httpx.request(
                method, f"{url}{path}", headers=headers, json={"input": "서울", "inputs": "서울"}
            )
            assert r.status_code == 401, (headers, path)
            assert r.headers["www-authenticate"] == "Bearer"
            assert error_code(r) == "unauthorized"
            assert KEY not in r.text and "wrong-key" not in r.text and "Basic" not in r.text
    # refused before its body is read
    r = httpx.post(f"{url}/v1/embeddings", content=b"x" * 60_000)
    assert r.status_code == 401


# --- limits and bad input --------------------------------------------------------------------------


def test_limits_name_the_limit(http):
    cases = [
        ("/v1/embeddings", {"input": ["서울"] * 33}, 413, "max_inputs"),
        ("/embed", {"inputs": ["서울"] * 33}, 413, "max_inputs"),
        ("/v1/embeddings", {"input": ["서울", "가" * 2001]}, 413, "max_chars"),
        ("/embed", {"inputs": "가" * 2001}, 413, "max_chars"),
        ("/search", {"query": "가" * 2001}, 413, "max_chars"),
        ("/v1/embeddings", {"input": "서울", "dimensions": 999}, 422, "dimensions"),
        ("/v1/embeddings", {"input": []}, 422, "empty_input"),
    ]
    for path, body, status, code in cases:
        r = http.post(path, json=body)
        assert (r.status_code, error_code(r)) == (status, code), (path, r.text)
        assert code in r.text  # the message names the limit too
    big = http.post("/v1/embeddings", json={"input": ["서울" * 1000] * 12})  # ~72 kB > 64 KiB
    assert big.status_code == 413 and error_code(big) == "max_body_bytes"
    chunked = http.post("/embed", content=(b"x" * 10_000 for _ in range(10)))  # no Content-Length
    assert chunked.status_code == 413 and chunked.json()["code"] == "max_body_bytes"


def test_malformed_requests_get_json_422(http):
    for content in [b'{"input": ', b"not json", b"\xff\xfe", b"[1, 2]"]:
        r = http.post("/v1/embeddings", content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/json"
        assert error_code(r) in ("malformed_json", "invalid_request")
    assert error_code(http.post("/v1/embeddings", content=b'{"input": ')) == "malformed_json"
    typed = http.post("/v1/embeddings", json={"input": [1, 2, 3]})
    assert typed.status_code == 422 and typed.json()["error"]["param"] == "input"
    assert http.post("/embed", json={"input": "x"}).json()["error_type"] == "validation"  # inputs missing
    form = http.post("/v1/embeddings", data={"input": "x"})
    assert form.status_code == 422 and error_code(form) == "content_type"
    missing = http.get("/nowhere")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    assert http.get("/v1/embeddings").status_code == 405


# --- concurrency, metrics, schema ------------------------------------------------------------------


def test_concurrent_requests_match_the_library(server, http, tiny, sample_texts):
    rng = random.Random(0)
    jobs = []
    for i in range(24):
        texts = rng.sample(sample_texts, rng.randint(1, 8))
        kind = KINDS[i % 2]
        jobs.append((texts, kind))
    before = _batches(http)

    def send(job):
        texts, kind = job
        return http.post("/v1/embeddings", json={"input": texts, "input_type": kind}).json()

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(send, jobs))
    library = {kind: dict(zip(sample_texts, tiny.encode(sample_texts, kind), strict=True)) for kind in KINDS}
    for (texts, kind), body in zip(jobs, answers, strict=True):
        close([d["embedding"] for d in body["data"]], [library[kind][t] for t in texts])
    batches = _batches(http) - before
    assert batches < len(jobs), "concurrent requests were not batched together"


def _batches(http) -> float:
    text = http.get("/metrics").text
    return float(
        next(line.split()[-1] for line in text.splitlines() if line.startswith("koe5_batch_requests_count"))
    )


def test_metrics(http):
    http.post("/embed", json={"inputs": "서울"})
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in [
        'koe5_requests_total{endpoint="/embed",status="200"}',
        'koe5_request_duration_seconds_bucket{endpoint="/embed",le="0.1"}',
        'koe5_rejected_total{code="unauthorized"}',
        "koe5_batch_inputs_bucket",
        "koe5_batch_tokens_sum",
        "koe5_queue_requests",
        "koe5_tokens_total",
    ]:
        assert name in text, name


def test_health(server, index_dir, tiny):
    body = httpx.get(f"{server.url}/health").json()
    assert body["status"] == "ok" and body["dim"] == tiny.dim and body["max_length"] == tiny.max_length
    assert body["index"]["folder"] == str(index_dir) and body["index"]["documents"] == 15


def test_committed_openapi_schema_is_the_apps(http, tiny):
    from koe5.serve import Settings, create_app, openapi_schema

    committed = json.loads(OPENAPI.read_text(encoding="utf-8"))
    assert openapi_schema() == committed, "regenerate it: koe5 serve --openapi > docs/openapi.json"
    assert create_app(tiny, settings=Settings(max_inputs=3, api_key="k")).openapi() == committed
    assert http.get("/openapi.json").json() == committed
    assert set(committed["paths"]) == {
        "/v1/embeddings",
        "/v1/models",
        "/embed",
        "/rerank",
        "/v1/rerank",
        "/info",
        "/search",
        "/health",
        "/metrics",
    }
