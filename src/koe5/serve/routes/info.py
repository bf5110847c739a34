"""What a server runs and how it is doing: ``GET /health``, ``/v1/models``, ``/info``, ``/metrics``.

``/health`` answers 503 (``draining``) once shutdown has begun, so that a load balancer stops
sending; ``/v1/models`` is OpenAI's model list and ``/info`` text-embeddings-inference's model card
(with koe5's extensions, the reranker among them); ``/metrics`` is Prometheus text
(:mod:`koe5.serve.metrics`).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

from koe5 import __version__
from koe5.errors import DatabaseError, ModelError
from koe5.serve.responses import error_docs, json_response
from koe5.serve.schemas import ErrorBody, Health, Info, ModelList, TeiErrorBody
from koe5.serve.state import State

router = APIRouter()


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "Shutting down: no new requests."}},
    tags=["operations"],
    summary="Model, index and queue; 503 while shutting down",
)
async def health(state: State) -> Response:
    encoder, index, batcher = state.encoder, state.index, state.batcher
    info = None
    if index is not None:  # a database index answers from its server: off the event loop
        info = await asyncio.get_running_loop().run_in_executor(state.search_pool, index_summary, index)
    body = {
        "status": "draining" if batcher.closing else "ok",
        "model": encoder.name,
        "dim": int(encoder.dim),
        "max_length": int(encoder.max_length),
        "backend": encoder.backend,
        "index": info,
        "queue": batcher.pending,
        "reranker": None if state.reranker is None else state.reranker.name,
    }
    return json_response(body, status=503 if batcher.closing else 200)


def index_summary(index) -> dict:
    """Where the index is and what it holds; with ``error`` (and no counts) when its database cannot
    be read now: the server goes on embedding, and ``/search`` answers 503 until the database is back."""
    try:
        counts = index.manifest.get("counts", {})
    except DatabaseError as exc:
        return {"folder": str(index.folder), "documents": 0, "chunks": 0, "error": str(exc)}
    return {
        "folder": str(index.folder),
        "documents": int(counts.get("documents", len(index))),
        "chunks": int(counts.get("chunks", 0)),
    }


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=error_docs(ErrorBody, 401),
    tags=["embeddings"],
    summary="The model served (OpenAI-compatible)",
)
async def models(state: State) -> Response:
    card = {"id": state.encoder.name, "object": "model", "created": state.started, "owned_by": "koe5"}
    return json_response({"object": "list", "data": [card]})


@router.get(
    "/info",
    response_model=Info,
    responses=error_docs(TeiErrorBody, 401),
    tags=["embeddings"],
    summary="Model and limits (text-embeddings-inference-compatible)",
)
async def info(state: State) -> Response:
    encoder, settings, batcher = state.encoder, state.settings, state.batcher
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
        "reranker": _reranker_card(state.reranker),
    }
    return json_response(body)


@router.get(
    "/metrics",
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        **error_docs(ErrorBody, 401),
    },
    response_class=Response,
    tags=["operations"],
    summary="Prometheus metrics",
)
async def prometheus(state: State) -> Response:
    content, content_type = state.metrics.render()
    return Response(content, media_type=content_type)


def _reranker_card(reranker) -> dict | None:
    """The served reranker as ``/info`` describes it (``None`` without one)."""
    if reranker is None:
        return None
    from koe5.search.reranking import weight_of

    return {
        "name": reranker.name,
        "max_length": int(reranker.max_length),
        "window": getattr(reranker, "window", None),
        "activation": reranker.activation,
        "weight": weight_of(reranker),
        "backend": getattr(reranker, "backend", "torch"),
        "device": str(reranker.device),
    }


def _native_status(module: str) -> str | None:
    """What one of koe5's C speed-ups (``koe5.cpu.mkl``, ``koe5.cpu.attention``) found in this process."""
    # imported when asked, not with this module: koe5.cpu.attention imports PyTorch, and the schema
    # alone (koe5 serve --openapi) loads no model
    return importlib.import_module(f"koe5.cpu.{module}").status


def _dtype(encoder) -> str:
    """The served model's number format, in text-embeddings-inference's words."""
    from koe5.runtime.base import DTYPES

    precision = getattr(encoder, "precision", None)
    if precision is not None and "onnx" not in encoder.backend:
        return DTYPES[precision]
    return "int8" if "int8" in encoder.backend else "float32"


def _pooling(encoder) -> str:
    """The model folder's sentence-transformers pooling, in text-embeddings-inference's words."""
    from koe5.runtime.pooling import pooling_mode

    folder = Path(encoder.path)
    if not folder.is_dir():
        return "mean"
    try:
        return pooling_mode(folder)
    except ModelError:  # a pooling the ONNX backends refuse, e.g. last-token: still a model
        return "other"
