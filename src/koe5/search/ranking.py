"""How an index ranks documents: candidates per side, each document's best chunk, fusion, filters.

A document is ranked by its best chunk. Each side (dense, BM25) asks its structure for twice as many
chunk rows as the documents wanted, folds them into documents, and asks for four times more while
too few distinct documents came back (long documents fill the top rows with their own chunks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from koe5.errors import InputError
from koe5.search.bm25 import KoreanBM25, top_k
from koe5.search.dense import DenseIndex
from koe5.search.hybrid import Fusion
from koe5.search.rows import Rows

MODES = ("hybrid", "dense", "bm25")

#: document number -> (its best score, the row of the chunk that earned it), best first
Candidates = dict[int, tuple[float, int]]


@dataclass
class Hit:
    """One ranked document: its id, score, and the chunk that earned the score.

    ``chunk_id`` is ``"<doc_id>#<n>"`` (the document's n-th chunk, from 0); ``start``/``end`` are the
    chunk's character offsets in the document text.
    """

    doc_id: str
    score: float
    chunk_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_chunk(cls, record: dict[str, Any], score: float) -> Hit:
        """The hit for a chunk record (:meth:`Rows.chunk`) and its document's score."""
        return cls(
            doc_id=record["doc_id"],
            score=float(score),
            chunk_id=f"{record['doc_id']}#{record['chunk']}",
            text=record["text"],
            title=record["title"],
            metadata=record["metadata"],
            start=record["start"],
            end=record["end"],
        )


def check_request(query: Any, k: Any, mode: Any) -> None:
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InputError("query is empty")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")


def dense_candidates(
    dense: DenseIndex, vector: np.ndarray, allowed: np.ndarray, rows: Rows, n_docs: int
) -> Candidates:
    want = n_docs * 2
    while True:
        found, scores = dense.search(vector, want, allowed)
        best = best_per_doc(found, scores, rows.chunk_doc, n_docs)
        if len(best) >= n_docs or len(found) < want:
            return best
        want *= 4


def bm25_candidates(bm25: KoreanBM25, query: str, allowed: np.ndarray, rows: Rows, n_docs: int) -> Candidates:
    """BM25's documents; a query with no indexed term (only punctuation or stopwords) has none."""
    scores = bm25.scores(query)
    if not scores.any():
        return {}
    scores = np.where(allowed[rows.live], scores, 0.0)
    want = n_docs * 2
    while True:
        found, values = top_k(scores, want)
        best = best_per_doc(rows.live[found], values, rows.chunk_doc, n_docs)
        if len(best) >= n_docs or len(found) < want:
            return best
        want *= 4


def best_per_doc(rows: np.ndarray, scores: np.ndarray, chunk_doc: np.ndarray, n_docs: int) -> Candidates:
    """Documents in order of their best chunk among ``rows`` (sorted best first)."""
    best: Candidates = {}
    for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
        doc = int(chunk_doc[row])
        if doc not in best:
            best[doc] = (score, row)
            if len(best) >= n_docs:
                break
    return best


def rank(mode: str, dense: Candidates, sparse: Candidates, fusion: Fusion) -> list[tuple[int, float, int]]:
    """(document, score, chunk row) best first: one side's candidates, or both fused."""
    if mode == "dense":
        return [(d, s, r) for d, (s, r) in dense.items()]
    if mode == "bm25":
        return [(d, s, r) for d, (s, r) in sparse.items()]
    fused = fusion.fuse({d: s for d, (s, _) in dense.items()}, {d: s for d, (s, _) in sparse.items()})
    return [(d, s, hybrid_chunk(d, dense, sparse)) for d, s in fused.items()]


def hybrid_chunk(doc: int, dense: Candidates, sparse: Candidates) -> int:
    """The chunk shown for a fused document: the one the side that ranked the document higher chose."""
    if doc not in sparse:
        return dense[doc][1]
    if doc not in dense:
        return sparse[doc][1]
    dense_rank = list(dense).index(doc)
    sparse_rank = list(sparse).index(doc)
    return dense[doc][1] if dense_rank <= sparse_rank else sparse[doc][1]


_MISSING = object()


def filter_mask(rows: Rows, filters: dict[str, Any]) -> np.ndarray:
    """The rows whose document matches every ``{metadata key: value}`` (a list/tuple/set value means
    any of them; ``"doc_id"`` filters on ids)."""
    if not isinstance(filters, dict):
        raise InputError(f"filters must be a dict of metadata key -> value, got {type(filters).__name__}")
    keep = np.ones(len(rows.doc_rows), dtype=bool)
    for key, want in filters.items():
        if not isinstance(key, str):
            raise InputError(f"filter keys must be strings, got {key!r}")
        wanted = filter_values(want)
        if wanted is None:
            raise InputError(
                f"filter {key!r}: a value must be a string, number, boolean or None, or a list of them "
                f"(got {type(want).__name__})"
            )
        accept = set(wanted)
        values = rows.doc_ids if key == "doc_id" else [m.get(key, _MISSING) for m in rows.metadata()]
        keep &= np.fromiter((_matches(v, accept) for v in values), dtype=bool, count=len(values))
    return keep[rows.chunk_doc] if len(rows) else np.zeros(0, bool)


def filter_values(want: Any) -> list | None:
    """The values a filter's ``want`` accepts (a list/tuple/set means any of them), or ``None`` when
    one is not a string, number, boolean or None: metadata holds no other value to compare with."""
    wanted = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
    return wanted if all(w is None or isinstance(w, (str, int, float, bool)) for w in wanted) else None


def unknown_keys(rows: Rows, filters: dict[str, Any]) -> list[str]:
    """The keys of ``filters`` (``doc_id`` aside) that no live document's metadata has."""
    docs = [rows.metadata()[d] for d in rows.ids.values()]
    return [key for key in filters if key != "doc_id" and not any(key in meta for meta in docs)]


def _matches(value: Any, accept: set) -> bool:
    if value is _MISSING:
        return False
    try:
        return value in accept
    except TypeError:  # unhashable metadata value (a list, a dict): compare one by one
        return any(value == a for a in accept)
