"""What compact vectors cost in quality: NDCG@10 on koe5's bundled Korean suite with float32, float16,
int8 and binary vectors (``koe5 index build --vectors``), each task's loss against float32.

For each bundled task, the task's documents go into one folder index per vector setting (the same
chunks; chunk and query vectors come from koe5's embedding cache, so nothing is encoded twice), and
every query of the task is searched, top 10, densely and hybrid (the default), with the same query
vector in every index. The aim: int8 within 0.002 and binary (rescored) within 0.005 of float32.

``--dev`` adds the measurement that chose ``koe5.search.compact.DEFAULT_OVERSAMPLE`` and the
calibration, on Korean passages outside the suite (StrategyQA-ko supporting facts and Welfare-QA
answers, ``shared/data/train``; rows sharing a text with the suite dropped): recall@10 against exact
float32 search of each kind for each oversample, and of the choices not made (int8 ranges clipped at
quantiles; binary candidates by the Hamming distance of sign bits, raw or around the mean).

    .venv/bin/python benchmarks/compact_quality.py --dev --out benchmarks/results/compact_quality.json
    .venv/bin/python benchmarks/compact_quality.py --tasks PublicHealthQA --no-hybrid --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from koe5.embcache import EmbeddingCache, encode_cached
from koe5.evaluation.metrics import evaluate_run
from koe5.search import Index
from koe5.search.compact import DEFAULT_OVERSAMPLE, VECTORS, Codec, CompactIndex, rescore
from koe5.search.dense import DenseIndex
from koe5.tasks import BUNDLED, get_task

sys.path.insert(0, str(Path(__file__).parent))
from compact_scale import machine

OVERSAMPLES = (1, 2, 3, 4, 8, 10, 16, 20, 32, 40, 50, 64)


def task_scores(encoder, cache, task: str, modes: tuple[str, ...], folder: Path) -> dict:
    """NDCG@10 of each mode with each vector setting on one task, and each setting's loss."""
    data = get_task(task).load()
    docs = [{"id": d, "text": data.doc_text(d)} for d in data.corpus]
    query_vectors, _ = encode_cached(encoder, list(data.queries.values()), "query", cache)
    out: dict = {"queries": len(data.queries), **{mode: {} for mode in modes}}
    for vectors in VECTORS:
        started = time.perf_counter()
        index = Index.build(docs, encoder, folder / f"{task}-{vectors}", cache=cache, vectors=vectors)
        out["chunks"] = index.manifest["counts"]["chunks"]
        for mode in modes:
            run = {}
            for qid, text, vector in zip(data.queries, data.queries.values(), query_vectors, strict=True):
                hits = index.search(text, k=10, mode=mode, query_vector=vector)
                run[qid] = {h.doc_id: h.score for h in hits}
            out[mode][vectors] = evaluate_run(data.qrels, run, ks=(10,), round_to=None)["ndcg_at_10"]
        print(f"# {task} {vectors}: " + ", ".join(f"{m} {out[m][vectors]:.5f}" for m in modes)
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    out["loss vs float32"] = {
        mode: {v: round(out[mode]["float32"] - out[mode][v], 6) for v in VECTORS[1:]} for mode in modes
    }
    return out


def dev_texts(queries: int) -> tuple[list[str], list[str]]:
    """Passages and a seeded sample of questions from StrategyQA-ko and Welfare-QA (not the suite)."""
    from koe5.train.sources import build_rows

    rows, _ = build_rows(None, {"strategyqa_ko": 1, "welfare_qa": 1})
    passages = list(dict.fromkeys(r["positive"] for r in rows))
    asked = list(dict.fromkeys(r["query"] for r in rows))
    picked = np.random.default_rng(0).choice(len(asked), min(queries, len(asked)), replace=False)
    return passages, [asked[i] for i in sorted(picked)]


class Hamming:
    """The binary candidates koe5 does not use, for comparison: sign bits around ``threshold``
    compared by Hamming distance (faiss's IndexBinaryFlat), then rescored as koe5 rescores."""

    def __init__(self, corpus: np.ndarray, threshold: np.ndarray) -> None:
        import faiss

        self.corpus, self.threshold, self.oversample = corpus, threshold, 1
        self.flat = faiss.IndexBinaryFlat(corpus.shape[1])
        self.flat.add(np.packbits(corpus > threshold, axis=1))

    def search(self, query: np.ndarray, k: int):
        bits = np.packbits(query[None, :] > self.threshold, axis=1)
        found = self.flat.search(bits, k * self.oversample)[1][0]
        return rescore([self.corpus], np.array([0, len(self.corpus)]), query, found, k)


def dev_sweep(encoder, cache, n_queries: int) -> dict:
    """Recall@10 against exact float32 search of each codec for each oversample, on dev passages."""
    passages, questions = dev_texts(n_queries)
    corpus, _ = encode_cached(encoder, passages, "passage", cache, show_progress=True)
    queries, _ = encode_cached(encoder, questions, "query", cache, show_progress=True)
    exact = DenseIndex(corpus.shape[1])
    exact.add(corpus)
    truth = [exact.search(q, 10)[0] for q in queries]
    searchers = {kind: CompactIndex(Codec.calibrate(kind, corpus)) for kind in VECTORS[1:]}
    ranges = np.quantile(corpus, [0.001, 0.999], axis=0).astype(np.float32)
    searchers["int8, 0.1-99.9 % quantile ranges"] = CompactIndex(Codec("int8", corpus.shape[1], ranges))
    searchers["binary as Hamming distance of sign bits around the mean"] = Hamming(corpus, corpus.mean(0))
    searchers["binary as Hamming distance of raw sign bits"] = Hamming(corpus, np.zeros(corpus.shape[1]))
    out: dict = {"passages": len(passages), "queries": len(questions), "recall@10 vs float32": {}}
    for name, index in searchers.items():
        if isinstance(index, CompactIndex):
            index.add(corpus)
        row = {}
        for oversample in OVERSAMPLES:
            index.oversample = oversample
            found = [index.search(q, 10)[0] for q in queries]
            shared = [len(np.intersect1d(a, b)) / 10 for a, b in zip(found, truth, strict=True)]
            row[str(oversample)] = round(float(np.mean(shared)), 4)
        out["recall@10 vs float32"][name] = row
        print(f"# dev {name}: {row}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", action="store_true", help="also the oversample sweep on dev passages")
    parser.add_argument("--tasks", default=",".join(BUNDLED), help="comma-separated; empty: none")
    parser.add_argument("--no-hybrid", action="store_true", help="dense search only")
    parser.add_argument("--model", default="default")
    parser.add_argument("--dev-queries", type=int, default=2000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "compact_quality.json"
    )
    args = parser.parse_args()

    import koe5

    encoder = koe5.load(args.model)
    cache = EmbeddingCache()
    modes = ("dense",) if args.no_hybrid else ("dense", "hybrid")
    results: dict = {
        "model": args.model,
        "oversample": DEFAULT_OVERSAMPLE,
        "tasks": {},
    }
    if args.dev:
        results["dev"] = dev_sweep(encoder, cache, args.dev_queries)
    with tempfile.TemporaryDirectory() as tmp:
        for task in (t.strip() for t in args.tasks.split(",") if t.strip()):
            results["tasks"][task] = task_scores(encoder, cache, task, modes, Path(tmp))
    results["machine"] = machine()
    text = json.dumps(results, ensure_ascii=False, indent=1)
    print(text)
    args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
