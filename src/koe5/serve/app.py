"""The HTTP app over an encoder (and, optionally, a search index and a reranker), wired from its parts.

The handlers live in :mod:`koe5.serve.routes`, what they share in :class:`~koe5.serve.state.ServeState`;
this module adds the lifespan (the models' worker threads), the middleware and the error handlers.

=======================  ====================================================================
``POST /v1/embeddings``  OpenAI embeddings (``input``, ``encoding_format``, ``dimensions``; koe5
                         extensions ``input_type`` = query / passage / none, ``truncate``)
``POST /embed``          text-embeddings-inference (``inputs``, ``normalize``, ``truncate``,
                         ``prompt_name``, ``dimensions``) -> ``[[float, ...], ...]``
``POST /rerank``         text-embeddings-inference (``query``, ``texts``, ``raw_scores``,
                         ``return_text``, ``truncate``, ``truncation_direction``)
                         -> ``[{"index", "score", "text"?}, ...]`` best first
``POST /v1/rerank``      Cohere / Jina (``model``, ``query``, ``documents``, ``top_n``,
                         ``return_documents``) -> ``{"id", "results", "model", "usage"}``
``POST /search``         the index: ``query``, ``k``, ``mode``, ``filters``, ``rerank``,
                         ``rerank_depth`` -> hits
``GET /health``          model, index, reranker, queue; 503 while shutting down
``GET /v1/models``       OpenAI's model list: the one model served
``GET /info``            text-embeddings-inference's model and limits (and the reranker)
``GET /metrics``         Prometheus text (:mod:`koe5.serve.metrics`)
``GET /openapi.json``    the schema (committed as ``docs/openapi.json``); ``/docs`` renders it
=======================  ====================================================================

Every response to ``/v1/embeddings``, ``/embed``, ``/rerank``, ``/v1/rerank`` and a ``/search`` with
``rerank`` carries ``X-Koe5-Truncated``: how many of its inputs (pairs) were cut to the model's
maximum length. The rerank routes need a reranker (``create_app(..., reranker=...)``,
``koe5 serve --reranker``); without one they answer 404 ``no_reranker``.

Example::

    import koe5
    from koe5.serve import Settings, create_app, run

    app = create_app(koe5.load(), settings=Settings(max_inputs=64))
    run(app, host="127.0.0.1", port=8000)      # or any ASGI server: uvicorn koe5_app:app

    from koe5.rerank import Reranker
    app = create_app(koe5.load(), reranker=Reranker.load("dragonkue/bge-reranker-v2-m3-ko"))
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from koe5 import __version__
from koe5.serve.errors import ApiError, api_error, http_error, internal_error, invalid_request
from koe5.serve.middleware import BearerAuth, BodyLimit, ContainErrors, Timing
from koe5.serve.routes import ROUTERS
from koe5.serve.routes.search import warm_up
from koe5.serve.settings import Settings
from koe5.serve.state import ServeState

#: The paths the request metrics name (any other path counts as ``other``).
ROUTES = (
    "/v1/embeddings",
    "/embed",
    "/rerank",
    "/v1/rerank",
    "/search",
    "/health",
    "/v1/models",
    "/info",
    "/metrics",
    "/openapi.json",
    "/docs",
)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Starts the models' workers (and warms the index up) before the first request; drains them after."""
    state: ServeState = app.state.koe5
    if state.batcher is None:
        raise RuntimeError("create_app(None) only produces the OpenAPI schema; give it an encoder")
    state.search_pool = ThreadPoolExecutor(1, thread_name_prefix="koe5-search")
    workers = [w for w in (state.batcher, state.rerank_batcher) if w is not None]
    for worker in workers:
        await asyncio.to_thread(worker.start)
    if state.index is not None:  # load the Korean analyser now, not on the first search
        await asyncio.get_running_loop().run_in_executor(state.search_pool, warm_up, state.index)
    try:
        yield
    finally:  # uvicorn has drained the requests in flight by now; finish what is queued
        for worker in workers:
            await asyncio.to_thread(worker.close, state.settings.drain_seconds)
        state.search_pool.shutdown(wait=True)


def create_app(encoder, index=None, settings: Settings | None = None, reranker=None) -> FastAPI:
    """The koe5 HTTP app serving ``encoder`` (a :class:`koe5.Encoder`), optionally ``index`` and
    ``reranker``.

    ``index`` (a :class:`koe5.search.Index`) must have been built with the same model; ``reranker``
    (a :class:`koe5.rerank.Reranker`) serves ``/rerank``, ``/v1/rerank`` and ``/search`` with
    ``rerank``. Each model runs on a worker thread of its own (:mod:`koe5.serve.batcher`,
    :mod:`koe5.serve.rerank_batcher`), started and drained by the app's lifespan. ``encoder=None``
    gives an app that can only produce its schema (:func:`openapi_schema`).
    """
    state = ServeState(encoder, index, settings or Settings(), reranker=reranker)
    app = FastAPI(
        title="koe5",
        version=__version__,
        summary="Korean text embeddings (E5 prefixes), search and reranking, with OpenAI-, TEI- and "
        "Cohere-compatible routes.",
        lifespan=lifespan,
        redoc_url=None,
        strict_content_type=False,  # a body without Content-Type is read as JSON
    )
    app.state.koe5 = state
    # kept beside the state object: `run` and existing callers read these three
    app.state.settings, app.state.metrics, app.state.batcher = state.settings, state.metrics, state.batcher
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    for router in ROUTERS:
        app.include_router(router)
    # outermost first: timing sees every answer, auth runs before a body is read
    app.add_middleware(ContainErrors)
    app.add_middleware(BodyLimit, limit=state.settings.max_body_bytes, metrics=state.metrics)
    if state.settings.api_key:
        app.add_middleware(BearerAuth, key=state.settings.api_key, metrics=state.metrics)
    app.add_middleware(Timing, metrics=state.metrics, routes=ROUTES)
    return app


def openapi_schema() -> dict:
    """The API's OpenAPI schema (it depends on no model, index or setting)."""
    return create_app(None).openapi()
