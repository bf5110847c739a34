"""What an adversarial client found, against a real koe5 serve process and keep-alive connections:
lone surrogates, object filter values, undecodable and over-deep bodies, idle and dribbling
connections; and that no failure escapes the app to break a connection."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from serve_process import ServerProcess


@pytest.fixture(scope="module")
def server(tiny, sample_texts, tmp_path_factory):
    from koe5.search import Index

    docs = [{"id": f"d{i}", "text": t, "region": "서울"} for i, t in enumerate(sample_texts)]
    folder = tmp_path_factory.mktemp("reliable") / "index"
    Index.build(docs, tiny, folder)
    args = ["--index", str(folder), "--read-timeout", "1.5", "--max-connections", "50"]
    proc = ServerProcess(args, tmp_path_factory.mktemp("reliable-log") / "server.log")
    proc.wait_ready()
    yield proc
    proc.stop()


def _one_connection(url: str) -> httpx.Client:
    """A client that must do everything over a single keep-alive connection."""
    return httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1))


def _code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_a_lone_surrogate_is_a_422_and_the_connection_lives_on(server):
    with _one_connection(server.url) as http:
        body = b'{"input": ["fine", "x \\ud800"]}'
        bad = http.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
        assert bad.status_code == 422 and _code(bad) == "invalid_text"
        assert "input[1]: lone surrogate U+D800 at character 2" in bad.json()["error"]["message"]
        assert bad.headers.get("connection") != "close"
        assert http.post("/v1/embeddings", json={"input": "다음 요청"}).status_code == 200
        json_body = {"Content-Type": "application/json"}
        query = http.post("/search", content=b'{"query": "\\udc00"}', headers=json_body)
        assert query.status_code == 422 and _code(query) == "invalid_text"
        assert http.get("/health").status_code == 200


def test_an_object_filter_value_is_a_422_naming_the_key(server):
    with _one_connection(server.url) as http:
        bad = http.post("/search", json={"query": "수도", "filters": {"region": {"$ne": "서울"}}})
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "filters"
        assert "filters.region" in bad.json()["error"]["message"]
        nested = http.post("/search", json={"query": "수도", "filters": {"region": [["서울"]]}})
        assert nested.status_code == 422
        ok = http.post("/search", json={"query": "수도", "filters": {"region": ["서울", "부산"]}, "k": 2})
        assert ok.status_code == 200 and len(ok.json()["hits"]) == 2


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"input": "\xff\xfe"}'], ids=["deep", "not-utf8"]
)
def test_unreadable_bodies_are_malformed_json(server, body):
    with _one_connection(server.url) as http:
        r = http.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and _code(r) == "malformed_json", r.text
        assert http.get("/health").status_code == 200


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_idle_and_dribbling_connections_are_closed(server):
    port = server.port
    with socket.create_connection(("127.0.0.1", port)) as idle:
        assert _closed_within(idle, 5.0)  # --read-timeout 1.5: sent nothing
    with socket.create_connection(("127.0.0.1", port)) as slow:
        started = time.monotonic()
        slow.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < 6 and not closed:
            try:
                slow.sendall(b"X")  # one header byte now and then
            except OSError:
                closed = True
                break
            closed = _closed_within(slow, 0.3)
        assert closed and time.monotonic() - started < 6
    with httpx.Client(base_url=server.url, timeout=30) as http:  # a quick client is served
        assert http.get("/health").status_code == 200


def test_a_failure_inside_a_route_ends_with_its_answer(tiny):
    from koe5.serve import create_app

    app = create_app(tiny)
    broken = APIRouter()

    @broken.get("/broken")
    def fail() -> None:
        raise RuntimeError("a bug")

    app.include_router(broken)
    # raise_server_exceptions: an exception reaching the server would fail this request
    with TestClient(app, raise_server_exceptions=True) as client:
        r = client.get("/broken")
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "a bug" not in r.text
        assert client.get("/health").status_code == 200
