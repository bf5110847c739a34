"""``koe5 serve``: an HTTP embedding and search server that existing clients can talk to.

Modules: ``settings`` (limits, batching, the API key, as one dataclass), ``worker`` (a model's queue
and the one thread that owns it), ``batcher`` (the encoder's worker: concurrent requests are encoded
together by a token budget), ``rerank_batcher`` (the reranker's: concurrent requests' pairs are
scored together), ``reranking`` (the rerank routes' checks, reranked search hits), ``schemas``
(request/response bodies), ``errors`` (JSON errors naming the limit, and their handlers),
``middleware`` (metrics timing, bearer auth, body size), ``metrics`` (Prometheus), ``state`` (what
the handlers share), ``checks`` (the limits every request passes), ``responses`` (JSON answers and
their schema docs), ``routes/`` (one router per family of routes), ``app`` (wires them into one
app), ``server`` (uvicorn with a graceful shutdown).

Example::

    import koe5
    from koe5.serve import Settings, create_app, run

    run(create_app(koe5.load(), settings=Settings.from_env()), port=8000)

    # a client, unchanged:
    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.embeddings.create(model="koe5", input=["서울은 대한민국의 수도이다."]).data[0].embedding
"""

from __future__ import annotations

import importlib

# Loaded on first use, so that `koe5 --help` (which reads the settings' defaults) does not import
# FastAPI, and koe5 works without the serve extra until a server is asked for.
_EXPORTS = {
    "ROUTES": "app",
    "create_app": "app",
    "openapi_schema": "app",
    "Batcher": "batcher",
    "Encoded": "batcher",
    "RerankBatcher": "rerank_batcher",
    "ApiError": "errors",
    "Metrics": "metrics",
    "run": "server",
    "API_KEY_ENV": "settings",
    "Settings": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'koe5.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"koe5.serve.{_EXPORTS[name]}"), name)
