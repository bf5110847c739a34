"""What the rerank routes and ``/search`` with ``rerank`` share: their checks, and the reranker's order
of search hits.

Every reranker call goes through the reranker's worker (:mod:`koe5.serve.rerank_batcher`), off the
event loop and batched with the other requests' pairs. A server without a reranker answers 404
``no_reranker`` naming ``koe5 serve --reranker``.

``/search`` with ``rerank``: the index is asked for ``rerank_depth`` documents (from ``k`` to
``Settings.max_rerank_depth``; absent, :data:`DEFAULT_DEPTH` within those bounds); the reranker
reads each hit's title and best chunk joined by a space, the text :mod:`koe5.search.reranking` gives
it too; the ``k`` best by its score (blended with the index's by the reranker's ``weight``,
:func:`~koe5.search.reranking.blend`) are returned, each hit's ``score`` that score and
``retrieval_score`` the index's (equal scores keep the index's order). This is done here, over the
hits the index returns, so the server needs nothing of the index but ``search``.

Example::

    worker = require_reranker(state)
    texts = check_candidates(request.texts, "texts", state.settings)      # [] is allowed
    result = await score(state, "한국의 수도는?", texts, param="texts")
    ranked(result.scores, texts, check_top_n(request.top_n, len(texts)))
"""

from __future__ import annotations

from typing import Any

from koe5.rerank.ranking import ranked
from koe5.search.reranking import blend, passage, weight_of
from koe5.serve.checks import answer, check_texts
from koe5.serve.errors import ApiError
from koe5.serve.rerank_batcher import RerankBatcher, RerankResult
from koe5.serve.settings import Settings
from koe5.serve.state import ServeState

#: How many of the index's documents a ``/search`` with ``rerank`` reads unless told otherwise.
DEFAULT_DEPTH = 50


def require_reranker(state: ServeState) -> RerankBatcher:
    """The reranker's worker; 404 ``no_reranker`` when the server was started without one."""
    if state.rerank_batcher is None:
        raise ApiError(
            404,
            "no_reranker",
            "this server has no reranker; start it with koe5 serve --reranker MODEL "
            "(a registry name such as dragonkue/bge-reranker-v2-m3-ko, a hub id or a folder)",
        )
    return state.rerank_batcher


def served_names(reranker) -> set[str]:
    """The names a request's ``model`` may give the served reranker: its name, its registry id or
    hub id, and its folder."""
    names = {reranker.name, getattr(getattr(reranker, "spec", None), "id", None)}
    return {str(n) for n in (*names, getattr(reranker, "location", None)) if n}


def check_model(model: str | None, reranker) -> None:
    """404 ``model_not_found`` when ``model`` names another reranker than the one served (absent: any)."""
    if model is not None and model not in served_names(reranker):
        raise ApiError(
            404,
            "model_not_found",
            f"model {model!r} is not served here: this server reranks with {reranker.name!r} "
            "(send that name, or leave model out)",
            param="model",
        )


def check_candidates(texts: list[str], param: str, settings: Settings) -> list[str]:
    """The texts to rerank, checked as embedding inputs are (``max_inputs``, ``max_chars``, Unicode);
    an empty list is allowed: it ranks to an empty answer."""
    return check_texts(texts, param, settings) if texts else []


def check_top_n(top_n: int | None, n: int) -> int | None:
    """How many results: all (``None``) or ``1 ≤ top_n ≤ n`` (422 ``top_n``); with no documents any
    ``top_n`` of at least 1 gives none."""
    if top_n is None:
        return None
    if top_n < 1:
        raise ApiError(422, "top_n", f"top_n must be at least 1, got {top_n}", param="top_n")
    if n and top_n > n:
        raise ApiError(422, "top_n", f"top_n is {top_n}, more than the {n} documents given", param="top_n")
    return top_n


def check_depth(k: int, rerank: bool, depth: int | None, settings: Settings) -> int:
    """How many documents ``/search`` asks the index for: ``k``, or with ``rerank`` the reranking
    depth, from ``k`` to ``max_rerank_depth`` (absent: :data:`DEFAULT_DEPTH` within those bounds)."""
    if not rerank:
        if depth is not None:
            raise ApiError(
                422, "rerank_depth", "rerank_depth is given without rerank=true", param="rerank_depth"
            )
        return k
    if depth is not None and depth < k:
        raise ApiError(
            422,
            "rerank_depth",
            f"rerank_depth ({depth}) must be at least k ({k}): the reranker orders the index's "
            "rerank_depth best documents and returns k of them",
            param="rerank_depth",
        )
    limit = settings.max_rerank_depth
    depth = max(k, min(DEFAULT_DEPTH, limit)) if depth is None else depth
    if depth > limit:
        raise ApiError(
            422,
            "max_rerank_depth",
            f"reranking {depth} documents; at most {limit} (max_rerank_depth)",
            param="rerank_depth",
        )
    return depth


async def score(
    state: ServeState,
    query: str,
    texts: list[str],
    *,
    raw: bool = False,
    truncate: bool | None = None,
    side: str = "right",
    param: str,
) -> RerankResult:
    """The scores of (``query``, text) for ``texts`` (in their order), from the reranker's worker;
    ``truncate=None`` means the server's ``auto_truncate``. Refusals name the field ``param``."""
    cut = state.settings.auto_truncate if truncate is None else truncate
    future = require_reranker(state).submit(query, texts, raw=raw, truncate=cut, side=side)
    return await answer(future, param)


async def rerank_hits(
    state: ServeState, query: str, hits: list[dict[str, Any]], k: int
) -> tuple[list[dict[str, Any]], int]:
    """The ``k`` best of ``hits`` (``Hit.to_dict()`` rows) by the reranker's score, with
    ``retrieval_score`` the index's; and how many of them were cut to the reranker's length."""
    if not hits:
        return [], 0
    texts = [passage(hit) for hit in hits]
    result = await score(state, query, texts, truncate=True, param="query")
    scores = blend(result.scores, [hit["score"] for hit in hits], weight_of(state.reranker))
    out = []
    for best in ranked(scores, texts, min(k, len(hits))):
        hit = dict(hits[best.index])
        hit["retrieval_score"], hit["score"] = hit["score"], best.score
        out.append(hit)
    return out, result.truncated
