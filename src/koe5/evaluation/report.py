"""The ``koe5 bench --json`` document: one benchmark run as plain data (tables, NDCG@10, MTEB scores).

Example::

    from koe5.evaluation import FunctionRetriever, evaluate_tasks
    from koe5.evaluation.report import bench_document

    ranking = FunctionRetriever("me/bm25", lambda data, top_k: {})
    results = {"me/bm25": evaluate_tasks(ranking, ["PublicHealthQA"])}
    doc = bench_document(results, model="me/bm25", ks=[1, 10])
    doc["ndcg_at_10"]["me/bm25"]["PublicHealthQA"]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from koe5.evaluation.leaderboard import Results, render_results, task_metric


def bench_document(
    results: Results,
    *,
    model: str,
    ks: Sequence[int],
    path: str | None = None,
    seconds: float = 0.0,
    encoded: int = 0,
    output_dir: str | Path = "results",
) -> dict[str, Any]:
    """The document of a run whose ``results`` are ``{row: {task: MTEB result}}`` (rows: retrievers).

    ``model`` is the model's label, ``path`` its folder, ``seconds`` the run's time, ``encoded`` the texts
    encoded (not from the cache), ``output_dir`` where the result files went (one folder per row), ``ks``
    the top-k values of the tables. Scores of the first row are also under ``tasks``.
    """
    first = next(iter(results))
    task_names = list(results[first])
    return {
        "model": model,
        "path": path,
        "retrievers": list(results),
        "seconds": round(seconds, 1),
        "encoded_texts": encoded,
        "results_dir": str(Path(output_dir) / first),
        "tables": json.loads(render_results(results, "json", ks, task_names)),
        "ndcg_at_10": {
            row: {name: round(task_metric(r, "ndcg_at_10"), 5) for name, r in by_task.items()}
            for row, by_task in results.items()
        },
        "tasks": {name: r["scores"] for name, r in results[first].items()},
        "by_retriever": {
            row: {name: r["scores"] for name, r in by_task.items()} for row, by_task in results.items()
        },
    }
