"""Search your own Korean documents: chunking, dense + Korean BM25 + hybrid index.

Modules, in the order data flows through them: ``documents`` (reading JSONL/CSV/Parquet/folders),
``chunking`` (token-aware chunks), ``korean`` (Kiwi analysis), ``bm25`` (Korean BM25 on bm25s),
``dense`` (exact and HNSW vector search), ``compact`` (float16, int8, int4 or binary codes searched in its
stead, the best rescored), ``hybrid`` (fusion), ``store`` (the folder on disk),
``index`` (:class:`Index`: build, add, delete, search), ``reranking`` (a cross-encoder reorders the
best results: ``search(..., rerank=...)``). The benchmark's retrievers over these parts live in
:mod:`koe5.evaluation.retrievers`: evaluation depends on search, never the reverse.

Example::

    import koe5
    from koe5.search import Index

    index = Index.build("docs.jsonl", koe5.load(), "my-index", show_progress=True)
    for hit in index.search("전세 계약 갱신 요건", k=5):
        print(hit.doc_id, hit.score, hit.text[:80])
"""

from koe5.search.bm25 import KoreanBM25
from koe5.search.chunking import Chunk, Chunker
from koe5.search.compact import VECTORS, CompactIndex
from koe5.search.dense import ANN_THRESHOLD, DenseIndex, HNSWParams
from koe5.search.documents import Document, DocumentSource
from koe5.search.hybrid import DEFAULT_FUSION, Fusion
from koe5.search.index import MODES, Hit, Index
from koe5.search.korean import DEFAULT_TAGS, KiwiAnalyzer
from koe5.search.opening import open_index

__all__ = [
    "ANN_THRESHOLD",
    "DEFAULT_FUSION",
    "DEFAULT_TAGS",
    "MODES",
    "VECTORS",
    "Chunk",
    "Chunker",
    "CompactIndex",
    "DenseIndex",
    "Document",
    "DocumentSource",
    "Fusion",
    "HNSWParams",
    "Hit",
    "Index",
    "KiwiAnalyzer",
    "KoreanBM25",
    "open_index",
]

_MOVED = {"BM25Retriever", "HybridRetriever", "IndexRetriever"}  # to koe5.evaluation, kept for one release


def __getattr__(name: str):
    if name in _MOVED:
        import warnings

        from koe5 import evaluation

        warnings.warn(f"koe5.search.{name} moved to koe5.evaluation", DeprecationWarning, stacklevel=2)
        return getattr(evaluation, name)
    raise AttributeError(f"module 'koe5.search' has no attribute {name!r}")
