"""What the routes share (the model, the index, the reranker, the settings, the workers, the metrics) as
one object.

:func:`koe5.serve.create_app` puts one :class:`ServeState` on ``app.state.koe5``; a handler asks for
it with the :data:`State` dependency. A router can so be mounted on a bare app with a state of its own
and tested alone.

Example::

    from fastapi import FastAPI
    from koe5.serve.routes import info

    app = FastAPI()
    app.state.koe5 = ServeState(koe5.load())
    app.include_router(info.router)      # GET /health, /v1/models, /info, /metrics
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from koe5.serve.batcher import Batcher
from koe5.serve.metrics import Metrics
from koe5.serve.rerank_batcher import RerankBatcher
from koe5.serve.settings import Settings


@dataclass
class ServeState:
    """One server's encoder (a :class:`koe5.Encoder`), optional index and reranker (a
    :class:`koe5.rerank.Reranker`) and everything built around them.

    ``batcher`` defaults to a :class:`~koe5.serve.batcher.Batcher` over ``encoder`` (none without an
    encoder), ``rerank_batcher`` to a :class:`~koe5.serve.rerank_batcher.RerankBatcher` over
    ``reranker`` (none without one); neither is started here: the app's lifespan starts and drains them.
    """

    encoder: Any
    index: Any = None
    settings: Settings = field(default_factory=Settings)
    metrics: Metrics = field(default_factory=Metrics)
    batcher: Batcher | None = None
    #: when the server started (Unix seconds), as ``/v1/models`` reports it
    started: int = field(default_factory=lambda: int(time.time()))
    #: one thread for searches, so that a long one never blocks the event loop; the lifespan sets it
    search_pool: ThreadPoolExecutor | None = None
    reranker: Any = None
    rerank_batcher: RerankBatcher | None = None

    def __post_init__(self) -> None:
        if self.batcher is None and self.encoder is not None:
            self.batcher = Batcher(self.encoder, self.settings, self.metrics)
        if self.rerank_batcher is None and self.reranker is not None:
            self.rerank_batcher = RerankBatcher(self.reranker, self.settings, self.metrics)


def serve_state(request: Request) -> ServeState:
    """The app's :class:`ServeState` (``app.state.koe5``)."""
    return request.app.state.koe5


#: A handler's parameter ``state: State`` receives the app's :class:`ServeState`.
State = Annotated[ServeState, Depends(serve_state)]
