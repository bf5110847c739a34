"""The routes, one module per family, each an :class:`fastapi.APIRouter` of top-level handlers.

* :mod:`~koe5.serve.routes.embeddings`: ``POST /v1/embeddings`` (OpenAI), ``POST /embed`` (TEI);
* :mod:`~koe5.serve.routes.search`: ``POST /search`` over the server's index (reranked on request);
* :mod:`~koe5.serve.routes.rerank`: ``POST /rerank`` (TEI), ``POST /v1/rerank`` (Cohere, Jina);
* :mod:`~koe5.serve.routes.info`: ``GET /health``, ``/v1/models``, ``/info``, ``/metrics``.

A handler gets what it needs from the app's :class:`~koe5.serve.state.ServeState` (the ``State``
dependency), so one router can be mounted on a bare app and tested alone.
"""

from koe5.serve.routes import embeddings, info, rerank, search

#: In this order in the app and so in the OpenAPI schema (docs/openapi.json).
ROUTERS = (embeddings.router, rerank.router, search.router, info.router)

__all__ = ["ROUTERS", "embeddings", "info", "rerank", "search"]
