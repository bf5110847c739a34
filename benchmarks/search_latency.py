"""Dense search speed: exact inner product vs faiss HNSW on synthetic 384-dim vectors.

For each collection size: build time, query latency p50/p99 (one query at a time, after warm-up
queries) and, for HNSW, recall@10 against the exact top 10 of the same queries. Exact search is the
baseline, measured in the same run. This is what chose ``koe5.search.dense.ANN_THRESHOLD`` and the
HNSW defaults.

    .venv/bin/python benchmarks/search_latency.py                       # 10k, 100k, 1M
    .venv/bin/python benchmarks/search_latency.py --sizes 10000,100000 --ef-search 64,128,256

Vectors: unit-normalised points around 2,000 random unit centres (real embeddings cluster by topic;
uniform random vectors in 384 dimensions are the worst case for HNSW and would understate recall),
queries drawn the same way but not from the collection. ``--uniform`` uses uniform random vectors.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from koe5.search.dense import DenseIndex, HNSWParams

# Noise around each centre: a point's cosine to its centre is about 0.85 and to its nearest
# neighbours 0.7-0.8, close to what multilingual-e5-small gives related Korean passages.
SPREAD = 0.6


def synthetic(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray | None) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: 1M x 384 float64 noise would need 3 GB at once
        m = min(100_000, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        if centres is not None:  # a unit centre plus noise of norm ~SPREAD
            block = centres[rng.integers(0, len(centres), m)] + SPREAD * noise / np.sqrt(dim)
        else:
            block = noise
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def latencies(index: DenseIndex, queries: np.ndarray, k: int, warmup: int) -> tuple[np.ndarray, list]:
    for q in queries[:warmup]:
        index.search(q, k)
    times, results = [], []
    for q in queries[warmup:]:
        t = time.perf_counter()
        rows, _ = index.search(q, k)
        times.append(time.perf_counter() - t)
        results.append(rows)
    return np.asarray(times) * 1000, results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--m", type=int, default=HNSWParams.m)
    parser.add_argument("--ef-construction", type=int, default=HNSWParams.ef_construction)
    parser.add_argument("--ef-search", default=str(HNSWParams.ef_search), help="comma-separated")
    parser.add_argument("--uniform", action="store_true", help="uniform random vectors instead of clusters")
    args = parser.parse_args()

    import faiss

    rng = np.random.default_rng(0)
    centres = None
    if not args.uniform:
        centres = rng.standard_normal((2000, args.dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    efs = [int(x) for x in args.ef_search.split(",")]
    print(
        f"# {os.cpu_count()} CPUs, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads), "
        f"numpy {np.__version__}; {'uniform' if args.uniform else 'clustered'} {args.dim}-dim vectors, "
        f"{args.queries} queries after {args.warmup} warm-up, k={args.k}; HNSW M={args.m}, "
        f"efConstruction={args.ef_construction}",
        flush=True,
    )
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        vectors = synthetic(n, args.dim, rng, centres)
        queries = synthetic(args.queries + args.warmup, args.dim, rng, centres)

        started = time.perf_counter()
        exact = DenseIndex(args.dim, "exact")
        exact.add(vectors)
        exact_build = time.perf_counter() - started
        exact_ms, truth = latencies(exact, queries, args.k, args.warmup)
        rows.append((n, "exact", "-", exact_build, exact_ms, 1.0))
        print(
            f"{n:>9} exact      build {exact_build:8.2f} s  p50 {np.percentile(exact_ms, 50):8.3f} ms  "
            f"p99 {np.percentile(exact_ms, 99):8.3f} ms",
            flush=True,
        )

        started = time.perf_counter()
        hnsw = DenseIndex(args.dim, "hnsw", HNSWParams(args.m, args.ef_construction, efs[0]))
        hnsw.add(vectors)
        hnsw_build = time.perf_counter() - started
        for ef in efs:
            hnsw.params = HNSWParams(args.m, args.ef_construction, ef)
            hnsw_ms, found = latencies(hnsw, queries, args.k, args.warmup)
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found, truth, strict=True)])
            rows.append((n, "hnsw", ef, hnsw_build, hnsw_ms, recall))
            print(
                f"{n:>9} hnsw ef={ef:<4} build {hnsw_build:8.2f} s  "
                f"p50 {np.percentile(hnsw_ms, 50):8.3f} ms  "
                f"p99 {np.percentile(hnsw_ms, 99):8.3f} ms  recall@{args.k} {recall:.4f}",
                flush=True,
            )
        del exact, hnsw, vectors

    print("\n| vectors | search | efSearch | build (s) | p50 (ms) | p99 (ms) | recall@10 vs exact |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, kind, ef, build, ms, recall in rows:
        print(
            f"| {n:,} | {kind} | {ef} | {build:.2f} | {np.percentile(ms, 50):.3f} | "
            f"{np.percentile(ms, 99):.3f} | {recall:.4f} |"
        )


if __name__ == "__main__":
    main()
