"""koe5 serve under concurrent clients, with and without micro-batching, against the library's ceiling.

For 1, 8 and 32 concurrent clients, each sending requests of 1 to 16 short Korean texts (KorQuAD
questions) to ``POST /v1/embeddings`` of a real ``koe5 serve`` on 127.0.0.1 (base64 vectors, as the
openai client asks by default), it measures texts/s, requests/s and p50/p99 latency, with batching
(the default settings) and with ``--no-batching`` (each request its own forward pass), on the same
requests. Both servers are up at once (the idle one uses no CPU) and the two are measured in turns,
``--rounds`` times, so that a change in the machine's speed hits both alike; figures pool the rounds.
The library itself runs in the same process before and after: ``Encoder.encode`` over all the texts
in one call (the ceiling) and one call per request (the best a server without batching can do).

    python benchmarks/serve_load.py [--model default] [--clients 1,8,32] [--requests 24,64,128]
                                    [--rounds 2] [--seconds 30] [--json]

Every phase is bounded: at most ``--requests`` requests and ``--seconds`` seconds per configuration
and round. All traffic goes to 127.0.0.1. The load generator (httpx, asyncio) shares the machine and
takes CPU from the server, as a co-located client would; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from importlib import resources

import numpy as np


def korean_questions() -> list[str]:
    """KorQuAD v1 dev questions bundled with koe5 (short: ~10-40 characters)."""
    path = resources.files("koe5").joinpath("data/eval/korquad_v1/KorQuAD_v1.0_dev.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [qa["question"] for art in data["data"] for para in art["paragraphs"] for qa in para["qas"]]


def workload(n_requests: int, questions: list[str], seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.sample(questions, rng.randint(1, 16)) for _ in range(n_requests)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: str, extra: list[str]) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", "from koe5.cli import app; app()", "-q", "serve", "--model", model]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--max-queue", "1024", *extra]
        env = {k: v for k, v in os.environ.items() if k != "KOE5_API_KEY"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"koe5 serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise SystemExit("koe5 serve did not start in 120 s")

    def batch_stats(self) -> tuple[float, float]:
        """(batches, requests in them) so far, from /metrics."""
        import httpx

        values = {}
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(("koe5_batch_requests_count", "koe5_batch_requests_sum")):
                name, value = line.split()
                values[name] = float(value)
        return values["koe5_batch_requests_count"], values["koe5_batch_requests_sum"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(url: str, requests: list[list[str]], clients: int, seconds: float) -> dict:
    """``clients`` concurrent loops sending ``requests`` in order until done or ``seconds`` passed."""
    import httpx

    latencies: list[float] = []
    texts = 0
    queue = iter(requests)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one_client() -> None:
            nonlocal texts
            for batch in queue:
                if time.perf_counter() > deadline:
                    return
                start = time.perf_counter()
                r = await client.post(
                    "/v1/embeddings", json={"input": batch, "model": "koe5", "encoding_format": "base64"}
                )
                latencies.append(time.perf_counter() - start)
                r.raise_for_status()
                texts += len(batch)

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "texts": texts, "seconds": wall}


def pooled(runs: list[dict]) -> dict:
    """Rounds of one configuration as one figure: totals over total time, percentiles over all."""
    lat = np.concatenate([r["latencies"] for r in runs]) * 1000
    texts, seconds = sum(r["texts"] for r in runs), sum(r["seconds"] for r in runs)
    return {
        "requests": len(lat),
        "texts": texts,
        "seconds": round(seconds, 2),
        "texts_per_s": round(texts / seconds, 1),
        "requests_per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
    }


def warm_up(url: str, questions: list[str]) -> None:
    asyncio.run(load(url, workload(10, questions, seed=99), 2, 30))


def library(enc, requests: list[list[str]]) -> dict:
    flat = [t for r in requests for t in r]
    start = time.perf_counter()
    enc.encode_passages(flat)
    one_call_s = time.perf_counter() - start
    start = time.perf_counter()
    for r in requests:
        enc.encode_passages(r)
    per_request_s = time.perf_counter() - start
    return {
        "texts": len(flat),
        "one_call_texts_per_s": round(len(flat) / one_call_s, 1),
        "call_per_request_texts_per_s": round(len(flat) / per_request_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", default="24,64,128", help="requests per client count and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0, help="time cap per configuration and round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    counts = [int(x) for x in args.requests.split(",")]
    if len(counts) != len(clients):
        raise SystemExit("--requests needs one count per --clients entry")

    import koe5

    questions = korean_questions()
    plans = {c: workload(n, questions, seed=c) for c, n in zip(clients, counts, strict=True)}
    enc = koe5.load(args.model, device="cpu")
    enc.encode_passages(questions[:64])  # warm-up
    sample = plans[max(clients)]
    flat = [t for r in sample for t in r]
    tokens = sum(len(ids) for ids in enc.tokenize([enc.passage_prefix + t for t in flat]))
    report: dict = {
        "model": enc.name,
        "cpus": os.cpu_count(),
        "torch_threads": __import__("torch").get_num_threads(),
        "tokens_per_text": round(tokens / len(flat), 1),
        "load_before": round(os.getloadavg()[0], 2),
        "library_before": library(enc, sample),
        "server": [],
    }
    servers = {True: Server(args.model, []), False: Server(args.model, ["--no-batching"])}
    try:
        for server in servers.values():
            warm_up(server.url, questions)
        for c in clients:
            runs: dict[bool, list[dict]] = {True: [], False: []}
            batches = {True: [0.0, 0.0], False: [0.0, 0.0]}
            for _ in range(args.rounds):
                for batching, server in servers.items():
                    before = server.batch_stats()
                    runs[batching].append(asyncio.run(load(server.url, plans[c], c, args.seconds)))
                    after = server.batch_stats()
                    batches[batching][0] += after[0] - before[0]
                    batches[batching][1] += after[1] - before[1]
            for batching in servers:
                n, requests = batches[batching]
                row = {"clients": c, "batching": batching, **pooled(runs[batching])}
                row["requests_per_batch"] = round(requests / n, 2) if n else None
                report["server"].append(row)
    finally:
        for server in servers.values():
            server.stop()
    report["library_after"] = library(enc, sample)
    report["load_after"] = round(os.getloadavg()[0], 2)

    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    before, after = report["library_before"], report["library_after"]
    print(
        f"# {report['model']}, {report['cpus']} CPUs, {report['torch_threads']} torch threads, load "
        f"{report['load_before']} before / {report['load_after']} after; {report['tokens_per_text']} "
        f"tokens per text"
    )
    print(
        f"library over {before['texts']} texts, before / after: one call {before['one_call_texts_per_s']} / "
        f"{after['one_call_texts_per_s']} texts/s (ceiling); one call per request "
        f"{before['call_per_request_texts_per_s']} / {after['call_per_request_texts_per_s']} texts/s"
    )
    print()
    print("| clients | batching | requests | texts/s | requests/s | p50 ms | p99 ms | requests/batch |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in report["server"]:
        print(
            f"| {r['clients']} | {'on' if r['batching'] else 'off'} | {r['requests']} | {r['texts_per_s']} | "
            f"{r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['requests_per_batch']} |"
        )


if __name__ == "__main__":
    main()
