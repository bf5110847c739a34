"""What ``koe5 search`` finds: NDCG@10 of a real index (chunked) on koe5's bundled Korean suite.

``koe5 bench --retrievers dense,bm25,hybrid`` ranks whole documents (the dense model truncates those
over 512 tokens: 265 of AutoRAG's 720). This script builds a :class:`koe5.search.Index` of each task
(documents cut into chunks that fit the model, each document scored by its best chunk) and searches
it once per query in each mode, next to the whole-document baseline of the same run.

    .venv/bin/python benchmarks/index_quality.py --out benchmarks/results/index_quality.json
    .venv/bin/python benchmarks/index_quality.py --dev --out benchmarks/results/index_quality_dev.json

``--dev`` runs the dev tasks from the training material instead (:func:`koe5.train.devsets.dev_tasks`
with its page tasks and small collections, where the hybrid default was chosen on whole documents):
whether the choice holds when a real index chunks the documents.

Vectors go through koe5's embedding cache, so only chunks not seen before are encoded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from koe5.embcache import EmbeddingCache
from koe5.evaluation import BM25Retriever, DenseRetriever, HybridRetriever, IndexRetriever, evaluate_split
from koe5.search.hybrid import DEFAULT_FUSION
from koe5.tasks import BUNDLED, get_task
from koe5.train.devsets import dev_tasks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default=",".join(BUNDLED))
    parser.add_argument("--chunk-tokens", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--dev", action="store_true", help="the dev tasks instead of the bundled suite")
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
    if args.dev:
        loaded = dev_tasks(pages=True, small=True)
    else:
        loaded = {t.strip(): None for t in args.tasks.split(",") if t.strip()}
    tasks = list(loaded)
    table: dict[str, dict[str, float]] = {name: {} for name in retrievers}
    for task in tasks:
        data = loaded[task] or get_task(task).load()
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
            "tasks": "dev tasks from the training material" if args.dev else "the bundled suite",
            "ndcg_at_10": table,
        }
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
