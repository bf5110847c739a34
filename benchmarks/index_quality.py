"""What ``koe5 search`` finds: NDCG@10 of a real index (chunked) on koe5's bundled Korean suite.

``koe5 bench --retrievers dense,bm25,hybrid`` ranks whole documents (the dense model truncates those
over 512 tokens: 265 of AutoRAG's 720). This script builds a :class:`koe5.search.Index` of each task
(documents cut into chunks that fit the model, each document scored by its best chunk) and searches
it once per query in each mode, next to the whole-document baseline of the same run.

    .venv/bin/python benchmarks/index_quality.py --out benchmarks/results/index_quality.json

Vectors go through koe5's embedding cache, so only chunks not seen before are encoded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from koe5.embcache import EmbeddingCache
from koe5.evaluation import DenseRetriever, evaluate_split
from koe5.search import BM25Retriever, HybridRetriever, IndexRetriever
from koe5.search.hybrid import DEFAULT_FUSION
from koe5.tasks import BUNDLED, get_task


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default=",".join(BUNDLED))
    parser.add_argument("--chunk-tokens", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--out", type=Path, help="write the figures here (JSON)")
    args = parser.parse_args()

    import koe5

    encoder = koe5.load(args.model)
    cache = EmbeddingCache()
    dense = DenseRetriever(encoder, cache=cache)
    options = {"chunk_tokens": args.chunk_tokens, "overlap": args.overlap}
    retrievers = {
        "whole documents: dense": dense,
        "whole documents: bm25": BM25Retriever(),
        "whole documents: hybrid": HybridRetriever(dense, BM25Retriever()),
        **{
            f"index: {mode}": IndexRetriever(encoder, mode, cache=cache, **options)
            for mode in ("dense", "bm25", "hybrid")
        },
    }
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    table: dict[str, dict[str, float]] = {name: {} for name in retrievers}
    for task in tasks:
        data = get_task(task).load()
        for name, retriever in retrievers.items():
            started = time.perf_counter()
            table[name][task] = evaluate_split(retriever, data, ks=(10,))["ndcg_at_10"]
            print(
                f"# {task} {name}: {table[name][task]:.5f} ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    print(f"\nNDCG@10, {args.model}, chunks of {args.chunk_tokens or encoder.max_length} tokens\n")
    print("| retriever | " + " | ".join(tasks) + " | average |")
    print("|---" + "|---:" * (len(tasks) + 1) + "|")
    for name, row in table.items():
        avg = sum(row.values()) / len(row)
        print(f"| {name} | " + " | ".join(f"{row[t]:.5f}" for t in tasks) + f" | {avg:.5f} |")
    if args.out:
        result = {
            "model": args.model,
            "chunk tokens": args.chunk_tokens or encoder.max_length,
            "overlap": args.overlap,
            "fusion": DEFAULT_FUSION.label,
            "ndcg_at_10": table,
        }
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
