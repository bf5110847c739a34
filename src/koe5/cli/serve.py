"""`koe5 serve`: the HTTP embedding and search server (see :mod:`koe5.serve`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from koe5.cli._common import DeviceOpt, PPrefixOpt, PrecisionOpt, QPrefixOpt, _fail, _load, _state, app
from koe5.errors import Koe5Error
from koe5.serve.settings import API_KEY_ENV, Settings

_D = Settings()  # the defaults, shown in --help


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="'default', a model folder or a hub id (default: the index's model)."
        ),
    ] = None,
    index: Annotated[
        Path | None, typer.Option("--index", help="An index folder (koe5 index build) for POST /search.")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="torch, onnx, onnx-int8 or auto (default: the index's, else torch)."),
    ] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    max_inputs: Annotated[int, typer.Option("--max-inputs", help="Texts per request (413).")] = _D.max_inputs,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Characters per text (413).")] = _D.max_chars,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", help="Request body size (413).")
    ] = _D.max_body_bytes,
    max_queue: Annotated[
        int, typer.Option("--max-queue", help="Requests waiting or in work; more get 429.")
    ] = _D.max_queue,
    max_k: Annotated[int, typer.Option("--max-k", help="Results per search (422).")] = _D.max_k,
    auto_truncate: Annotated[
        bool,
        typer.Option(
            "--auto-truncate/--no-auto-truncate",
            help="Cut over-long inputs unless a request says truncate=false (off: refuse them with 413).",
        ),
    ] = _D.auto_truncate,
    batching: Annotated[
        bool, typer.Option("--batching/--no-batching", help="Encode concurrent requests together.")
    ] = _D.batching,
    batch_wait_ms: Annotated[
        float, typer.Option("--batch-wait-ms", help="How long a batch waits for more requests when idle.")
    ] = _D.batch_wait_ms,
    batch_tokens: Annotated[
        int | None,
        typer.Option("--batch-tokens", help="Tokens per batch (default: 4 forward passes' worth)."),
    ] = None,
    allow_dimensions: Annotated[
        bool,
        typer.Option("--allow-dimensions", help="Accept `dimensions` below the model's for any model."),
    ] = False,
    drain_seconds: Annotated[
        float, typer.Option("--drain-seconds", help="How long a shutdown waits for requests in flight.")
    ] = _D.drain_seconds,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    openapi: Annotated[
        bool, typer.Option("--openapi", help="Print the OpenAPI schema (JSON) and exit; loads no model.")
    ] = False,
) -> None:
    """Serve embeddings (OpenAI /v1/embeddings, TEI /embed) and search (/search) over HTTP.

    With KOE5_API_KEY set, every request but GET /health needs 'Authorization: Bearer <key>'.
    """
    from koe5.serve import create_app, openapi_schema, run

    if openapi:
        typer.echo(json.dumps(openapi_schema(), ensure_ascii=False, indent=2))
        return
    try:
        settings = Settings.from_env(
            max_inputs=max_inputs,
            max_chars=max_chars,
            max_body_bytes=max_body_bytes,
            max_queue=max_queue,
            max_k=max_k,
            auto_truncate=auto_truncate,
            batching=batching,
            batch_wait_ms=batch_wait_ms,
            batch_tokens=batch_tokens,
            allow_dimensions=allow_dimensions,
            drain_seconds=drain_seconds,
        )
    except ValueError as exc:
        _fail(exc)
    try:
        encoder, search_index = _open(model, index, backend, device, query_prefix, passage_prefix, precision)
    except Koe5Error as exc:
        _fail(exc)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        typer.echo(
            f"warning: serving on {host} without {API_KEY_ENV}: anyone who can reach it can use it", err=True
        )
    if not _state["quiet"]:
        typer.echo(
            f"koe5 serve: {encoder.name} ({encoder.dim} dims, {encoder.backend})"
            + (f", index {index}" if index else "")
            + (f", bearer auth from {API_KEY_ENV}" if settings.api_key else "")
            + f" on http://{host}:{port}",
            err=True,
        )
    run(
        create_app(encoder, search_index, settings),
        host,
        port,
        log_level="warning" if _state["quiet"] else "info",
        access_log=access_log,
    )


def _open(model, index, backend, device, query_prefix, passage_prefix, precision="auto"):
    """The encoder and the index: the index's own model unless ``--model`` names one (which must match)."""
    if index is None:
        encoder = _load(
            model or "default", backend or "torch", device, query_prefix, passage_prefix, precision
        )
        return encoder, None
    from koe5.search import Index
    from koe5.search.store import read_manifest

    built = read_manifest(index)["model"]
    if model is None:
        encoder = _load(
            built["source"],
            backend or built.get("backend", "torch"),
            device,
            query_prefix or built["query_prefix"],
            passage_prefix or built["passage_prefix"],
            precision,
        )
    else:
        encoder = _load(model, backend or "torch", device, query_prefix, passage_prefix, precision)
    return encoder, Index.load(index, encoder)
