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
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Encode everything again.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = 32,
    backend: BackendOpt = "torch",
    device: DeviceOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark a model on Korean retrieval tasks: the KoE5 card's tables plus NDCG@10 per task."""
    import time

    from koe5.bench import DenseRetriever, evaluate_tasks, model_label
    from koe5.embcache import EmbeddingCache
    from koe5.leaderboard import render_results
    from koe5.tasks import BUNDLED

    ks = _int_list(k, "--k")
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else list(BUNDLED)
    say = (lambda msg: None) if _state["quiet"] else (lambda msg: typer.echo(msg, err=True))
    started = time.perf_counter()
    try:
        enc = _load(model, backend, device, query_prefix, passage_prefix)
        cache = None if no_cache else EmbeddingCache()
        retriever = DenseRetriever(enc, cache=cache, show_progress=_progress(), batch_size=batch_size)
        label = model_label(model)
        results = evaluate_tasks(
            retriever, names, output_dir=output_dir, label=label, on_task=lambda name: say(f"· {name}")
        )
    except Koe5Error as exc:
        _fail(exc)
    seconds = time.perf_counter() - started
    task_names = list(results)
    by_model = {label: results}
    if as_json:
        doc = {
            "model": label,
            "path": enc.path,
            "seconds": round(seconds, 1),
            "encoded_texts": retriever.encoded,
            "results_dir": str(output_dir / label),
            "tables": json.loads(render_results(by_model, "json", ks, task_names)),
            "tasks": {name: r["scores"] for name, r in results.items()},
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    typer.echo(render_results(by_model, "markdown", ks, task_names))
    typer.echo(render_results(by_model, "markdown", ks, task_names, per_task="ndcg_at_10"))
    say(
        f"{label}: {len(task_names)} tasks in {seconds:.0f} s, {retriever.encoded} texts encoded "
        f"(the rest from the cache); result files in {output_dir / label}"
    )


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

    from koe5.leaderboard import render

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
