"""The HTTP API over an encoder (and, optionally, a search index): routes, limits, error shapes.

=======================  ====================================================================
``POST /v1/embeddings``  OpenAI embeddings (``input``, ``encoding_format``, ``dimensions``; koe5
                         extensions ``input_type`` = query / passage / none, ``truncate``)
``POST /embed``          text-embeddings-inference (``inputs``, ``normalize``, ``truncate``,
                         ``prompt_name``, ``dimensions``) -> ``[[float, ...], ...]``
``POST /search``         the index: ``query``, ``k``, ``mode``, ``filters`` -> hits
``GET /health``          model, index, queue; 503 while shutting down
``GET /v1/models``       OpenAI's model list: the one model served
``GET /info``            text-embeddings-inference's model and limits
``GET /metrics``         Prometheus text (:mod:`koe5.serve.metrics`)
``GET /openapi.json``    the schema (committed as ``docs/openapi.json``); ``/docs`` renders it
=======================  ====================================================================

Every response to ``/v1/embeddings`` and ``/embed`` carries ``X-Koe5-Truncated``: how many of its
inputs were cut to the model's maximum length.

Example::

    import koe5
    from koe5.serve import Settings, create_app, run

    app = create_app(koe5.load(), settings=Settings(max_inputs=64))
    run(app, host="127.0.0.1", port=8000)      # or any ASGI server: uvicorn koe5_app:app
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from koe5.errors import InputError
from koe5.serve.batcher import Batcher, Encoded
from koe5.serve.errors import ApiError, error_response
from koe5.serve.metrics import Metrics
from koe5.serve.middleware import BearerAuth, BodyLimit, Timing
from koe5.serve.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    ErrorBody,
    Health,
    Info,
    ModelList,
    SearchRequest,
    SearchResponse,
    TeiErrorBody,
)
from koe5.serve.settings import Settings

log = logging.getLogger("koe5.serve")

ROUTES = (
    "/v1/embeddings",
    "/embed",
    "/search",
    "/health",
    "/v1/models",
    "/info",
    "/metrics",
    "/openapi.json",
    "/docs",
)
#: ``prompt_name`` of ``/embed`` -> encoder kind (the default model's saved prompts, plus none).
PROMPTS = {"query": "query", "passage": "passage", "document": "passage", "none": None}

_ERROR_DOCS = {
    401: "No or a wrong bearer token (the server was started with KOE5_API_KEY).",
    404: "The server has no index (`no_index`).",
    413: "Over a size limit: `max_body_bytes`, `max_inputs`, `max_chars`, or `max_tokens` with "
    "truncate=false.",
    422: "Malformed JSON (`malformed_json`), a field of the wrong type (`invalid_request`) or an "
    "unsupported value (the field's name, or `max_k`).",
    429: "`max_queue` requests are already waiting: retry after `Retry-After` seconds.",
    503: "The server is shutting down (`shutting_down`).",
}


def _errors(model: type, *codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": model, "description": _ERROR_DOCS[code]} for code in codes}


def _json(body: Any, *, status: int = 200, truncated: int | None = None) -> Response:
    headers = {"X-Koe5-Truncated": str(truncated)} if truncated is not None else None
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _validation_error(errors: list[dict]) -> ApiError:
    """One readable 422 from pydantic's error list."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "not JSON")
        where = first["loc"][-1] if len(first.get("loc", ())) > 1 else "?"
        return ApiError(422, "malformed_json", f"the body is not valid JSON: {reason} (at character {where})")
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more problems)" if len(errors) > 3 else ""
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    return ApiError(422, "invalid_request", "; ".join(parts) + more, param=loc[0] if loc else None)


def _warm_up(index) -> None:
    try:
        index.search("준비", k=1, mode="bm25")
    except Exception:  # a warm-up failure must not stop the server; a real query will report it
        log.warning("koe5: warming up the index failed", exc_info=True)


def create_app(encoder, index=None, settings: Settings | None = None) -> FastAPI:
    """The koe5 HTTP app serving ``encoder`` (a :class:`koe5.Encoder`) and optionally ``index``.

    ``index`` (a :class:`koe5.search.Index`) must have been built with the same model. The model
    runs on one worker thread (:mod:`koe5.serve.batcher`), started and drained by the app's
    lifespan. ``encoder=None`` gives an app that can only produce its schema (:func:`openapi_schema`).
    """
    settings = settings or Settings()
    metrics = Metrics()
    batcher = Batcher(encoder, settings, metrics) if encoder is not None else None
    pool: dict[str, ThreadPoolExecutor] = {}
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if batcher is None:
            raise RuntimeError("create_app(None) only produces the OpenAPI schema; give it an encoder")
        pool["search"] = ThreadPoolExecutor(1, thread_name_prefix="koe5-search")
        await asyncio.to_thread(batcher.start)
        if index is not None:  # load the Korean analyser now, not on the first search
            await asyncio.get_running_loop().run_in_executor(pool["search"], _warm_up, index)
        try:
            yield
        finally:  # uvicorn has drained the requests in flight by now; finish what is queued
            await asyncio.to_thread(batcher.close, settings.drain_seconds)
            pool["search"].shutdown(wait=True)

    from koe5 import __version__

    app = FastAPI(
        title="koe5",
        version=__version__,
        summary="Korean text embeddings (E5 prefixes) and search, with OpenAI- and TEI-compatible routes.",
        lifespan=lifespan,
        redoc_url=None,
        strict_content_type=False,  # a body without Content-Type is read as JSON
    )
    app.state.settings, app.state.metrics, app.state.batcher = settings, metrics, batcher

    # --- errors ----------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        metrics.reject(exc.code)
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and content_type and "json" not in content_type:
            error = ApiError(
                422,
                "content_type",
                f"send the body as JSON with 'Content-Type: application/json' (got {content_type[:60]!r})",
            )
        else:
            error = _validation_error(list(exc.errors()))
        return await _api_error(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        error = ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
        return error_response(request.url.path, error)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.error("koe5: %s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(
            request.url.path,
            ApiError(500, "internal_error", "internal error; the server log has the details"),
        )

    # --- shared steps ----------------------------------------------------------------------------

    def check_texts(texts: list[str], param: str) -> None:
        if not texts:
            raise ApiError(422, "empty_input", f"{param} is an empty list", param=param)
        if len(texts) > settings.max_inputs:
            raise ApiError(
                413,
                "max_inputs",
                f"{len(texts)} inputs; at most {settings.max_inputs} per request (max_inputs)",
                param=param,
            )
        for i, text in enumerate(texts):
            if len(text) > settings.max_chars:
                raise ApiError(
                    413,
                    "max_chars",
                    f"{param}[{i}] has {len(text)} characters; at most {settings.max_chars} (max_chars)",
                    param=param,
                )

    def check_dimensions(dimensions: int | None) -> int | None:
        dim = encoder.dim
        if dimensions is None or dimensions == dim:
            return None
        if dimensions > dim:
            raise ApiError(
                422,
                "dimensions",
                f"{encoder.name} has {dim} dimensions; ask for 1 to {dim}",
                param="dimensions",
            )
        trained = getattr(getattr(encoder, "spec", None), "extra", {}).get("matryoshka_dims")
        if not (settings.allow_dimensions or trained):
            raise ApiError(
                422,
                "dimensions",
                f"{encoder.name} was not trained for shorter embeddings (Matryoshka), so its first "
                f"{dimensions} of {dim} dimensions are not a good embedding; start koe5 serve with "
                "--allow-dimensions to allow it anyway",
                param="dimensions",
            )
        return dimensions

    async def encode(texts: list[str], kind: str | None, truncate: bool | None, param: str) -> Encoded:
        future = batcher.submit(
            texts, kind, truncate=settings.auto_truncate if truncate is None else truncate
        )
        try:
            return await asyncio.wrap_future(future)
        except ApiError as exc:
            exc.param = exc.param or param
            raise

    def cut(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
        if dimensions is None:
            return vectors
        short = vectors[:, :dimensions]
        return short / np.maximum(np.linalg.norm(short, axis=1, keepdims=True), 1e-12)

    # --- routes ----------------------------------------------------------------------------------

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingsResponse,
        responses=_errors(ErrorBody, 401, 413, 422, 429, 503),
        tags=["embeddings"],
        summary="Embed texts (OpenAI-compatible)",
    )
    async def embeddings(request: EmbeddingsRequest) -> Response:
        """The OpenAI embeddings API: point the ``openai`` client's ``base_url`` at ``http://host:port/v1``.

        ``input_type`` (koe5 extension, default ``passage``) picks the prefix; ``usage`` counts the
        tokens the model read, prefix and special tokens included.
        """
        texts = [request.input] if isinstance(request.input, str) else request.input
        check_texts(texts, "input")
        dimensions = check_dimensions(request.dimensions)
        kind = None if request.input_type == "none" else request.input_type
        result = await encode(texts, kind, request.truncate, "input")
        vectors = cut(result.vectors, dimensions)
        if request.encoding_format == "base64":
            rows: list = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            rows = vectors.tolist()
        tokens = sum(result.tokens)
        body = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": encoder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json(body, truncated=result.truncated)

    @app.post(
        "/embed",
        response_model=list[list[float]],
        responses=_errors(TeiErrorBody, 401, 413, 422, 429, 503),
        tags=["embeddings"],
        summary="Embed texts (text-embeddings-inference-compatible)",
    )
    async def embed(request: EmbedRequest) -> Response:
        """text-embeddings-inference's ``/embed``: a list of vectors, one per input.

        ``prompt_name`` picks the prefix (absent: ``passage``); vectors are always normalised.
        """
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        check_texts(texts, "inputs")
        if not request.normalize:
            raise ApiError(
                422,
                "normalize",
                "koe5 models end in a normalisation layer: unnormalised vectors are not available; "
                "send normalize=true or leave it out",
                param="normalize",
            )
        if request.truncation_direction.lower() == "left":
            raise ApiError(
                422,
                "truncation_direction",
                "only right truncation is supported (the model's closing token is kept)",
                param="truncation_direction",
            )
        if request.prompt_name is not None and request.prompt_name not in PROMPTS:
            raise ApiError(
                422,
                "prompt_name",
                f"unknown prompt_name {request.prompt_name!r}; this server knows {', '.join(PROMPTS)}",
                param="prompt_name",
            )
        kind = PROMPTS[request.prompt_name or "passage"]
        dimensions = check_dimensions(request.dimensions)
        result = await encode(texts, kind, request.truncate, "inputs")
        return _json(cut(result.vectors, dimensions).tolist(), truncated=result.truncated)

    @app.post(
        "/search",
        response_model=SearchResponse,
        responses=_errors(ErrorBody, 401, 404, 413, 422, 429, 503),
        tags=["search"],
        summary="Search the server's index",
    )
    async def search(request: SearchRequest) -> Response:
        """The ``k`` best documents for ``query`` in the index, each with its best chunk, as
        ``koe5 search --json`` prints them. Dense and hybrid queries are embedded in the batches."""
        if index is None:
            raise ApiError(
                404, "no_index", "this server has no index; start it with koe5 serve --index FOLDER"
            )
        if not request.query.strip():
            raise ApiError(422, "empty_input", "query is empty", param="query")
        if len(request.query) > settings.max_chars:
            raise ApiError(
                413,
                "max_chars",
                f"query has {len(request.query)} characters; at most {settings.max_chars} (max_chars)",
                param="query",
            )
        if request.k > settings.max_k:
            raise ApiError(422, "max_k", f"k is {request.k}; at most {settings.max_k} (max_k)", param="k")
        vector = None
        if request.mode != "bm25":
            vector = (await encode([request.query], "query", True, "query")).vectors[0]
        run = partial(
            index.search, request.query, request.k, request.mode, request.filters, query_vector=vector
        )
        try:
            hits = await asyncio.get_running_loop().run_in_executor(pool["search"], run)
        except InputError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        body = {
            "query": request.query,
            "mode": request.mode,
            "k": request.k,
            "hits": [h.to_dict() for h in hits],
        }
        return _json(body)

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "Shutting down: no new requests."}},
        tags=["operations"],
        summary="Model, index and queue; 503 while shutting down",
    )
    async def health() -> Response:
        info = None
        if index is not None:
            counts = index.manifest.get("counts", {})
            info = {
                "folder": str(index.folder),
                "documents": int(counts.get("documents", len(index))),
                "chunks": int(counts.get("chunks", 0)),
            }
        body = {
            "status": "draining" if batcher.closing else "ok",
            "model": encoder.name,
            "dim": int(encoder.dim),
            "max_length": int(encoder.max_length),
            "backend": encoder.backend,
            "index": info,
            "queue": batcher.pending,
        }
        return _json(body, status=503 if batcher.closing else 200)

    @app.get(
        "/v1/models",
        response_model=ModelList,
        responses=_errors(ErrorBody, 401),
        tags=["embeddings"],
        summary="The model served (OpenAI-compatible)",
    )
    async def models() -> Response:
        card = {"id": encoder.name, "object": "model", "created": started, "owned_by": "koe5"}
        return _json({"object": "list", "data": [card]})

    @app.get(
        "/info",
        response_model=Info,
        responses=_errors(TeiErrorBody, 401),
        tags=["embeddings"],
        summary="Model and limits (text-embeddings-inference-compatible)",
    )
    async def info() -> Response:
        body = {
            "model_id": encoder.name,
            "model_sha": None,
            "model_dtype": _dtype(encoder),
            "model_type": {"embedding": {"pooling": _pooling(encoder)}},
            "max_concurrent_requests": settings.max_queue,
            "max_input_length": int(encoder.max_length),
            "max_batch_tokens": int(batcher.batch_tokens),
            "max_batch_requests": int(batcher.batch_inputs),
            "max_client_batch_size": settings.max_inputs,
            "auto_truncate": settings.auto_truncate,
            "tokenization_workers": 1,
            "version": __version__,
            "backend": encoder.backend,
            "dim": int(encoder.dim),
            "mkl_shim": _native_status("mkl"),
            "attention_kernel": _native_status("attention"),
        }
        return _json(body)

    @app.get(
        "/metrics",
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
            **_errors(ErrorBody, 401),
        },
        response_class=Response,
        tags=["operations"],
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    # outermost first: timing sees every answer, auth runs before a body is read
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
    if settings.api_key:
        app.add_middleware(BearerAuth, key=settings.api_key, metrics=metrics)
    app.add_middleware(Timing, metrics=metrics, routes=ROUTES)
    return app


def _native_status(module: str) -> str | None:
    """What one of koe5's C speed-ups (``koe5.cpu.mkl``, ``koe5.cpu.attention``) found in this process."""
    return importlib.import_module(f"koe5.{module}").status


def _dtype(encoder) -> str:
    """The served model's number format, in text-embeddings-inference's words."""
    from koe5.runtime.base import DTYPES

    precision = getattr(encoder, "precision", None)
    if precision is not None and "onnx" not in encoder.backend:
        return DTYPES[precision]
    return "int8" if "int8" in encoder.backend else "float32"


def _pooling(encoder) -> str:
    from pathlib import Path

    from koe5.errors import ModelError
    from koe5.runtime.pooling import pooling_mode

    folder = Path(encoder.path)
    if not folder.is_dir():
        return "mean"
    try:
        return pooling_mode(folder)
    except ModelError:  # a pooling the ONNX backends refuse, e.g. last-token: still a model
        return "other"


def openapi_schema() -> dict:
    """The API's OpenAPI schema (it depends on no model, index or setting)."""
    return create_app(None).openapi()
