"""A real koe5 serve process under a full queue (429) and through a graceful shutdown (SIGTERM while a
request is in flight: the request is answered, then the process exits).

The server holds each batch open for 600 ms (``--batch-wait-ms``), so requests stay in flight long
enough to fill the queue and to be caught by the signal.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import pytest

from serve_process import ServerProcess


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    args = ["--model", str(tiny_model_dir), "--max-queue", "2", "--batch-wait-ms", "600"]
    proc = ServerProcess(args, tmp_path_factory.mktemp("serve-log") / "server.log")
    proc.wait_ready()
    yield proc
    proc.stop()


def post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body at once, each from its own thread and connection."""
    out: list = [None] * len(bodies)

    def send(i: int) -> None:
        out[i] = httpx.post(f"{url}/embed", json=bodies[i], timeout=30)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_a_full_queue_answers_429_naming_the_limit(server):
    responses = post_all(server.url, [{"inputs": f"서울 {i}"} for i in range(5)])
    codes = [r.status_code for r in responses]
    # two are admitted and held; the others, arriving meanwhile, are refused (a very slow machine may
    # start a thread only after the first batch is done, and that one is admitted then)
    assert set(codes) == {200, 429} and codes.count(200) >= 2, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["code"] == "max_queue" and refused.json()["error_type"] == "overloaded"
    assert "max_queue" in refused.json()["error"] and refused.headers["retry-after"] == "1"
    assert httpx.post(f"{server.url}/embed", json={"inputs": "서울"}).status_code == 200  # and then it flows


def test_sigterm_drains_requests_in_flight(server, tiny, sample_texts):
    result: dict = {}

    def send() -> None:
        result["response"] = httpx.post(f"{server.url}/embed", json={"inputs": sample_texts[:3]}, timeout=30)
        result["answered"] = time.monotonic()

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/health").json()["queue"] < 1:  # wait until it is in the batcher
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.01)
    signalled = time.monotonic()
    server.terminate()
    thread.join(20)
    assert result["answered"] > signalled  # it was in flight when the signal came
    response = result["response"]
    assert response.status_code == 200
    np.testing.assert_allclose(np.array(response.json()), tiny.encode_passages(sample_texts[:3]), atol=2e-5)
    # uvicorn re-raises the signal after its clean shutdown, so the exit status is SIGTERM's
    assert server.proc.wait(20) in (0, -signal.SIGTERM), server.output()
    with pytest.raises(httpx.TransportError):  # and nothing listens any more
        httpx.get(f"{server.url}/health", timeout=2)
    assert "Application shutdown complete" in server.output()
