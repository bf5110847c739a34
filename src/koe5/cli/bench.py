"""`koe5 bench` and `koe5 leaderboard`: Korean retrieval benchmark and the KoE5/KURE tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from koe5.cli.options import (
    MODEL_DEFAULTS,
    BatchSizeOpt,
    JsonOpt,
    ModelOpt,
    ModelOptions,
    RerankBackendOpt,
    RerankWindowOpt,
    app,
    comma_list,
    fail,
    failing,
    int_list,
    say,
    show_progress,
    with_model_options,
)


@app.command()
@with_model_options
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
            help="Comma-separated: dense (the model), bm25 (Korean BM25), hybrid (both); each may be "
            "reranked: hybrid+rerank (koe5's reranker) or hybrid+rerank:MODEL (a name, hub id or folder).",
        ),
    ] = "dense",
    rerank_depth: Annotated[
        int, typer.Option("--rerank-depth", help="+rerank: how many first-stage documents to rerank.")
    ] = 50,
    rerank_backend: RerankBackendOpt = "torch",
    rerank_window: RerankWindowOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Encode everything again.")] = False,
    batch_size: BatchSizeOpt = None,
    model_options: ModelOptions = MODEL_DEFAULTS,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark a model on Korean retrieval tasks: the KoE5 card's tables plus NDCG@10 per task.

    With --retrievers dense,bm25,hybrid,hybrid+rerank each retriever gets its own row (and result folder).
    """
    import time

    from koe5.embcache import EmbeddingCache
    from koe5.evaluation import DenseRetriever, evaluate_tasks, model_label
    from koe5.evaluation.leaderboard import render_results
    from koe5.evaluation.metrics import MTEB_KS
    from koe5.evaluation.report import bench_document
    from koe5.tasks import BUNDLED

    ks, names = int_list(k, "--k"), comma_list(tasks) if tasks else list(BUNDLED)
    kinds = _kinds(retrievers, rerank_depth)
    started, label = time.perf_counter(), model_label(model)
    enc = dense = None
    by_model: dict[str, dict] = {}
    with failing():
        if any(kind != "bm25" for kind, _ in kinds):
            enc = model_options.load()
            cache = None if no_cache else EmbeddingCache()
            dense = DenseRetriever(enc, cache=cache, show_progress=show_progress(), batch_size=batch_size)
        rerank = (rerank_depth, rerank_backend, rerank_window)
        for retriever, row in _retrievers(kinds, dense, label, model_options, rerank):
            by_model[row] = evaluate_tasks(
                retriever,
                names,
                ks=sorted({*MTEB_KS, *ks}),  # any cut-off asked for, beside MTEB's own
                output_dir=output_dir,
                label=row,
                on_task=lambda name, row=row: say(f"· {row}: {name}"),
            )
    seconds = time.perf_counter() - started
    encoded = dense.encoded if dense is not None else 0
    if as_json:
        path = enc.path if enc is not None else None
        doc = bench_document(
            by_model, model=label, ks=ks, path=path, seconds=seconds, encoded=encoded, output_dir=output_dir
        )
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    task_names = list(next(iter(by_model.values())))
    typer.echo(render_results(by_model, "markdown", ks, task_names))
    typer.echo(render_results(by_model, "markdown", ks, task_names, per_task="ndcg_at_10"))
    say(
        f"{', '.join(by_model)}: {len(task_names)} tasks in {seconds:.0f} s, {encoded} texts encoded "
        f"(the rest from the cache); result files in {', '.join(str(output_dir / r) for r in by_model)}"
    )


RETRIEVERS = ("dense", "bm25", "hybrid")
RERANK = "+rerank"


def _kinds(retrievers: str, depth: int) -> list[tuple[str, str | None]]:
    """``--retrievers`` as (first stage, reranker or ``None``): ``hybrid+rerank:M`` → ``("hybrid", "M")``,
    ``hybrid+rerank`` → ``("hybrid", "default")``."""
    kinds = []
    for entry in comma_list(retrievers) or []:
        kind, plus, rest = entry.partition(RERANK)
        if kind not in RETRIEVERS or rest == ":" or (rest and not rest.startswith(":")):
            fail(
                f"--retrievers takes {', '.join(RETRIEVERS)}, each alone or with +rerank or +rerank:MODEL "
                f"(got {entry!r})"
            )
        kinds.append((kind, (rest[1:] or "default") if plus else None))
    if not kinds:
        fail(f"--retrievers takes {', '.join(RETRIEVERS)} (got {retrievers!r})")
    if depth < 1 and any(reranker for _, reranker in kinds):
        fail(f"--rerank-depth must be at least 1, got {depth}")
    return list(dict.fromkeys(kinds))


def _retrievers(
    kinds: list[tuple[str, str | None]], dense, label: str, model_options: ModelOptions, rerank: tuple
):
    """(retriever, the row its results are filed under) per ``--retrievers`` entry. A first stage is
    made once (hybrid+rerank reuses hybrid's BM25 index), each reranker loaded once on the model's
    device and precision with ``rerank``'s backend and window; ``rerank``: ``(--rerank-depth,
    --rerank-backend, --rerank-window)``.
    A reranked row is ``<first stage's row>+rerank-<reranker>-d<depth>``
    (:func:`~koe5.evaluation.retrievers.rerank_label`)."""
    from koe5.evaluation import RerankRetriever
    from koe5.evaluation.retrievers import rerank_label
    from koe5.rerank import Reranker
    from koe5.search.reranking import weight_of

    depth, backend, window = rerank
    how = {"device": model_options.device, "precision": model_options.precision, "backend": backend}
    how["window"] = window
    rerankers = {name: Reranker.load(name, **how) for name in sorted({name for _, name in kinds if name})}
    stages: dict[str, tuple] = {}
    out = []
    for kind, reranker in kinds:
        if kind not in stages:
            stages[kind] = _retriever(kind, dense, label)
        retriever, row = stages[kind]
        if reranker:
            loaded = rerankers[reranker]
            row = rerank_label(row, loaded.name, depth, weight_of(loaded), loaded.backend, loaded.window)
            retriever = RerankRetriever(retriever, loaded, depth, name=row, show_progress=show_progress())
        out.append((retriever, row))
    return out


def _retriever(kind: str, dense, label: str):
    """The retriever of one ``--retrievers`` entry and the row label its results are filed under."""
    if kind == "dense":
        return dense, label
    from koe5.evaluation import BM25Retriever, HybridRetriever
    from koe5.search.hybrid import DEFAULT_FUSION

    if kind == "bm25":
        return BM25Retriever(), "koe5/bm25-kiwi"
    fusion = DEFAULT_FUSION
    row = f"koe5/hybrid-{fusion.label}-{label.rsplit('/', 1)[-1]}"
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

    task_names = comma_list(tasks) if tasks else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with failing():
            text = render(dirs, fmt, int_list(k, "--k"), task_names, per_task=per_task)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    typer.echo(text, nl=False)
