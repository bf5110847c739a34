"""Search your own Korean documents: chunking, dense + Korean BM25 + hybrid index.

Modules, in the order data flows through them: ``documents`` (reading JSONL/CSV/Parquet/folders),
``chunking`` (token-aware chunks), ``korean`` (Kiwi analysis), ``bm25`` (Korean BM25 on bm25s),
``dense`` (exact and HNSW vector search), ``hybrid`` (fusion), ``store`` (the folder on disk),
``index`` (:class:`Index`: build, add, delete, search), ``retrievers`` (for ``koe5 bench``).

Example::

    import koe5
    from koe5.search import Index

    index = Index.build("docs.jsonl", koe5.load(), "my-index", show_progress=True)
    for hit in index.search("전세 계약 갱신 요건", k=5):
        print(hit.doc_id, hit.score, hit.text[:80])
"""

from koe5.search.bm25 import KoreanBM25
from koe5.search.chunking import Chunk, Chunker
from koe5.search.dense import ANN_THRESHOLD, DenseIndex, HNSWParams
from koe5.search.documents import Document, DocumentSource
from koe5.search.hybrid import DEFAULT_FUSION, Fusion
from koe5.search.index import MODES, Hit, Index
from koe5.search.korean import DEFAULT_TAGS, KiwiAnalyzer
from koe5.search.retrievers import BM25Retriever, HybridRetriever, IndexRetriever

__all__ = [
    "ANN_THRESHOLD",
    "DEFAULT_FUSION",
    "DEFAULT_TAGS",
    "MODES",
    "BM25Retriever",
    "Chunk",
    "Chunker",
    "DenseIndex",
    "Document",
    "DocumentSource",
    "Fusion",
    "HNSWParams",
    "Hit",
    "HybridRetriever",
    "Index",
    "IndexRetriever",
    "KiwiAnalyzer",
    "KoreanBM25",
]
