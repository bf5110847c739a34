"""Choosing how much of a reranked score is the reranker's: NDCG@10 of every weight on dev tasks, then
the bundled suite once.

A reranked candidate's score can be the reranker's alone (weight 1, the plain cross-encoder order) or
a blend with the first stage's: each list scaled to 0-1 over the candidates (min-max), then
``weight × reranker + (1 − weight) × first stage``. A reranker that is weaker than the first stage on
some kind of collection then moves the order less there.

Dev tasks come from the Korean training material (:func:`koe5.train.devsets.dev_tasks`, the page
tasks and the small collections included, as for the fusion: the same held-out groups the
reranker's training kept out, ``--queries`` of each source); the bundled tasks choose nothing.
Each query's first stage is the default hybrid, to depth 20; the reranker scores those candidates
once (kept in ``--cache``), and every weight is read from the same scores. The rule: the
smallest worst regret over the dev tasks, ties broken by the dev average.

Each bundled row also gets its difference to the hybrid with a 95% interval (a paired bootstrap over
the task's queries, as ``hybrid_fusion.py`` gives the fusion's): a sample of 40 queries tells only
large differences apart.

The bundled rows reuse the pair scores ``rerank_quality.py`` keeps (same reranker, length, sample and
seed), so the suite's queries are scored once for both scripts.

    .venv/bin/python benchmarks/rerank_weight.py --window 0 --out /tmp/rerank_weight_no_window.json
    .venv/bin/python benchmarks/rerank_weight.py --against /tmp/rerank_weight_no_window.json \
        --out benchmarks/results/rerank_weight.json

``--against`` (a result of this script at another ``--window``) also chooses the window and the weight
together: the same rule over every (window, weight) of both runs ("window choice").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from koe5.embcache import EmbeddingCache
from koe5.evaluation import BM25Retriever, DenseRetriever
from koe5.evaluation.retrievers import HybridRetriever
from koe5.search import Fusion
from koe5.search.hybrid import DEFAULT_FUSION
from koe5.tasks import get_task
from koe5.tasks.data import sample_queries
from koe5.train.devsets import dev_tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hybrid_fusion import interval
from rerank_quality import HYBRID_DEPTHS, ndcg10, pair_scores, report, score_tag, top

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
DEV_DEPTH = 20
#: The bundled samples rerank_quality.py scored (queries per task; None: all).
BUNDLED_SAMPLES = {
    "PublicHealthQA": None,
    "BelebeleRetrieval": 40,
    "SQuADKorV1Retrieval": 40,
    "AutoRAGRetrieval": 40,
}


def blended(scores: dict, run: dict, depth: int, weight: float) -> dict:
    """Each query's first-stage top ``depth``, scored ``weight`` × reranker + the rest × first stage."""
    fusion = Fusion("minmax", weight=weight, depth=depth)
    out = {}
    for q, found in run.items():
        keys = top(found, depth)
        out[q] = fusion.fuse({d: scores[q][d] for d in keys}, {d: found[d] for d in keys})
    return out


def choose(scores: dict) -> tuple[dict, dict, object]:
    """The rule, over any candidates (``scores``: candidate -> {dev task: NDCG@10}): each candidate's
    worst regret (on each task, the best candidate's NDCG@10 minus its), its dev average, and the one
    with the smallest worst regret, ties broken by the average."""
    tasks = next(iter(scores.values()))
    best = {t: max(row[t] for row in scores.values()) for t in tasks}
    regret = {c: max(best[t] - row[t] for t in tasks) for c, row in scores.items()}
    average = {c: sum(row.values()) / len(row) for c, row in scores.items()}
    return regret, average, min(scores, key=lambda c: (round(regret[c], 6), -average[c]))


def window_choice(other: dict, window: int | None, dev: dict) -> dict:
    """Window and weight chosen together by :func:`choose` over every (window, weight) of this run's
    ``dev`` table and ``other`` (a result of this script at another window)."""
    runs = {str(other.get("window") or "none"): other["dev"]["ndcg_at_10"], str(window or "none"): dev}
    if len(runs) < 2 or other["dev"]["ndcg_at_10"].keys() != dev.keys():
        raise SystemExit("--against needs a result of the same dev tasks at another --window")
    scores = {
        (win, w): {t: row[w] for t, row in table.items()}
        for win, table in runs.items()
        for w in dev[next(iter(dev))]
    }
    regret, average, (win, w) = choose(scores)
    by_window = {}
    for name in runs:
        own = min((c for c in scores if c[0] == name), key=lambda c: (round(regret[c], 6), -average[c]))
        by_window[name] = {
            "chosen weight": float(own[1]),
            "worst regret (joint)": round(regret[own], 5),
            "dev average": round(average[own], 5),
            "reranker alone": round(average[(name, "1.0")], 5),
        }
    return {
        "rule": "over every (window, weight) of both runs: the smallest worst regret on the dev tasks, "
        "ties by the dev average",
        "chosen": {"window": None if win == "none" else int(win), "weight": float(w)},
        "by window": by_window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--max-length", type=int, default=None, help="the reranker's (default: its own)")
    parser.add_argument("--window", type=int, default=None, help="window tokens (0: none; default: its own)")
    parser.add_argument("--queries", type=int, default=100, help="dev queries per source")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.rerank_cache"))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--against",
        type=Path,
        help="this script's result for the reranker at another --window: choose window and weight together",
    )
    args = parser.parse_args()

    import koe5
    from koe5.rerank import Reranker

    reranker = Reranker.load(args.reranker, max_length=args.max_length, window=args.window)
    hybrid = HybridRetriever(DenseRetriever(koe5.load("default"), cache=EmbeddingCache()), BM25Retriever())
    args.cache.mkdir(parents=True, exist_ok=True)
    dev: dict[str, dict[str, float]] = {}
    for name, data in dev_tasks(queries=args.queries, seed=args.seed, pages=True, small=True).items():
        run = hybrid.rank(data, min(DEV_DEPTH, len(data.corpus)))
        candidates = {q: top(run.get(q, {}), DEV_DEPTH) for q in data.queries}
        tag = f"dev-{name.replace('/', '_')}-{score_tag(reranker, args.queries, args.seed)}"
        scores = pair_scores(reranker, data, candidates, args.cache / f"{tag}.npz")
        dev[name] = {f"{w:.1f}": ndcg10(data.qrels, blended(scores, run, DEV_DEPTH, w)) for w in WEIGHTS}
        print(f"# {name}: " + ", ".join(f"{w} {v:.4f}" for w, v in dev[name].items()), flush=True)
    regret, average, chosen = choose({w: {t: row[w] for t, row in dev.items()} for w in dev[next(iter(dev))]})
    print(f"# chosen weight {chosen}: worst regret {regret[chosen]:.4f}, dev average {average[chosen]:.4f}")
    windows = None
    if args.against:
        windows = window_choice(json.loads(args.against.read_text(encoding="utf-8")), reranker.window, dev)
        print(f"# window and weight chosen together: {windows['chosen']}", flush=True)

    bundled: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, dict]] = {}
    for name, queries in BUNDLED_SAMPLES.items():
        data = sample_queries(get_task(name).load(), queries, args.seed)
        run = hybrid.rank(data, min(max(HYBRID_DEPTHS), len(data.corpus)))
        path = args.cache / f"{name}-{score_tag(reranker, queries, args.seed)}.npz"
        if not path.is_file():
            print(f"# {name}: no pair scores at {path}; run rerank_quality.py first", flush=True)
            continue
        candidates = {q: top(run.get(q, {}), max(HYBRID_DEPTHS)) for q in data.queries}
        scores = pair_scores(reranker, data, candidates, path)  # a changed first stage: its new pairs
        row = {"queries": len(data.queries), "hybrid": ndcg10(data.qrels, run)}
        intervals[name] = {}
        for depth in HYBRID_DEPTHS:
            for w in ("1.0", chosen):
                reranked = blended(scores, run, depth, float(w))
                row[f"rerank {depth}, weight {w}"] = ndcg10(data.qrels, reranked)
                intervals[name][f"rerank {depth}, weight {w}"] = interval(data.qrels, reranked, run)
        bundled[name] = row
        print(f"# {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "queries"), flush=True)
    result = {
        "reranker": reranker.name,
        "max_length": reranker.max_length,
        "window": reranker.window,
        "first stage": f"hybrid {DEFAULT_FUSION.label}",
        "dev": {"queries per source": args.queries, "depth": DEV_DEPTH, "seed": args.seed, "ndcg_at_10": dev},
        "worst regret": regret,
        "dev average": average,
        "chosen weight": float(chosen),
        **({"window choice": windows} if windows else {}),
        "bundled": bundled,
        # each reranked row minus the hybrid, with the 95% interval over the task's queries
        "bundled intervals": intervals,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
