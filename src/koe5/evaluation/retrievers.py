"""The retrievers ``koe5 bench`` compares: each ranks a task's corpus for each of its queries.

:class:`DenseRetriever` (an :class:`~koe5.encoder.Encoder`, exact cosine), :class:`BM25Retriever` and
:class:`HybridRetriever` rank a task's whole documents, so the three are compared on the same texts;
``koe5 bench --retrievers dense,bm25,hybrid`` uses them. :class:`IndexRetriever` instead builds a real
:class:`~koe5.search.Index` of the task (chunking included) and asks it each query, as ``koe5 search``
would. :class:`RerankRetriever` reorders another retriever's best documents with a cross-encoder
(``--retrievers hybrid+rerank``). Any object with a ``name`` and a ``rank`` method (:class:`Retriever`)
can be benchmarked.

Evaluation depends on search, never the reverse: nothing in :mod:`koe5.search` imports this module.

Example::

    import koe5
    from koe5.evaluation import BM25Retriever, DenseRetriever, HybridRetriever, evaluate_tasks

    dense = DenseRetriever(koe5.load())
    bm25 = BM25Retriever()
    evaluate_tasks(HybridRetriever(dense, bm25), ["PublicHealthQA"])
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from koe5.embcache import EmbeddingCache, encode_cached
from koe5.errors import InputError
from koe5.evaluation.metrics import run_from_scores
from koe5.rerank.ranking import ranked
from koe5.search.bm25 import KoreanBM25
from koe5.search.hybrid import DEFAULT_FUSION, Fusion, coverage
from koe5.search.korean import KiwiAnalyzer
from koe5.search.reranking import blend, weight_of
from koe5.tasks import RetrievalData

Run = dict[str, dict[str, float]]


class Retriever(Protocol):
    """Ranks a task's corpus for each of its queries: ``{query id: {doc id: score}}``, top_k each."""

    name: str

    def rank(self, data: RetrievalData, top_k: int) -> Run: ...


class FunctionRetriever:
    """A plain function ``(data, top_k) -> run`` as a :class:`Retriever`."""

    def __init__(self, name: str, fn: Callable[[RetrievalData, int], Run]) -> None:
        self.name, self._fn = name, fn

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        return self._fn(data, top_k)


class DenseRetriever:
    """Exact cosine search with an encoder; corpus and query vectors go through the embedding cache."""

    def __init__(
        self,
        encoder,
        *,
        name: str | None = None,
        cache: EmbeddingCache | None = None,
        show_progress: bool = False,
        batch_size: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.name = name or encoder.name
        self.cache = cache
        self.show_progress = show_progress
        self.batch_size = batch_size
        self.encoded = 0  # texts actually run through the model (cache misses)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        vectors, n = encode_cached(
            self.encoder,
            texts,
            kind,
            self.cache,
            show_progress=self.show_progress,
            batch_size=self.batch_size,
        )
        self.encoded += n
        return vectors

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        doc_ids = list(data.corpus)
        query_ids = list(data.queries)
        docs = self._encode([data.doc_text(d) for d in doc_ids], "passage")
        queries = self._encode([data.queries[q] for q in query_ids], "query")
        run: Run = {}
        for start in range(0, len(query_ids), 1024):  # bounded score matrix for large corpora
            block = queries[start : start + 1024] @ docs.T
            run.update(run_from_scores(query_ids[start : start + 1024], doc_ids, block, top_k))
        return run


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

    def idf_totals(self, data: RetrievalData) -> dict[str, float]:
        """Per query, the IDF sum of its distinct indexed terms (an adaptive fusion's signal)."""
        bm25 = self._index_for(data)
        return {q: bm25.idf_total(bm25.query_ids(text)) for q, text in data.queries.items()}

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
        self.name = name or f"hybrid-{fusion.label}"

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        depth = min(self.fusion.depth, len(data.corpus))
        dense = self.dense.rank(data, depth)
        sparse = self.sparse.rank(data, depth)
        # an adaptive fusion needs the BM25 side's IDF sums; a retriever that has none gets the fixed weight
        idf = getattr(self.sparse, "idf_totals", lambda _: {})(data) if self.fusion.adaptive else {}
        return fuse_runs(self.fusion, data.queries, dense, sparse, idf, top_k)


def fuse_runs(
    fusion: Fusion, queries: Iterable[str], dense: Run, sparse: Run, idf: dict[str, float], top_k: int
) -> Run:
    """Each query's dense and BM25 rankings fused, ``top_k`` kept; ``idf``: per query the IDF sum of its
    indexed terms (:meth:`BM25Retriever.idf_totals`), for an adaptive fusion."""
    run: Run = {}
    for qid in queries:
        found = sparse.get(qid, {})
        best = max(found.values()) if found else None
        fused = fusion.fuse(dense.get(qid, {}), found, coverage=coverage(best, idf.get(qid, 0.0)))
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


class RerankRetriever:
    """A first stage's ``depth`` best documents, reordered by a reranker (:class:`~koe5.rerank.Reranker`).

    The reranker reads each candidate's whole text as the first stage's model does
    (:meth:`RetrievalData.doc_text <koe5.tasks.RetrievalData.doc_text>`: title and text, MTEB's join).
    A query's run holds at most ``depth`` documents, so metrics at a cut-off beyond ``depth`` see only
    those. Equal reranker scores keep the first stage's order. A reranker whose ``weight`` is below 1
    is blended with the first stage's scores as in search (:func:`koe5.search.reranking.blend`).

    Example::

        from koe5.rerank import Reranker

        hybrid = HybridRetriever(DenseRetriever(koe5.load()))
        evaluate_tasks(RerankRetriever(hybrid, Reranker.load("default"), depth=50), ["PublicHealthQA"])
    """

    def __init__(
        self,
        first_stage: Retriever,
        reranker,
        depth: int = 50,
        *,
        name: str | None = None,
        show_progress: bool = False,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise InputError(f"depth must be a positive integer, got {depth!r}")
        self.first_stage, self.reranker, self.depth = first_stage, reranker, depth
        self.weight = weight_of(reranker)
        backend = getattr(reranker, "backend", "torch")
        window = getattr(reranker, "window", None)
        self.name = name or rerank_label(first_stage.name, reranker.name, depth, self.weight, backend, window)
        self.show_progress = show_progress

    def rank(self, data: RetrievalData, top_k: int) -> Run:
        from tqdm.auto import tqdm

        first = self.first_stage.rank(data, min(self.depth, len(data.corpus)))
        queries = tqdm(data.queries, "reranking", unit="query", disable=not self.show_progress, leave=False)
        run: Run = {}
        for qid in queries:
            found = first.get(qid, {})
            docs = sorted(found, key=found.__getitem__, reverse=True)[
                : self.depth
            ]  # a run need not be sorted
            run[qid] = {}
            if docs:
                texts = [data.doc_text(d) for d in docs]
                read = self.reranker.score(data.queries[qid], texts)
                scores = blend(read, [found[d] for d in docs], self.weight)
                best = ranked(scores, texts, min(top_k, len(docs)))
                run[qid] = {docs[r.index]: r.score for r in best}
        return run


def rerank_label(
    first_stage: str,
    reranker: str,
    depth: int,
    weight: float = 1.0,
    backend: str = "torch",
    window: int | None = None,
) -> str:
    """The row (and result folder) of a reranked first stage: ``<first stage>+rerank-<reranker>-d<depth>``,
    the reranker named by its last path part (``koe5/bm25-kiwi+rerank-bge-reranker-v2-m3-ko-d50``),
    ``-w<weight>`` where the reranker's score is blended with the first stage's, ``-win<tokens>``
    where it reads long texts in windows, and ``-<backend>`` where another backend than torch fp32
    runs it (``-onnx-int8``: its scores differ)."""
    short = reranker.rstrip("/").rsplit("/", 1)[-1]
    label = f"{first_stage}+rerank-{short}-d{depth}" + (f"-w{weight:g}" if weight < 1 else "")
    label += f"-win{window}" if window else ""
    return label + (f"-{backend}" if backend != "torch" else "")
