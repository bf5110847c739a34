"""How an index ranks documents: candidates per side, each document's best chunk, fusion, filters.

A document is ranked by its best chunk. Each side (dense, BM25) asks its structure for twice as many
chunk rows as the documents wanted, folds them into documents, and asks for four times more while
too few distinct documents came back (long documents fill the top rows with their own chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from koe5.errors import InputError
from koe5.search.bm25 import KoreanBM25, top_k
from koe5.search.dense import DenseIndex
from koe5.search.hybrid import Fusion, coverage
from koe5.search.rows import Rows

MODES = ("hybrid", "dense", "bm25")

#: document (its number, or id) -> (its best score, the row of the chunk that earned it), best first
Candidates = dict[Hashable, tuple[float, int]]


@dataclass
class Hit:
    """One ranked document: its id, score, and the chunk that earned the score.

    ``chunk_id`` is ``"<doc_id>#<n>"`` (the document's n-th chunk, from 0); ``start``/``end`` are the
    chunk's character offsets in the document text. A reranked hit's ``score`` is the reranker's and
    ``retrieval_score`` the first stage's (:mod:`~koe5.search.reranking`); otherwise it is ``None``.
    """

    doc_id: str
    score: float
    chunk_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    end: int = 0
    retrieval_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``retrieval_score`` only when the hit was reranked."""
        out = asdict(self)
        if self.retrieval_score is None:
            del out["retrieval_score"]
        return out

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


def query_vector(encoder: Callable[[], Any], query: str, given: np.ndarray | None, dim: int) -> np.ndarray:
    """The query's embedding by ``encoder()`` (loaded only when needed), or ``given`` (computed
    before, e.g. in the server's batches) once its shape is checked."""
    if given is None:
        return encoder().encode_queries([query])[0]
    if np.shape(given) != (dim,):
        raise InputError(f"query_vector must have shape ({dim},)")
    return np.asarray(given, dtype=np.float32)


def candidates(fetch: Callable[[int], tuple[Sequence, Sequence, Sequence]], n_docs: int) -> Candidates:
    """The best ``n_docs`` documents of one side. ``fetch(want)`` gives its ``want`` best chunk rows
    as ``(rows, their documents, scores)``, best first (fewer when there are no more)."""
    want = n_docs * 2
    while True:
        rows, docs, scores = fetch(want)
        best = best_per_doc(rows, docs, scores, n_docs)
        if len(best) >= n_docs or len(rows) < want:
            return best
        want *= 4


def dense_candidates(
    dense: DenseIndex, vector: np.ndarray, allowed: np.ndarray, rows: Rows, n_docs: int
) -> Candidates:
    def fetch(want: int):
        found, scores = dense.search(vector, want, allowed)
        return found.tolist(), rows.chunk_doc[found].tolist(), scores.tolist()

    return candidates(fetch, n_docs)


def bm25_candidates(
    bm25: KoreanBM25, terms: np.ndarray, allowed: np.ndarray, rows: Rows, n_docs: int
) -> Candidates:
    """BM25's documents for a query's term ids (:meth:`KoreanBM25.query_ids`); a query with no
    indexed term (only punctuation or stopwords) has none."""
    scores = bm25.scores_of_ids(terms)
    if not scores.any():
        return {}
    scores = np.where(allowed[rows.live], scores, 0.0)

    def fetch(want: int):
        found, values = top_k(scores, want)
        found = rows.live[found]
        return found.tolist(), rows.chunk_doc[found].tolist(), values.tolist()

    return candidates(fetch, n_docs)


def best_per_doc(rows: Sequence, docs: Sequence, scores: Sequence, n_docs: int) -> Candidates:
    """Documents in order of their best chunk among ``rows`` (sorted best first, ``docs`` theirs)."""
    best: Candidates = {}
    for row, doc, score in zip(rows, docs, scores, strict=True):
        if doc not in best:
            best[doc] = (float(score), int(row))
            if len(best) >= n_docs:
                break
    return best


def rank(
    mode: str, dense: Candidates, sparse: Candidates, fusion: Fusion, idf_total: float = 0.0
) -> list[tuple[int, float, int]]:
    """(document, score, chunk row) best first: one side's candidates, or both fused.

    ``idf_total``: the IDF sum of the query's distinct indexed terms, for an adaptive fusion."""
    if mode == "dense":
        return [(d, s, r) for d, (s, r) in dense.items()]
    if mode == "bm25":
        return [(d, s, r) for d, (s, r) in sparse.items()]
    best = next(iter(sparse.values()))[0] if sparse else None
    fused = fusion.fuse(
        {d: s for d, (s, _) in dense.items()},
        {d: s for d, (s, _) in sparse.items()},
        coverage=coverage(best, idf_total),
    )
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
    keep = np.ones(len(rows.doc_rows), dtype=bool)
    for key, wanted in checked_filters(filters):
        accept = set(wanted)
        values = rows.doc_ids if key == "doc_id" else [m.get(key, _MISSING) for m in rows.metadata()]
        keep &= np.fromiter((_matches(v, accept) for v in values), dtype=bool, count=len(values))
    return keep[rows.chunk_doc] if len(rows) else np.zeros(0, bool)


def checked_filters(filters: Any) -> list[tuple[str, list]]:
    """``(key, the values it accepts)`` per filter; :class:`InputError` naming a bad key or value."""
    if not isinstance(filters, dict):
        raise InputError(f"filters must be a dict of metadata key -> value, got {type(filters).__name__}")
    out = []
    for key, want in filters.items():
        if not isinstance(key, str):
            raise InputError(f"filter keys must be strings, got {key!r}")
        wanted = filter_values(want)
        if wanted is None:
            raise InputError(
                f"filter {key!r}: a value must be a string, number, boolean or None, or a list of them "
                f"(got {type(want).__name__})"
            )
        out.append((key, wanted))
    return out


def refuse_existing(existing: list[str], seen: dict[str, str]) -> None:
    """An ``add`` without ``replace`` of documents the index already holds."""
    if existing:
        raise InputError(
            f"{len(existing)} document id(s) already in the index, e.g. {existing[0]!r} "
            f"({seen[existing[0]]}); delete them first or add with replace"
        )


def refuse_unknown(unknown: list[str]) -> None:
    """A ``delete`` of ids the index does not hold (without ``missing_ok``)."""
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise InputError(f"{len(unknown)} id(s) not in the index: {shown}")


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
