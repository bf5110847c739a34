"""`koe5 rerank`: order candidate passages by a cross-encoder's score for one query."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from koe5.cli.options import (
    WINDOW_HELP,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    app,
    failing,
    say,
    show_progress,
)


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(help="The question the candidates should answer.")],
    candidates: Annotated[
        str,
        typer.Option(
            "--candidates", "-c", help="JSONL (objects with the text field) or one text per line; '-': stdin."
        ),
    ] = "-",
    model: Annotated[
        str, typer.Option("--model", "-m", help="'default', a reranker folder or a hub id.")
    ] = "default",
    top_k: Annotated[
        int | None, typer.Option("--top-k", "-k", help="How many to print (default: all).")
    ] = None,
    raw_scores: Annotated[
        bool,
        typer.Option(
            "--raw-scores", help="Print raw logits, not activated scores (0-1 for sigmoid rerankers)."
        ),
    ] = False,
    no_truncate: Annotated[
        bool, typer.Option("--no-truncate", help="Refuse a candidate too long for the model; do not cut it.")
    ] = False,
    field: Annotated[str, typer.Option("--field", help="JSONL field holding the text.")] = "text",
    fmt: Annotated[str, typer.Option("--format", help="Input format: auto, jsonl, text.")] = "auto",
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            help="Tokens of query and text together (default: the model's).",
        ),
    ] = None,
    window: Annotated[int | None, typer.Option("--window", help=WINDOW_HELP)] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    backend: Annotated[
        str, typer.Option("--backend", help="torch, onnx, onnx-int8 or auto (see koe5 export --reranker).")
    ] = "torch",
    as_json: JsonOpt = False,
) -> None:
    """Rerank candidates for a query with a cross-encoder: best first, with scores and their fields."""
    from koe5.rerank import Reranker, ranked
    from koe5.rerank.candidates import read_candidates, rows
    from koe5.rerank.inputs import check_query, check_top_k

    with failing():
        check_query(query)
        found = read_candidates(candidates, field=field, fmt=fmt)
        check_top_k(top_k, len(found))  # a bad --top-k costs no model load
        how = {"device": device, "max_length": max_length, "precision": precision, "backend": backend}
        reranker = Reranker.load(model, window=window, **how)
        read = f"max {reranker.max_length} tokens"
        read = f"windows of {reranker.window} tokens" if reranker.window else read
        say(f"reranking {len(found)} candidates with {reranker.name} ({read})")
        texts = [c.text for c in found]
        stats = reranker.score_with_stats(
            query, texts, raw=raw_scores, truncate=not no_truncate, show_progress=show_progress()
        )
    out = rows(ranked(stats.scores, texts, top_k), found)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    _table(out, reranker.name, raw_scores)


def _table(out: list[dict], name: str, raw: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if not out:
        typer.echo("no candidates")
        return
    # a candidate's id: its "id", or the "doc_id" of a `koe5 search --json` hit piped in
    id_key = next((key for key in ("id", "doc_id") if any(key in row for row in out)), None)
    table = Table(title=f"reranked by {name}" + (" (logits)" if raw else ""))
    table.add_column("rank", justify="right")
    table.add_column("index", justify="right")
    table.add_column("score", justify="right")
    if id_key:
        table.add_column(id_key)
    table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=80)
    for rank, row in enumerate(out, 1):
        snippet = " ".join(row["text"].split())
        cells = [str(rank), str(row["index"]), f"{row['score']:.4f}"]
        table.add_row(*cells, *([str(row.get(id_key, ""))] if id_key else []), snippet)
    Console().print(table)
