"""How to fuse dense and Korean BM25 rankings: NDCG@10 on koe5's bundled Korean suite.

Ranks every task once with the dense model (through the embedding cache) and once with BM25, then
scores each fusion setting (method x dense weight) on those same rankings, next to both retrievers
alone. The best average chose ``koe5.search.hybrid.DEFAULT_FUSION``.

    .venv/bin/python benchmarks/hybrid_fusion.py                 # default model, bundled tasks
    .venv/bin/python benchmarks/hybrid_fusion.py --json out.json

The first run encodes the suite (minutes on a CPU); later runs take the vectors from the cache.
"""

from __future__ import annotations

import argparse
import json
import time

from koe5.embcache import EmbeddingCache
from koe5.evaluation import DenseRetriever
from koe5.evaluation.metrics import evaluate_run
from koe5.search import BM25Retriever, Fusion
from koe5.search.hybrid import DEFAULT_FUSION
from koe5.tasks import BUNDLED, get_task

WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
METHODS = ("rrf", "minmax")


def ndcg10(qrels, run) -> float:
    return evaluate_run(qrels, {q: run.get(q, {}) for q in qrels}, ks=(10,))["ndcg_at_10"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default=",".join(BUNDLED))
    parser.add_argument("--depth", type=int, default=DEFAULT_FUSION.depth, help="candidates per side")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import koe5

    encoder = koe5.load(args.model)
    dense = DenseRetriever(encoder, cache=EmbeddingCache(), show_progress=True)
    bm25 = BM25Retriever()
    settings = [Fusion(m, w, depth=args.depth) for m in METHODS for w in WEIGHTS]
    rows: dict[str, dict[str, float]] = {"dense": {}, "bm25": {}}
    rows.update({f"{f.method} w={f.weight:g}": {} for f in settings})
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for name in tasks:
        started = time.perf_counter()
        data = get_task(name).load()
        depth = min(args.depth, len(data.corpus))
        dense_run = dense.rank(data, depth)
        bm25_run = bm25.rank(data, depth)
        rows["dense"][name] = ndcg10(data.qrels, dense_run)
        rows["bm25"][name] = ndcg10(data.qrels, bm25_run)
        for f in settings:
            fused = {
                q: dict(list(f.fuse(dense_run[q], bm25_run.get(q, {})).items())[:10]) for q in data.queries
            }
            rows[f"{f.method} w={f.weight:g}"][name] = ndcg10(data.qrels, fused)
        print(f"# {name}: {time.perf_counter() - started:.1f} s", flush=True)

    for row in rows.values():
        row["average"] = sum(row[t] for t in tasks) / len(tasks)
    print(f"\nNDCG@10, {args.model}, fusion depth {args.depth}\n")
    print("| ranking | " + " | ".join(tasks) + " | average |")
    print("|---" + "|---:" * (len(tasks) + 1) + "|")
    for label, row in rows.items():
        print(f"| {label} | " + " | ".join(f"{row[t]:.5f}" for t in [*tasks, "average"]) + " |")
    best = max((r for r in rows if r not in ("dense", "bm25")), key=lambda r: rows[r]["average"])
    single = max(rows["dense"]["average"], rows["bm25"]["average"])
    print(f"\nbest fusion: {best} ({rows[best]['average']:.5f}; better single retriever {single:.5f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"model": args.model, "depth": args.depth, "ndcg_at_10": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
