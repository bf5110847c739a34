"""BM25 and hybrid retrievers for the benchmark runner (:mod:`koe5.bench`).

:class:`BM25Retriever` and :class:`HybridRetriever` rank a task's whole documents, as
:class:`koe5.bench.DenseRetriever` does, so the three are compared on the same texts; ``koe5 bench
--retrievers dense,bm25,hybrid`` uses them. :class:`IndexRetriever` instead builds a real
:class:`~koe5.search.Index` of the task (chunking included) and asks it each query, as
``koe5 search`` would.

Example::

    import koe5
    from koe5.bench import DenseRetriever, evaluate_tasks
    from koe5.search import BM25Retriever, HybridRetriever

    dense = DenseRetriever(koe5.load())
    bm25 = BM25Retriever()
    evaluate_tasks(HybridRetriever(dense, bm25), ["PublicHealthQA"])
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from koe5.bench import Retriever, Run
from koe5.search.bm25 import KoreanBM25
from koe5.search.hybrid import DEFAULT_FUSION, Fusion
from koe5.search.korean import KiwiAnalyzer
from koe5.tasks import RetrievalData


class BM25Retriever:
    """Korean BM25 (Kiwi morphemes, bm25s) over a task's documents; returns only matching documents."""

    def __init__(
        self,
        analyzer: KiwiAnalyzer | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        name: str = "bm25-kiwi",
    ) -> None:
        self.analyzer = analyzer or KiwiAnalyzer()
        self.k1, self.b = k1, b
        self.name = name
        self._indexed: tuple[int, KoreanBM25] | None = None  # the last corpus indexed, by identity

    def _index_for(self, data: RetrievalData) -> KoreanBM25:
        if self._indexed is None or self._indexed[0] != id(data.corpus):
            bm25 = KoreanBM25(self.analyzer, k1=self.k1, b=self.b)
            bm25.index([data.doc_text(d) for d in data.corpus])
            self._indexed = (id(data.corpus), bm25)
        return self._indexed[1]

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        bm25 = self._index_for(data)
        doc_ids = list(data.corpus)
        query_ids = list(data.queries)
        rows, scores = bm25.search([data.queries[q] for q in query_ids], top_k)
        run: Run = {}
        for i, qid in enumerate(query_ids):
            hits = rows[i] >= 0
            run[qid] = {doc_ids[r]: float(s) for r, s in zip(rows[i][hits], scores[i][hits], strict=True)}
        return run


class HybridRetriever:
    """Fuses the rankings of a dense and a BM25 retriever (:class:`~koe5.search.hybrid.Fusion`)."""

    def __init__(
        self,
        dense: Retriever,
        sparse: Retriever | None = None,
        fusion: Fusion = DEFAULT_FUSION,
        *,
        name: str | None = None,
    ) -> None:
        self.dense = dense
        self.sparse = sparse or BM25Retriever()
        self.fusion = fusion
        self.name = name or f"hybrid-{fusion.method}-{fusion.weight:g}"

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        depth = min(self.fusion.depth, len(data.corpus))
        dense = self.dense.rank(data, depth)
        sparse = self.sparse.rank(data, depth)
        run: Run = {}
        for qid in data.queries:
            fused = self.fusion.fuse(dense.get(qid, {}), sparse.get(qid, {}))
            run[qid] = dict(list(fused.items())[:top_k])
        return run


class IndexRetriever:
    """Builds a :class:`~koe5.search.Index` of a task's documents and searches it once per query.

    Measures what ``koe5 search`` returns, chunking included: a long document is scored by its best
    chunk instead of being truncated. ``cache`` (an :class:`~koe5.embcache.EmbeddingCache`) serves
    chunk and query vectors encoded before; ``index_options`` go to :meth:`Index.build`.
    """

    def __init__(
        self,
        encoder,
        mode: str = "hybrid",
        *,
        cache=None,
        name: str | None = None,
        fusion: Fusion | None = None,
        **index_options,
    ) -> None:
        self.encoder, self.mode, self.cache, self.fusion = encoder, mode, cache, fusion
        self.index_options = index_options
        self.name = name or f"index-{mode}"

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        from koe5.embcache import encode_cached
        from koe5.search.index import Index

        query_ids = list(data.queries)
        vectors = None
        if self.mode != "bm25":
            texts = [data.queries[q] for q in query_ids]
            vectors, _ = encode_cached(self.encoder, texts, "query", self.cache)
        docs = [{"id": d, "text": data.doc_text(d)} for d in data.corpus]
        with tempfile.TemporaryDirectory() as tmp:
            index = Index.build(
                docs, self.encoder, Path(tmp) / "index", cache=self.cache, **self.index_options
            )
            run: Run = {}
            for i, qid in enumerate(query_ids):
                hits = index.search(
                    data.queries[qid],
                    k=top_k,
                    mode=self.mode,
                    fusion=self.fusion,
                    query_vector=None if vectors is None else vectors[i],
                )
                run[qid] = {h.doc_id: h.score for h in hits}
        return run
