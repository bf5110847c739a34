"""Choosing the hybrid fusion: NDCG@10 of every setting on dev tasks, then the bundled suite once.

Dev tasks come from the Korean training material (:func:`koe5.train.devsets.dev_tasks`: StrategyQA,
Welfare-QA, chatbot, question pairs, paraKQC, and whole-document and page variants of the first two);
the bundled benchmark tasks are the test and choose nothing. Every task is ranked once by the dense
model (documents whole, through the embedding cache) and once by BM25, 100 candidates a side; then
every fusion setting is scored on those rankings:

- fixed dense weights 0.3-0.7 for rrf, minmax and dbsf;
- adaptive weights from BM25's coverage (``Fusion.adaptive = (low, high)``) for minmax and dbsf;
- adaptive weights from each side's peak and the coverage (``Fusion.confidence``) for minmax and dbsf.

The rule that picks the default, on dev tasks only, is the aim itself: of the settings that are
never more than 0.005 NDCG@10 below the better of dense and BM25 on any dev task, the highest dev
average; averages closer than 0.001 (rounded to three places) are within the noise of 300 queries a
task, and among them the setting furthest from losing wins. If no setting qualifies, the smallest
worst regret (on each dev task, the best setting's NDCG@10 minus this one's), ties by the average.

For koe5's default, each task also gets the difference to the better part with its 95% interval
(a paired bootstrap over the queries): a task of a few dozen queries cannot tell a difference of a
hundredth from none, and the aim's 0.005 is finer than most tasks resolve.

    .venv/bin/python benchmarks/hybrid_fusion.py --out benchmarks/results/hybrid_fusion.json

The first run encodes the dev tasks and the suite (~15 min on 2 CPU cores); later runs use the cache.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
from scipy import stats

from koe5.embcache import EmbeddingCache
from koe5.evaluation import BM25Retriever, DenseRetriever
from koe5.evaluation.metrics import evaluate_run, query_ndcg
from koe5.evaluation.retrievers import fuse_runs
from koe5.search import Fusion
from koe5.search.hybrid import DEFAULT_FUSION
from koe5.tasks import BUNDLED, get_task
from koe5.train.devsets import dev_tasks

DEPTH = 100


def settings() -> list[Fusion]:
    fixed = [Fusion(m, w, depth=DEPTH) for m in ("rrf", "minmax", "dbsf") for w in (0.3, 0.4, 0.5, 0.6, 0.7)]
    adaptive = [
        Fusion(m, depth=DEPTH, adaptive=(low, high))
        for m in ("minmax", "dbsf")
        for low, high in itertools.product((0.1, 0.2, 0.3, 0.4), (0.6, 0.7, 0.8, 0.9))
    ]
    confident = [
        Fusion(m, depth=DEPTH, adaptive=low_high, confidence=(slope, bias, coverage_weight))
        for m in ("minmax", "dbsf")
        for low_high in ((0.0, 0.8), (0.1, 0.7), (0.1, 0.8), (0.2, 0.8))
        for slope, bias, coverage_weight in itertools.product((0.5, 1.0), (0.0, 0.5, 1.0), (0.0, 1.0, 2.0))
    ]
    return fixed + adaptive + confident


def ndcg10(qrels, run) -> float:
    return evaluate_run(qrels, {q: run.get(q, {}) for q in qrels}, ks=(10,))["ndcg_at_10"]


def score_task(data, dense: DenseRetriever, candidates: list[Fusion]) -> tuple[dict[str, float], dict]:
    """NDCG@10 of dense, BM25 and every setting on one task, and :func:`interval` of the default's."""
    bm25 = BM25Retriever()
    depth = min(DEPTH, len(data.corpus))
    dense_run, bm25_run = dense.rank(data, depth), bm25.rank(data, depth)
    idf = bm25.idf_totals(data)
    out = {"dense": ndcg10(data.qrels, dense_run), "bm25": ndcg10(data.qrels, bm25_run)}
    runs = {"dense": dense_run, "bm25": bm25_run}
    for f in candidates:
        fused = fuse_runs(f, data.queries, dense_run, bm25_run, idf, 10)
        out[f.label] = ndcg10(data.qrels, fused)
        if f.label == DEFAULT_FUSION.label:
            runs[f.label] = fused
    better = "dense" if out["dense"] >= out["bm25"] else "bm25"
    return out, interval(data.qrels, runs[DEFAULT_FUSION.label], runs[better]) | {"better part": better}


def interval(qrels, run, base) -> dict:
    """``run``'s NDCG@10 minus ``base``'s, and its 95% interval: a paired bootstrap over the queries
    (2,000 resamples, seeded; scipy's percentile method). How far a difference on one task can be
    told from none depends on how many queries the task has."""
    ours, theirs = (query_ndcg(qrels, {q: r.get(q, {}) for q in qrels}) for r in (run, base))
    a = np.array([ours[q] for q in qrels])
    b = np.array([theirs[q] for q in qrels])
    found = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=2000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    low, high = found.confidence_interval
    return {"queries": len(a), "difference": round(float(np.mean(a - b)), 5),
            "low": round(float(low), 5), "high": round(float(high), 5)}  # fmt: skip


def choose(scores: dict[str, dict[str, float]], labels: list[str]) -> str:
    """The rule of the module docstring, on the tasks in ``scores`` (the dev tasks)."""
    best = {task: max(row[label] for label in labels) for task, row in scores.items()}
    summaries = {label: summary(scores, label) for label in labels}
    qualified = [label for label in labels if summaries[label]["worst loss to the better part"] >= -0.005]
    if qualified:

        def aim(label: str) -> tuple[float, float]:
            s = summaries[label]
            return (-round(s["average"], 3), -s["worst loss to the better part"])

        return min(qualified, key=aim)

    def key(label: str) -> tuple[float, float]:
        regret = max(best[task] - row[label] for task, row in scores.items())
        average = sum(row[label] for row in scores.values()) / len(scores)
        return (round(regret, 5), -average)

    return min(labels, key=key)


def summary(scores: dict[str, dict[str, float]], label: str) -> dict[str, float]:
    margin = min(row[label] - max(row["dense"], row["bm25"]) for row in scores.values())
    average = sum(row[label] for row in scores.values()) / len(scores)
    return {"average": round(average, 5), "worst loss to the better part": round(margin, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", help="write the figures here (JSON)")
    args = parser.parse_args()

    import koe5

    encoder = koe5.load(args.model)
    dense = DenseRetriever(encoder, cache=EmbeddingCache())
    candidates = settings()
    labels = [f.label for f in candidates]
    assert DEFAULT_FUSION.label in labels, "the default must be among the settings scored"
    dev: dict[str, dict[str, float]] = {}
    test: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, dict]] = {"dev": {}, "bundled": {}}
    for name, data in dev_tasks(pages=True, small=True).items():
        started = time.perf_counter()
        dev[name], intervals["dev"][name] = score_task(data, dense, candidates)
        print(f"# dev {name}: {time.perf_counter() - started:.1f} s", flush=True)
    chosen = choose(dev, labels)
    print(f"chosen on the dev tasks: {chosen} (koe5's default: {DEFAULT_FUSION.label})", flush=True)
    for name in BUNDLED:
        started = time.perf_counter()
        test[name], intervals["bundled"][name] = score_task(get_task(name).load(), dense, candidates)
        print(f"# test {name}: {time.perf_counter() - started:.1f} s", flush=True)

    shown = ["dense", "bm25", "minmax-0.4", "dbsf-0.4", chosen]
    for title, scores in (("dev", dev), ("bundled", test)):
        print(f"\nNDCG@10 on the {title} tasks\n")
        print("| ranking | " + " | ".join(scores) + " | average | worst loss to the better part |")
        for label in shown:
            s = summary(scores, label)
            cells = " | ".join(f"{scores[t][label]:.5f}" for t in scores)
            print(f"| {label} | {cells} | {s['average']:.5f} | {s['worst loss to the better part']:+.5f} |")
    print("\nthe default minus the better part, with its 95% interval over the queries\n")
    for part, rows in intervals.items():
        for name, row in rows.items():
            print(f"{part} {name}: {row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}] "
                  f"({row['queries']} queries, against {row['better part']})")  # fmt: skip
    result = {
        "model": args.model,
        "depth": DEPTH,
        "rule": "never more than 0.005 below the better part on a dev task, then the highest dev average "
        "(to 0.001), then the smallest loss; if none qualifies, the smallest worst regret",
        "chosen": chosen,
        "default": DEFAULT_FUSION.label,
        "dev": dev,
        "bundled": test,
        "summary": {label: {"dev": summary(dev, label), "bundled": summary(test, label)} for label in labels},
        "intervals": intervals,
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
