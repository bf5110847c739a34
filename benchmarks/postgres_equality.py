"""The PostgreSQL store returns what the folder index returns, on koe5's bundled Korean suite.

For each bundled task, the task's documents go into a folder index and into a PostgreSQL index (same
encoder, same chunking, vectors through koe5's embedding cache), and every query of the task is searched in
both, in each mode (dense, BM25, hybrid), top 10, with the same query vector. Recorded per task and mode:
queries whose top-10 ids and order differ, the largest score difference, and NDCG@10 of both runs.

    .venv/bin/python benchmarks/postgres_equality.py --out benchmarks/results/postgres_equality.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from koe5.embcache import EmbeddingCache, encode_cached
from koe5.evaluation.metrics import evaluate_run
from koe5.tasks import BUNDLED, get_task

MODES = ("dense", "bm25", "hybrid")


def compare(folder, database, data, vectors) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for mode in MODES:
        runs: tuple[dict, dict] = ({}, {})
        differ, worst = 0, 0.0
        for i, (qid, text) in enumerate(data.queries.items()):
            a, b = (
                index.search(text, k=10, mode=mode, query_vector=vectors[i]) for index in (folder, database)
            )
            if [h.doc_id for h in a] != [h.doc_id for h in b]:
                differ += 1
            worst = max([worst, *(abs(x.score - y.score) for x, y in zip(a, b, strict=False))])
            for run, hits in zip(runs, (a, b), strict=True):
                run[qid] = {h.doc_id: h.score for h in hits}
        ndcg = [evaluate_run(data.qrels, run, ks=(10,))["ndcg_at_10"] for run in runs]
        out[mode] = {
            "queries": len(data.queries),
            "top-10 differs": differ,
            "max score difference": worst,
            "ndcg@10 folder": ndcg[0],
            "ndcg@10 postgres": ndcg[1],
        }
        print(f"# {mode}: {out[mode]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default=",".join(BUNDLED))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import psycopg

    import koe5
    from koe5.search import Index
    from koe5.search.postgres.local import LocalPostgres

    encoder = koe5.load(args.model)
    cache = EmbeddingCache()
    results: dict = {"model": args.model, "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres(Path(tmp) / "pg") as pg:
        for task in (t.strip() for t in args.tasks.split(",") if t.strip()):
            print(f"# {task}", flush=True)
            data = get_task(task).load()
            docs = [{"id": d, "text": data.doc_text(d)} for d in data.corpus]
            vectors, _ = encode_cached(encoder, list(data.queries.values()), "query", cache)
            name = task.lower()
            folder = Index.build(docs, encoder, Path(tmp) / name, cache=cache)
            with Index.build(docs, encoder, pg.url(name), cache=cache) as database:
                results["tasks"][task] = {"chunks": len(folder), **compare(folder, database, data, vectors)}
        with psycopg.connect(pg.url()) as conn:
            results["postgres"] = conn.execute(
                "SELECT current_setting('server_version'), extversion FROM pg_extension"
                " WHERE extname = 'vector'"
            ).fetchone()
    text = json.dumps(results, ensure_ascii=False, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
