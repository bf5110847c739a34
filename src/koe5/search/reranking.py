"""Reranking an index's results: the first stage's ``rerank_depth`` best documents, reordered by a
cross-encoder (:class:`~koe5.rerank.Reranker`), the ``k`` best of them returned.

The reranker reads each candidate's best chunk (:attr:`Hit.text`) with the document's title in front,
joined by a space (``"서울 서울은 대한민국의 수도이다."``): the same join the index embeds a chunk with
and the benchmark gives a whole document with (MTEB's). A hit's ``score`` becomes the reranker's, or,
where the reranker's ``weight`` is below 1, the blend of the two (:func:`blend`); ``retrieval_score``
keeps the first stage's. Equal scores keep the first stage's order.
:meth:`Index.search <koe5.search.Index.search>` and the PostgreSQL store's use this one module.

Example::

    from koe5.rerank import Reranker
    from koe5.search import Index

    index = Index.load("my-index")
    hits = index.search("한국의 수도는?", k=5, rerank=Reranker.load("dragonkue/bge-reranker-v2-m3-ko"))
    hits[0].score, hits[0].retrieval_score        # the reranker's score, the hybrid's
    index.search("한국의 수도는?", k=5, rerank="default", rerank_depth=100)   # loaded once, kept
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from koe5.errors import InputError
from koe5.rerank import Reranker, ranked
from koe5.search.ranking import Hit

#: How many of the first stage's documents are reranked unless told otherwise.
DEFAULT_DEPTH = 50
#: The most a search reranks: a cross-encoder reads every candidate anew for each query.
MAX_DEPTH = 1000


class Rerankers:
    """The rerankers an index was given by name (``rerank="default"``): each loaded once, on first use,
    and kept with the index (a server's threads share them)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Reranker] = {}
        self._lock = threading.Lock()

    def get(self, rerank: Reranker | str) -> Reranker:
        """``rerank`` itself, or the reranker its name, hub id or folder loads (:meth:`Reranker.load`)."""
        if not isinstance(rerank, str):
            if not callable(getattr(rerank, "score", None)):
                raise InputError(
                    f"rerank must be a Reranker or a reranker's name, hub id or folder, "
                    f"not {type(rerank).__name__}"
                )
            return rerank
        with self._lock:
            if rerank not in self._loaded:
                self._loaded[rerank] = Reranker.load(rerank)
            return self._loaded[rerank]


def check_depth(k: int, depth: Any) -> int:
    """``rerank_depth``, if it is an integer from ``k`` to :data:`MAX_DEPTH`; an
    :class:`~koe5.errors.InputError` naming it otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise InputError(f"rerank_depth must be an integer, got {type(depth).__name__}: {depth!r:.40}")
    if depth < k:
        raise InputError(
            f"rerank_depth ({depth}) must be at least k ({k}): the reranker orders the first stage's "
            "rerank_depth best documents and returns k of them"
        )
    if depth > MAX_DEPTH:
        raise InputError(f"rerank_depth must be at most {MAX_DEPTH}, got {depth}")
    return depth


def passage(hit: Hit | dict) -> str:
    """The text the reranker reads for a hit (a :class:`Hit` or its ``to_dict()``): its title and best
    chunk, joined by a space, as the index embeds a chunk."""
    title, text = (hit.get("title"), hit["text"]) if isinstance(hit, dict) else (hit.title, hit.text)
    return f"{title} {text}".strip() if title else text


def blend(reranked: np.ndarray, retrieved: Sequence[float], weight: float) -> np.ndarray:
    """The candidates' scores: the reranker's alone at ``weight`` 1, else each list scaled to 0-1
    over the candidates (min-max, as the hybrid's fusion scales its two lists) and mixed,
    ``weight`` × reranker + (1 − ``weight``) × first stage.

    A reranker that reads a kind of collection worse than the first stage then moves its order less;
    the default reranker's weight is chosen on dev data (``benchmarks/rerank_weight.py``)."""
    if weight >= 1:
        return np.asarray(reranked, dtype=np.float64)

    def scaled(values) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        span = values.max() - values.min()
        return (values - values.min()) / span if span > 0 else np.ones_like(values)

    return weight * scaled(reranked) + (1 - weight) * scaled(retrieved)


def weight_of(reranker) -> float:
    """A reranker's share of a reranked score (:func:`blend`): its ``weight``, 1 for any other object
    with a ``score`` method (taken as a reranker to be followed alone)."""
    return float(getattr(reranker, "weight", 1.0))


def rerank_hits(reranker: Reranker, query: str, hits: list[Hit], k: int) -> list[Hit]:
    """The ``k`` best of ``hits`` by the reranker's score of :func:`passage` (blended with the first
    stage's by the reranker's ``weight``), best first, equal scores in the first stage's order. Each
    hit's ``score`` is that score, ``retrieval_score`` the first stage's."""
    if not hits:
        return []
    texts = [passage(hit) for hit in hits]
    scores = blend(reranker.score(query, texts), [hit.score for hit in hits], weight_of(reranker))
    order = ranked(scores, texts, min(k, len(hits)))
    return [replace(hits[r.index], score=r.score, retrieval_score=hits[r.index].score) for r in order]


def reranked_search(
    index: Any, query: str, k: int, rerank: Reranker | str, depth: int, **first_stage: Any
) -> list[Hit]:
    """What ``index.search(query, k, rerank=rerank, rerank_depth=depth, **first_stage)`` returns: the
    arguments checked and the reranker loaded (``index.rerankers``) before the first stage runs."""
    check_depth(k, depth)
    reranker = index.rerankers.get(rerank)
    return rerank_hits(reranker, query, index.search(query, depth, **first_stage), k)
