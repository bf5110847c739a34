"""What reranking adds: NDCG@10 of hybrid and dense, alone and reranked, on koe5's bundled suite.

For each bundled task the first stages rank every query (documents whole, as ``koe5 bench`` ranks them;
dense vectors through the embedding cache): hybrid (koe5's default fusion) to depth 100, dense to depth
50. The reranker then scores each query's candidates once (the union of both lists), and the rankings
are read from those scores: hybrid + rerank at depths 20, 50 and 100 (the first stage's top ``depth``
reordered), dense + rerank at depth 50. Pair scores are kept per task in ``--cache`` (one ``.npz`` per
task and reranker), so an interrupted run resumes at the task it was scoring.

Scoring every pair of the suite costs hours on a CPU (SQuAD-Kor has 5,774 questions): ``--queries N``
takes a seeded sample of N queries per task (all of a task with fewer); the first stages are scored
on the same sample, so every row compares like with like.

    .venv/bin/python benchmarks/rerank_quality.py --tasks PublicHealthQA --merge \
        --out benchmarks/results/rerank_quality.json
    .venv/bin/python benchmarks/rerank_quality.py --queries 40 --merge \
        --tasks BelebeleRetrieval,SQuADKorV1Retrieval,AutoRAGRetrieval \
        --out benchmarks/results/rerank_quality.json
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from koe5.embcache import EmbeddingCache
from koe5.evaluation import BM25Retriever, DenseRetriever
from koe5.evaluation.metrics import evaluate_run
from koe5.evaluation.retrievers import HybridRetriever
from koe5.tasks import BUNDLED, get_task
from koe5.tasks.data import sample_queries

HYBRID_DEPTHS = (20, 50, 100)
DENSE_DEPTH = 50


def ndcg10(qrels, run) -> float:
    return evaluate_run(qrels, {q: run.get(q, {}) for q in qrels}, ks=(10,))["ndcg_at_10"]


def top(run_q: dict, depth: int) -> list[str]:
    return sorted(run_q, key=run_q.__getitem__, reverse=True)[:depth]


def reranked(scores: dict, run: dict, depth: int) -> dict:
    """The first stage's top ``depth`` of each query, scored by the reranker."""
    return {q: {d: scores[q][d] for d in top(run.get(q, {}), depth)} for q in scores}


def score_tag(reranker, queries, seed) -> str:
    """The file name of a reranker's pair scores: its name, length, sample, and a digest of its weights,
    so that a model retrained under the same name (the default) is scored anew, not read from the cache."""
    name = reranker.name.replace("/", "_")
    read = f"{reranker.max_length}" + (f"-w{reranker.window}" if reranker.window else "")
    return f"{name}-{weights_digest(str(reranker.location))}-{read}-{queries}-{seed}"


@functools.cache
def weights_digest(location: str) -> str:
    """The first hex digits of the SHA-1 of a folder's weight files (read once a process: hundreds of MB)."""
    digest = hashlib.sha1()
    folder = Path(location)
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        with open(weights, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()[:10]


def pair_scores(reranker, data, candidates: dict[str, list[str]], path: Path) -> dict[str, dict[str, float]]:
    """The reranker's score of every (query, candidate): those a run wrote to ``path`` are read, the
    others scored and added (a first stage that changed since needs only its new candidates scored)."""
    out: dict[str, dict[str, float]] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            keys, values = saved["keys"], saved["scores"]
        for (q, d), s in zip(keys.tolist(), values.tolist(), strict=True):
            out.setdefault(q, {})[d] = s
    wanted = {q: [d for d in docs if d not in out.get(q, {})] for q, docs in candidates.items()}
    wanted = {q: docs for q, docs in wanted.items() if docs}
    if not wanted:
        return out
    started = time.perf_counter()
    for i, (q, docs) in enumerate(wanted.items(), 1):
        texts = [data.doc_text(d) for d in docs]
        out.setdefault(q, {}).update(zip(docs, reranker.score(data.queries[q], texts).tolist(), strict=True))
        if i % 20 == 0:
            print(f"#   {i}/{len(wanted)} queries, {time.perf_counter() - started:.0f} s", flush=True)
    keys = np.array([(q, d) for q, found in out.items() for d in found], dtype=str)
    scores = np.array([s for found in out.values() for s in found.values()], dtype=np.float64)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=keys, scores=scores)
    tmp.replace(path)  # a killed run leaves no half-written scores
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--max-length", type=int, default=None, help="the reranker's (default: its own)")
    parser.add_argument("--window", type=int, default=None, help="window tokens (0: none; default: its own)")
    parser.add_argument("--tasks", default=",".join(BUNDLED))
    parser.add_argument("--queries", type=int, default=None, help="a seeded sample of queries per task")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.rerank_cache"))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other tasks (and other fields) already in --out",
    )
    args = parser.parse_args()

    import koe5
    from koe5.rerank import Reranker

    reranker = Reranker.load(args.reranker, max_length=args.max_length, window=args.window)
    dense = DenseRetriever(koe5.load("default"), cache=EmbeddingCache())
    hybrid = HybridRetriever(dense, BM25Retriever())
    args.cache.mkdir(parents=True, exist_ok=True)
    tag = score_tag(reranker, args.queries, args.seed)
    rows: dict[str, dict[str, float]] = {}
    for name in (t.strip() for t in args.tasks.split(",") if t.strip()):
        data = sample_queries(get_task(name).load(), args.queries, args.seed)
        hybrid_run = hybrid.rank(data, min(max(HYBRID_DEPTHS), len(data.corpus)))
        dense_run = dense.rank(data, min(DENSE_DEPTH, len(data.corpus)))
        candidates = {}
        for q in data.queries:
            both = top(hybrid_run.get(q, {}), max(HYBRID_DEPTHS)) + top(dense_run.get(q, {}), DENSE_DEPTH)
            candidates[q] = list(dict.fromkeys(both))
        print(
            f"# {name}: {len(data.queries)} queries, {sum(map(len, candidates.values()))} pairs", flush=True
        )
        scores = pair_scores(reranker, data, candidates, args.cache / f"{name}-{tag}.npz")

        row = {
            "queries": len(data.queries),
            "hybrid": ndcg10(data.qrels, hybrid_run),
            "dense": ndcg10(data.qrels, dense_run),
        }
        for depth in HYBRID_DEPTHS:
            row[f"hybrid + rerank {depth}"] = ndcg10(data.qrels, reranked(scores, hybrid_run, depth))
        row[f"dense + rerank {DENSE_DEPTH}"] = ndcg10(data.qrels, reranked(scores, dense_run, DENSE_DEPTH))
        rows[name] = row
        print(f"# {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "queries"), flush=True)
    earlier = json.loads(args.out.read_text(encoding="utf-8")) if args.merge and args.out.is_file() else {}
    same = (earlier.get("reranker"), earlier.get("max_length"), earlier.get("window"))
    if earlier and same != (reranker.name, reranker.max_length, reranker.window):
        raise SystemExit(f"{args.out} holds another reranker's rows; merge refused")
    rows = {**earlier.get("ndcg_at_10", {}), **rows}  # a task rerun keeps its place, a new one comes last
    result = {
        **earlier,
        "reranker": reranker.name,
        "max_length": reranker.max_length,
        "window": reranker.window,
        "queries per task": "; ".join(f"{t} {row['queries']}" for t, row in rows.items()),
        "seed": args.seed,
        "first stage": f"hybrid {hybrid.fusion.label}",
        "ndcg_at_10": rows,
    }
    report(result, args.out)


def report(result: dict, out: Path | None) -> None:
    """Print the result as JSON, and write it to ``out`` if given."""
    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
