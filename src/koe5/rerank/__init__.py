"""Rerank search results with a cross-encoder: the second stage after :mod:`koe5.search`.

Modules: ``registry`` (known rerankers, as data in ``data/rerankers.json``), ``folders`` (what a
reranker folder must be, checked before its weights load), ``inputs`` (the rules a call's input must
meet), ``model`` (:class:`Reranker`: load, score, rank, save), ``ranking`` (scores → a ranking) and
``candidates`` (reading candidates from JSONL or text files, for ``koe5 rerank``), ``backends`` (torch
or ONNX Runtime runs the model; ``auto``) and ``export`` (ONNX exports and the backends' quality gate).

Example::

    from koe5.rerank import Reranker

    reranker = Reranker.load("dragonkue/bge-reranker-v2-m3-ko")
    hits = reranker.rank("한국의 수도는?", ["부산은 항구 도시이다.", "서울은 대한민국의 수도이다."], top_k=1)
    hits[0].index, hits[0].score          # (1, 0.99...)
"""

from koe5.rerank.model import MAX_TOKENS, Reranker, Scores
from koe5.rerank.ranking import Ranked, ranked
from koe5.rerank.registry import RerankerSpec, default_reranker_dir, known_rerankers

__all__ = [
    "MAX_TOKENS",
    "Ranked",
    "Reranker",
    "RerankerSpec",
    "Scores",
    "default_reranker_dir",
    "known_rerankers",
    "ranked",
]
