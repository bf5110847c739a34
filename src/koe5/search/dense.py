"""Dense vector search by inner product: exact (numpy) or approximate (faiss HNSW).

Vectors are L2-normalised, so inner product is cosine similarity. Exact search scores every vector
(one matrix-vector product, no index to build); HNSW answers in about a millisecond at any size but
takes time to build and finds most, not all, of the true top k. :func:`choose_kind` picks exact below
:data:`ANN_THRESHOLD` vectors and HNSW above it; ``kind=`` overrides it.

Example::

    import numpy as np
    from koe5.search.dense import DenseIndex

    vectors = np.random.default_rng(0).normal(size=(1000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = DenseIndex(384, "hnsw")
    index.add(vectors)
    rows, scores = index.search(vectors[0], k=5)      # rows[0] == 0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from koe5.errors import InputError

KINDS = ("exact", "hnsw")

#: Vectors from which ``ann="auto"`` switches from exact search to HNSW. Measured with
#: ``benchmarks/search_latency.py`` on 2 shared cores (README, "Search"): exact search takes 12 ms a
#: query (p50) at 100k 384-dim vectors and 64 ms at 1M; HNSW (efSearch 128) answers in 0.3-0.4 ms with
#: recall@10 0.999 against exact, but takes 51 s to build at 100k and 6 min at 1M, is rewritten on
#: every ``add`` and rebuilt when deletions are compacted. Below 200k exact search stays near 25 ms.
ANN_THRESHOLD = 200_000

# Below this share of allowed rows, HNSW would wander through mostly filtered-out nodes: score the
# allowed rows exactly instead.
EXACT_BELOW = 0.05


@dataclass(frozen=True)
class HNSWParams:
    """faiss HNSW settings: graph degree ``m``, build beam ``ef_construction``, search beam ``ef_search``."""

    m: int = 32
    ef_construction: int = 100
    ef_search: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def choose_kind(n_vectors: int, requested: str = "auto", threshold: int = ANN_THRESHOLD) -> str:
    """``"exact"`` or ``"hnsw"`` for ``n_vectors``: the request itself, or by size for ``"auto"``."""
    if requested == "auto":
        return "hnsw" if n_vectors >= threshold else "exact"
    if requested not in KINDS:
        raise InputError(f"ann must be auto, exact or hnsw, not {requested!r}")
    return requested


class DenseIndex:
    """Inner-product search over rows of float32 vectors; rows are numbered in the order added.

    The raw vectors are always kept (``blocks``, e.g. memory-mapped ``.npy`` files), because exact
    search, filtered search and rebuilding HNSW need them.
    """

    def __init__(self, dim: int, kind: str = "exact", hnsw: HNSWParams | None = None) -> None:
        if kind not in KINDS:
            raise InputError(f"dense index kind must be exact or hnsw, not {kind!r}")
        self.dim, self.kind = int(dim), kind
        self.params = hnsw or HNSWParams()
        self.blocks: list[np.ndarray] = []
        self._hnsw = None
        if kind == "hnsw":
            self._hnsw = self._new_hnsw()

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def _new_hnsw(self):
        import faiss

        index = faiss.IndexHNSWFlat(self.dim, self.params.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.params.ef_construction
        index.hnsw.efSearch = self.params.ef_search
        return index

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (float32, ``(n, dim)``); HNSW inserts them into its graph."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if not len(vectors):
            return
        self.blocks.append(vectors)
        if self._hnsw is not None:
            self._hnsw.add(np.ascontiguousarray(vectors))

    def vectors(self) -> np.ndarray:
        """All rows as one array (a copy when there are several blocks)."""
        if len(self.blocks) == 1:
            return self.blocks[0]
        return np.concatenate(self.blocks) if self.blocks else np.zeros((0, self.dim), np.float32)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows and scores for one query vector, best first; only rows where ``allowed``."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        n = len(self)
        k = min(k, n if allowed is None else int(allowed.sum()))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self._hnsw is not None and graph_serves(allowed):
            return self._search_hnsw(query, k, allowed)
        return self._search_exact(query, k, allowed)

    def _search_exact(self, query, k, allowed):
        scores = np.concatenate([block @ query for block in self.blocks]) if self.blocks else np.zeros(0)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        return top.astype(np.int64), scores[top].astype(np.float32)

    def _search_hnsw(self, query, k, allowed):
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, k))
        bits = restrict(params, allowed)  # noqa: F841 (faiss reads it during the search)
        scores, rows = self._hnsw.search(query[None, :], k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    # --- storage: the HNSW graph (vectors are stored by the caller) -------------------------

    def save_graph(self, path: str | Path) -> None:
        import faiss

        if self._hnsw is None:
            raise InputError("only an HNSW index has a graph to save")
        faiss.write_index(self._hnsw, str(path))

    def load_graph(self, path: str | Path) -> None:
        self.kind, self._hnsw = "hnsw", read_graph(path, len(self), self.dim, self.params.ef_search)

    def build_graph(self) -> None:
        """(Re)build HNSW over all rows, e.g. when a collection grows past the threshold."""
        self.kind, self._hnsw = "hnsw", self._new_hnsw()
        for block in self.blocks:
            self._hnsw.add(np.ascontiguousarray(block))

    def drop_graph(self) -> None:
        self.kind, self._hnsw = "exact", None


def graph_serves(allowed: np.ndarray | None) -> bool:
    """Whether an HNSW graph should answer a search limited to ``allowed`` rows (else: exact scoring)."""
    return allowed is None or allowed.mean() >= EXACT_BELOW


def restrict(params, allowed: np.ndarray | None) -> np.ndarray | None:
    """Limit a faiss search to the rows where ``allowed``; returns the bitmap, which must outlive the
    search call (faiss holds a pointer to it)."""
    if allowed is None:
        return None
    import faiss

    bits = np.packbits(allowed, bitorder="little")
    params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
    return bits


def read_graph(path: str | Path, rows: int, dim: int, ef_search: int):
    """A saved faiss HNSW index, checked against the ``rows`` of ``dim`` it must hold."""
    import faiss

    index = faiss.read_index(str(path))
    if index.ntotal != rows or index.d != dim:
        raise InputError(f"{path}: HNSW graph holds {index.ntotal} vectors, expected {rows}")
    if hasattr(index, "hnsw"):  # an int4 index's inverted file has its own setting (compact.py)
        index.hnsw.efSearch = ef_search
    return index
