"""`koe5 serve`: the HTTP embedding and search server (see :mod:`koe5.serve`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer

from koe5.cli.options import (
    MODEL_DEFAULTS,
    ModelOptions,
    RerankBackendOpt,
    RerankWeightOpt,
    RerankWindowOpt,
    app,
    fail,
    failing,
    is_quiet,
    option,
    replace_parameter,
    say,
    with_model_options,
)
from koe5.serve.settings import API_KEY_ENV, Settings

_D = Settings()  # the defaults, shown in --help

#: The server's limits and batching: :class:`Settings` fields by name (defaults: Settings', shown in
#: --help); KOE5_* environment variables fill in what no flag gives (:meth:`Settings.from_env`).
LIMITS = [
    option("max_inputs", int, _D.max_inputs, "--max-inputs", help="Texts per request (413)."),
    option("max_chars", int, _D.max_chars, "--max-chars", help="Characters per text (413)."),
    option("max_body_bytes", int, _D.max_body_bytes, "--max-body-bytes", help="Request body size (413)."),
    option("max_queue", int, _D.max_queue, "--max-queue", help="Requests waiting or in work; more get 429."),
    option("max_k", int, _D.max_k, "--max-k", help="Results per search (422)."),
    option(
        "max_rerank_depth",
        int,
        _D.max_rerank_depth,
        "--max-rerank-depth",
        help="Documents a /search with rerank may read with the reranker (422).",
    ),
    option(
        "auto_truncate",
        bool,
        _D.auto_truncate,
        "--auto-truncate/--no-auto-truncate",
        help="Cut over-long inputs unless a request says truncate=false (off: refuse them with 413).",
    ),
    option(
        "batching",
        bool,
        _D.batching,
        "--batching/--no-batching",
        help="Encode concurrent requests together.",
    ),
    option(
        "batch_wait_ms",
        float,
        _D.batch_wait_ms,
        "--batch-wait-ms",
        help="How long a batch waits for more requests when idle.",
    ),
    option(
        "batch_tokens",
        int | None,
        None,
        "--batch-tokens",
        help="Tokens per batch (default: 4 forward passes' worth).",
    ),
    option(
        "allow_dimensions",
        bool,
        False,
        "--allow-dimensions",
        help="Accept `dimensions` below the model's for any model.",
    ),
    option(
        "drain_seconds",
        float,
        _D.drain_seconds,
        "--drain-seconds",
        help="How long a shutdown waits for requests in flight.",
    ),
    option(
        "read_timeout_s",
        float,
        _D.read_timeout_s,
        "--read-timeout",
        help="Seconds a connection has to send a whole request (idle or slow ones are closed).",
    ),
    option(
        "max_connections",
        int,
        _D.max_connections,
        "--max-connections",
        help="Connections and requests at once; more get 503.",
    ),
]


@app.command()
@with_model_options
@replace_parameter("limits", LIMITS)
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
        str | None,
        typer.Option("--index", help="An index (koe5 index build): a folder or a postgresql://… URL."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="torch, onnx, onnx-int8 or auto (default: the index's, else torch)."),
    ] = None,
    reranker: Annotated[
        str | None,
        typer.Option(
            "--reranker",
            help="A reranker for /rerank, /v1/rerank and /search with rerank: 'default', a registry "
            "name, a hub id or a folder (koe5 rerank --model takes the same).",
        ),
    ] = None,
    rerank_weight: RerankWeightOpt = None,
    rerank_window: RerankWindowOpt = None,
    rerank_backend: RerankBackendOpt = "torch",
    # --model and --backend are serve's own (default: the index's); their values arrive here too
    model_options: ModelOptions = MODEL_DEFAULTS,
    limits: dict[str, Any] | None = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    openapi: Annotated[
        bool, typer.Option("--openapi", help="Print the OpenAPI schema (JSON) and exit; loads no model.")
    ] = False,
) -> None:
    """Serve embeddings (OpenAI /v1/embeddings, TEI /embed), search (/search) and, with --reranker,
    reranking (TEI /rerank, Cohere/Jina /v1/rerank) over HTTP.

    With KOE5_API_KEY set, every request but GET /health needs 'Authorization: Bearer <key>'.
    """
    from koe5.serve import create_app, openapi_schema, run

    if openapi:
        typer.echo(json.dumps(openapi_schema(), ensure_ascii=False, indent=2))
        return
    with failing(ValueError):
        settings = Settings.from_env(**(limits or {}))
    with failing():
        encoder, search_index = _open(index, model_options)
        cross_encoder = _reranker(reranker, rerank_weight, rerank_window, rerank_backend, model_options)
    _announce(host, port, encoder, search_index, settings, cross_encoder)
    run(
        create_app(encoder, search_index, settings, reranker=cross_encoder),
        host,
        port,
        log_level="warning" if is_quiet() else "info",
        access_log=access_log,
    )


def _open(index: str | None, options: ModelOptions):
    """The encoder and the index: the index's own model unless ``--model`` names one (which must match)."""
    if index is None:
        return options.load(), None
    from koe5.search import open_index

    found = open_index(index, **asdict(options))
    return found.encoder, found


def _reranker(
    name: str | None, weight: float | None, window: int | None, backend: str, options: ModelOptions
):
    """The reranker ``--reranker`` names, on the model's device; ``None`` without the flag."""
    if name is None:
        if weight is not None or window is not None or backend != "torch":
            fail("--rerank-weight, --rerank-window and --rerank-backend need --reranker MODEL")
        return None
    from koe5.rerank import Reranker

    return Reranker.load(name, device=options.device, weight=weight, window=window, backend=backend)


def _announce(host: str, port: int, encoder, index, settings: Settings, reranker=None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        typer.echo(
            f"warning: serving on {host} without {API_KEY_ENV}: anyone who can reach it can use it", err=True
        )
    say(
        f"koe5 serve: {encoder.name} ({encoder.dim} dims, {encoder.backend})"
        + (f", index {index.folder}" if index is not None else "")
        + (f", reranker {reranker.name} ({reranker.max_length} tokens)" if reranker is not None else "")
        + (f", bearer auth from {API_KEY_ENV}" if settings.api_key else "")
        + f" on http://{host}:{port}"
    )
