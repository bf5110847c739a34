"""`koe5 bench` and `koe5 leaderboard`: Korean retrieval benchmark and the KoE5/KURE tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from koe5.cli._common import (
    BackendOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    PPrefixOpt,
    PrecisionOpt,
    QPrefixOpt,
    _fail,
    _int_list,
    _load,
    _progress,
    _state,
    app,
)
from koe5.errors import Koe5Error


@app.command()
def bench(
    model: ModelOpt = "default",
    tasks: Annotated[
        str | None,
        typer.Option("--tasks", "-t", help="Comma-separated task names or BEIR folders (default: bundled)."),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Top-k values of the tables.")] = "1,3,5,10",
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where result JSON goes.")] = Path(
        "results"
    ),
    retrievers: Annotated[
        str,
        typer.Option(
            "--retrievers",
            "-r",
            help="Comma-separated: dense (the model), bm25 (Korean BM25), hybrid (both).",
        ),
    ] = "dense",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Encode everything again.")] = False,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", "-b", help="Inputs per forward pass (default: 32 on CPU, 512 on CUDA)."),
    ] = None,
    backend: BackendOpt = "torch",
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark a model on Korean retrieval tasks: the KoE5 card's tables plus NDCG@10 per task.

    With --retrievers dense,bm25,hybrid each retriever gets its own row (and result folder).
    """
    import time

    from koe5.embcache import EmbeddingCache
    from koe5.evaluation import DenseRetriever, evaluate_tasks, model_label
    from koe5.evaluation.leaderboard import render_results, task_metric
    from koe5.tasks import BUNDLED

    ks = _int_list(k, "--k")
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else list(BUNDLED)
    kinds = list(dict.fromkeys(r.strip() for r in retrievers.split(",") if r.strip()))
    unknown = [r for r in kinds if r not in RETRIEVERS]
    if not kinds or unknown:
        _fail(ValueError(f"--retrievers takes {', '.join(RETRIEVERS)} (got {retrievers!r})"))
    say = (lambda msg: None) if _state["quiet"] else (lambda msg: typer.echo(msg, err=True))
    started = time.perf_counter()
    label = model_label(model)
    enc = dense = None
    by_model: dict[str, dict] = {}
    try:
        if "dense" in kinds or "hybrid" in kinds:
            enc = _load(model, backend, device, query_prefix, passage_prefix, precision)
            cache = None if no_cache else EmbeddingCache()
            dense = DenseRetriever(enc, cache=cache, show_progress=_progress(), batch_size=batch_size)
        for kind in kinds:
            retriever, row = _retriever(kind, dense, label)
            by_model[row] = evaluate_tasks(
                retriever,
                names,
                output_dir=output_dir,
                label=row,
                on_task=lambda name, row=row: say(f"· {row}: {name}"),
            )
    except Koe5Error as exc:
        _fail(exc)
    seconds = time.perf_counter() - started
    task_names = list(next(iter(by_model.values())))
    first = next(iter(by_model))
    encoded = dense.encoded if dense is not None else 0
    if as_json:
        doc = {
            "model": label,
            "path": enc.path if enc is not None else None,
            "retrievers": list(by_model),
            "seconds": round(seconds, 1),
            "encoded_texts": encoded,
            "results_dir": str(output_dir / first),
            "tables": json.loads(render_results(by_model, "json", ks, task_names)),
            "ndcg_at_10": {
                row: {name: round(task_metric(r, "ndcg_at_10"), 5) for name, r in results.items()}
                for row, results in by_model.items()
            },
            "tasks": {name: r["scores"] for name, r in by_model[first].items()},
            "by_retriever": {
                row: {name: r["scores"] for name, r in results.items()} for row, results in by_model.items()
            },
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    typer.echo(render_results(by_model, "markdown", ks, task_names))
    typer.echo(render_results(by_model, "markdown", ks, task_names, per_task="ndcg_at_10"))
    say(
        f"{', '.join(by_model)}: {len(task_names)} tasks in {seconds:.0f} s, {encoded} texts encoded "
        f"(the rest from the cache); result files in {', '.join(str(output_dir / r) for r in by_model)}"
    )


RETRIEVERS = ("dense", "bm25", "hybrid")


def _retriever(kind: str, dense, label: str):
    """The retriever of one ``--retrievers`` entry and the row label its results are filed under."""
    if kind == "dense":
        return dense, label
    from koe5.search import BM25Retriever, HybridRetriever
    from koe5.search.hybrid import DEFAULT_FUSION

    if kind == "bm25":
        return BM25Retriever(), "koe5/bm25-kiwi"
    fusion = DEFAULT_FUSION
    row = f"koe5/hybrid-{fusion.method}-{fusion.weight:g}-{label.rsplit('/', 1)[-1]}"
    return HybridRetriever(dense, BM25Retriever(), fusion, name=row), row


@app.command()
def leaderboard(
    dirs: Annotated[list[Path], typer.Argument(help="MTEB result folders (<org>/<name>/.../<Task>.json).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, csv or json.")] = "markdown",
    tasks: Annotated[
        str | None, typer.Option("--tasks", "-t", help="Comma-separated tasks (default: the 8 KURE tasks).")
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Top-k values of the tables.")] = "1,3,5,10",
    per_task: Annotated[
        str | None, typer.Option("--per-task", help="One metric per task instead, e.g. ndcg_at_10.")
    ] = None,
) -> None:
    """The KoE5/KURE leaderboard tables (average Recall, Precision, NDCG, F1 at each k) of result files."""
    import warnings

    from koe5.evaluation.leaderboard import render

    task_names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            text = render(dirs, fmt, _int_list(k, "--k"), task_names, per_task=per_task)
        except Koe5Error as exc:
            _fail(exc)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    typer.echo(text, nl=False)
