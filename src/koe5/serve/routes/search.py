"""``POST /search``: the server's index (``koe5 serve --index FOLDER``), answered as ``koe5 search --json``.

The query is embedded in the batches with the other requests (dense and hybrid modes); the search
itself runs on the state's search thread, off the event loop. With ``rerank`` the index gives
``rerank_depth`` documents and the reranker's worker reorders them (:mod:`koe5.serve.reranking`); the
answer then carries ``X-Koe5-Truncated``, how many of them were cut to the reranker's length.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from fastapi import APIRouter
from starlette.responses import Response

from koe5.errors import DatabaseError, InputError
from koe5.serve.checks import check_filters, check_query, encode
from koe5.serve.errors import ApiError
from koe5.serve.reranking import check_depth, require_reranker, rerank_hits
from koe5.serve.responses import error_docs, json_response
from koe5.serve.schemas import ErrorBody, SearchRequest, SearchResponse
from koe5.serve.state import State

log = logging.getLogger("koe5.serve")

router = APIRouter()


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_docs(ErrorBody, 401, 404, 413, 422, 429, 503),
    tags=["search"],
    summary="Search the server's index",
)
async def search(request: SearchRequest, state: State) -> Response:
    """The ``k`` best documents for ``query`` in the index, each with its best chunk, as
    ``koe5 search --json`` prints them. Dense and hybrid queries are embedded in the batches.

    With ``rerank``, the reranker orders the index's ``rerank_depth`` best and the ``k`` best of
    them are returned: ``score`` is the reranker's, ``retrieval_score`` the index's."""
    index, settings = state.index, state.settings
    if index is None:
        raise ApiError(404, "no_index", "this server has no index; start it with koe5 serve --index FOLDER")
    check_query(request.query, settings)
    check_filters(request.filters)
    if request.k > settings.max_k:
        raise ApiError(422, "max_k", f"k is {request.k}; at most {settings.max_k} (max_k)", param="k")
    if request.rerank:
        require_reranker(state)
    depth = check_depth(request.k, request.rerank, request.rerank_depth, settings)
    vector = None
    if request.mode != "bm25":
        vector = (await encode(state, [request.query], "query", True, "query")).vectors[0]
    # the index's own search, reranked below: the server needs nothing of the index but `search`
    run = partial(index.search, request.query, depth, request.mode, request.filters, query_vector=vector)
    try:
        # without a lifespan (a bare app in a test) search_pool is None: asyncio's default executor
        hits = await asyncio.get_running_loop().run_in_executor(state.search_pool, run)
    except InputError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    except DatabaseError as exc:  # the index's database is down or refusing: try again later
        raise ApiError(503, "index_unavailable", str(exc), headers={"Retry-After": "5"}) from None
    rows, truncated = [h.to_dict() for h in hits], None
    if request.rerank:
        rows, truncated = await rerank_hits(state, request.query, rows, request.k)
    body = {"query": request.query, "mode": request.mode, "k": request.k, "hits": rows}
    return json_response(body, truncated=truncated)


def warm_up(index) -> None:
    """One small search, so that the Korean analyser loads at start-up rather than on the first query."""
    try:
        index.search("준비", k=1, mode="bm25")
    except Exception:  # a warm-up failure must not stop the server; a real query will report it
        log.warning("koe5: warming up the index failed", exc_info=True)
