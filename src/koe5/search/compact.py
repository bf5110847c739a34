"""Compact vectors for the dense side: float16, int8, int4 or binary codes in memory, float32 rows on disk.

An index built with ``vectors="int8"`` (or ``"float16"``, ``"int4"``, ``"binary"``) searches compact
codes of its chunk vectors for candidates, then rescores the ``oversample × k`` best of them exactly, from the
float32 vectors the segments keep in memory-mapped files. Only the candidates' rows are read, so the
full vectors never have to be resident: memory holds the codes (and their HNSW graph, above the
index's ANN threshold; for int4 an inverted file instead, see :meth:`Codec.graph`), and the scores a
search returns are the float32 inner products.

- ``float16``: 2 bytes a dimension, faiss's half floats; candidates almost exactly float32's.
- ``int8``: 1 byte a dimension, each dimension's range calibrated on the corpus (:meth:`Codec.calibrate`).
- ``int4``: 4 bits a dimension (and 20 bytes a row), RaBitQ's extended codes of the row less the
  corpus mean: the sign bit and three more.
- ``binary``: 1 bit a dimension (and 8 bytes a row), the signs of the row less the corpus mean.

The calibration is stored with the index and never changes: rows added later are coded with the same
ranges (values outside them are clipped), so every code of an index means the same thing.

Example::

    import numpy as np
    from koe5.search.compact import Codec, CompactIndex

    vectors = np.random.default_rng(0).normal(size=(1000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = CompactIndex(Codec.calibrate("int8", vectors))
    index.add(vectors)
    rows, scores = index.search(vectors[0], k=5)   # rows[0] == 0; scores: float32 inner products
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koe5.errors import InputError
from koe5.search.dense import KINDS, HNSWParams, graph_serves, read_graph, restrict

VECTORS = ("float32", "float16", "int8", "int4", "binary")

#: Bits a dimension of the RaBitQ kinds.
RABITQ_BITS = {"binary": 1, "int4": 4}

#: Candidates rescored per result, by kind: the smallest multiple (at least 2) that found ≥ 0.995 of
#: float32's top 10 on Korean passages outside the benchmark suite (StrategyQA-ko and Welfare-QA,
#: ``benchmarks/compact_quality.py --dev``; the sweep is on docs/performance.md).
DEFAULT_OVERSAMPLE = {"float16": 2, "int8": 2, "int4": 2, "binary": 16}

#: Rows a build reads to calibrate (the int8 ranges, the binary centre): evenly spaced over the whole
#: corpus, so that a corpus sorted by topic is sampled across its topics.
CALIBRATION_ROWS = 65_536


def check_vectors(name: str) -> str:
    if name not in VECTORS:
        raise InputError(f"vectors must be one of {', '.join(VECTORS)}, not {name!r}")
    return name


def vectors_of(manifest: dict) -> str:
    """The vector setting of an index; indexes made before the setting existed hold float32."""
    return manifest.get("dense", {}).get("vectors", "float32")


def setting(vectors: str, oversample: int | None) -> dict:
    """The manifest's dense entries for ``vectors`` (none for float32, so its manifest stays as it was)."""
    check_vectors(vectors)
    if vectors == "float32":
        if oversample is not None:
            raise InputError(
                "oversample applies to compact vectors (float16, int8, int4, binary), not float32"
            )
        return {}
    if oversample is None:
        oversample = DEFAULT_OVERSAMPLE[vectors]
    if not isinstance(oversample, int) or oversample < 1:
        raise InputError(f"oversample must be a positive integer, got {oversample!r}")
    return {"vectors": vectors, "oversample": oversample}


def check_same(held: str, wanted: str | None, where: str, remedy: str) -> None:
    """:class:`InputError` naming both settings unless ``wanted`` (if given) is the ``held`` one."""
    if wanted is not None and check_vectors(wanted) != held:
        raise InputError(f"{where} holds {held} vectors, not {wanted}; {remedy}")


@dataclass(frozen=True, eq=False)
class Codec:
    """How float32 rows become the codes of one kind, and the faiss indexes that search those codes.

    ``params``: for int8 the range of each dimension, ``(2, dim)`` (low, high); for binary the corpus
    mean (a bit is 1 where a row is above it); for float16 nothing. faiss codes the rows itself: its
    scalar quantizer (float16, int8) and RaBitQ (binary: the sign bits of the row less the mean,
    packed, and two float32 factors a row with which a float query estimates its inner product with
    the bits, a far better guide than the Hamming distance between two rows' bits).
    """

    kind: str
    dim: int
    params: np.ndarray | None = None

    @classmethod
    def calibrate(cls, kind: str, sample: np.ndarray) -> Codec:
        """The codec of ``kind`` for a corpus of which ``sample`` is a representative set of rows."""
        if check_vectors(kind) == "float32":
            raise InputError("float32 vectors are not coded")
        sample = np.asarray(sample, dtype=np.float32)
        dim, params = sample.shape[1], None
        if kind == "int8":
            # each dimension's minimum to maximum over the sample; clipping at the 0.1 % and 99.9 %
            # quantiles found fewer of float32's top 10 on the dev passages (compact_quality.py --dev):
            # E5's large values sit in a few dimensions and rank passages, they are not noise to clip
            low, high = sample.min(axis=0), sample.max(axis=0)
            params = np.stack([low, np.maximum(high, low + 1e-6)]).astype(np.float32)  # > 0 wide
        elif kind in RABITQ_BITS:
            # bits around the corpus mean, not 0: E5's vectors share a large common direction, so raw
            # signs are nearly constant in many dimensions (compact_quality.py --dev measures both)
            params = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
        return cls(kind, dim, params)

    def save(self, path: Path) -> None:
        if self.params is not None:
            np.save(path, self.params)

    @classmethod
    def load(cls, kind: str, dim: int, path: Path) -> Codec:
        params = np.load(path) if kind != "float16" else None
        if params is not None and params.shape[-1] != dim:
            raise InputError(f"{path}: calibration of {params.shape[-1]} dimensions, expected {dim}")
        return cls(kind, dim, params)

    @property
    def code_size(self) -> int:
        """Bytes a row (binary and int4: the bits, then RaBitQ's float32 factors)."""
        if self.kind in RABITQ_BITS:
            import faiss

            return faiss.IndexRaBitQ(self.dim, faiss.METRIC_L2, RABITQ_BITS[self.kind]).code_size
        return {"float16": 2 * self.dim, "int8": self.dim}[self.kind]

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """The codes of float32 rows, ``(n, code_size)`` bytes."""
        return self._quantizer().sa_encode(np.ascontiguousarray(vectors, dtype=np.float32))

    def flat(self):
        """An empty faiss index that searches codes exhaustively (a float query against the codes)."""
        return self._quantizer()

    def graph(self, params: HNSWParams, blocks: list[np.ndarray]):
        """An empty faiss ANN index over codes (see :data:`ANN` for why faiss's) for the rows of
        ``blocks``: an HNSW graph; for int4 an inverted file, its lists trained on a sample of them.

        int4's codes (212 bytes a row at 384 dimensions) and an HNSW graph's links (256 bytes a row at
        M=32) would not hold 10M rows in 4 GB; an inverted file over them adds 8 bytes a row (its ids)
        and ``sqrt(rows)`` centroids, and its 4-bit estimates find more of the exact top 10 at 2
        candidates a result than the graph over 1-bit codes at 16 (``benchmarks/compact_scale.py``).
        """
        import faiss

        if self.kind == "int4":
            lists = ivf_lists(sum(len(b) for b in blocks))
            index = faiss.IndexIVFRaBitQ(
                faiss.IndexFlatL2(self.dim), self.dim, lists, faiss.METRIC_L2, True, 4
            )
            index.train(sample_rows(blocks, 64 * lists))  # k-means: 64 rows a list (faiss's advice: 39+)
            index.nprobe = ivf_probes(lists)
            return index
        if self.kind == "binary":
            index = faiss.IndexHNSWRaBitQ(self.dim, params.m, 1)  # 1 bit a dimension
        else:
            index = faiss.IndexHNSWSQ(self.dim, self._qtype(), params.m, faiss.METRIC_INNER_PRODUCT)
        self._train(faiss.downcast_index(index.storage))
        index.is_trained = True
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
        return index

    def insert_codes(self, flat, codes: np.ndarray) -> None:
        """Add stored codes to a :meth:`flat` index."""
        flat.add_sa_codes(np.ascontiguousarray(codes, dtype=np.uint8))

    def _qtype(self):
        import faiss

        return faiss.ScalarQuantizer.QT_fp16 if self.kind == "float16" else faiss.ScalarQuantizer.QT_8bit

    def _quantizer(self):
        import faiss

        if self.kind in RABITQ_BITS:
            # faiss's HNSW over RaBitQ measures L2 only; on unit vectors L2 orders rows as the inner
            # product does, and the candidates are rescored by inner product anyway
            index = faiss.IndexRaBitQ(self.dim, faiss.METRIC_L2, RABITQ_BITS[self.kind])
        else:
            index = faiss.IndexScalarQuantizer(self.dim, self._qtype(), faiss.METRIC_INNER_PRODUCT)
        self._train(index)
        return index

    def _train(self, index) -> None:
        """Give a faiss quantizer the calibration (the scalar quantizer stores low and width)."""
        import faiss

        if self.kind == "int8":
            low, high = self.params
            faiss.copy_array_to_vector(np.concatenate([low, high - low]).astype(np.float32), index.sq.trained)
        elif self.kind in RABITQ_BITS:
            faiss.copy_array_to_vector(self.params, index.center)
        index.is_trained = True


def ivf_lists(rows: int) -> int:
    """Lists of an int4 inverted file: the power of two nearest ``sqrt(rows)``, at least 16."""
    return max(16, 2 ** round(np.log2(max(rows, 1)) / 2))


def ivf_probes(lists: int) -> int:
    """Lists an int4 search reads: 16. On the clustered synthetic collections of
    ``benchmarks/compact_scale.py`` (1M and 10M rows; the bundled tasks not involved) reading 8, 16
    or 32 of 4,096 lists found the same share of the exact top 10 at 2 candidates a result, and the
    time grew with the lists read; 16 leaves room for collections less clustered than those."""
    return min(16, lists)


#: The ANN over codes is faiss's HNSW (IndexHNSWSQ for float16/int8, IndexHNSWRaBitQ for binary), not
#: usearch: faiss's graphs held fewer bytes a row for the same recall, usearch's Python API takes no
#: filter (koe5's metadata filters give faiss a bitmap of the allowed rows) and its b1 index compares
#: bits by Hamming distance, a worse guide than RaBitQ's estimate on real E5 vectors. The measurements:
#: ``benchmarks/compact_scale.py --engines`` and ``compact_quality.py --dev`` (docs/performance.md).
ANN = "faiss"


class CompactIndex:
    """:class:`~koe5.search.dense.DenseIndex`'s interface over compact codes: candidates from the codes
    (exhaustively, or by an HNSW graph over them), the best ``oversample × k`` rescored from the
    float32 rows (``blocks``, memory-mapped; only the candidates' rows are read)."""

    def __init__(
        self, codec: Codec, kind: str = "exact", hnsw: HNSWParams | None = None, oversample: int | None = None
    ) -> None:
        if kind not in KINDS:
            raise InputError(f"dense index kind must be exact or hnsw, not {kind!r}")
        self.codec, self.dim, self.kind = codec, codec.dim, kind
        self.params = hnsw or HNSWParams()
        self.oversample = oversample or DEFAULT_OVERSAMPLE[codec.kind]
        self._blocks: list[np.ndarray] = []
        self._starts = np.zeros(1, np.int64)
        self._index = None if kind == "hnsw" else codec.flat()  # a graph is made with its first rows

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def blocks(self) -> list[np.ndarray]:
        """The float32 rows, in row order (read for rescoring only)."""
        return self._blocks

    @blocks.setter
    def blocks(self, blocks: list[np.ndarray]) -> None:
        """New rows (compaction): exact search codes them again; an HNSW graph is rebuilt by
        :meth:`build_graph`, as :class:`DenseIndex`'s is."""
        self._set_blocks(blocks)
        if self.kind == "exact":
            self._index = self.codec.flat()
            for block in blocks:
                self._insert(self._index, block)

    def attach(self, blocks: list[np.ndarray], codes: list[np.ndarray] | None) -> None:
        """The rows of an index opened from disk with their stored codes (exact search; an HNSW graph
        brings its own copy of the codes, :meth:`load_graph`)."""
        self._set_blocks(blocks)
        for part in codes or []:
            self.codec.insert_codes(self._index, part)

    def _set_blocks(self, blocks: list[np.ndarray]) -> None:
        self._blocks = list(blocks)
        sizes = [len(b) for b in self._blocks]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (float32, ``(n, dim)``): coded into the exact index or the graph."""
        vectors = np.asarray(vectors, dtype=np.float32)  # a memory-mapped block stays one
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if not len(vectors):
            return
        self.extend([vectors])

    def extend(self, blocks: list[np.ndarray]) -> None:
        """Append several blocks of rows at once: a new graph (an int4 inverted file's lists) is then
        made from a sample of all of them, not of the first."""
        blocks = [np.asarray(b, dtype=np.float32) for b in blocks if len(b)]
        if not blocks:
            return
        self._set_blocks([*self._blocks, *blocks])
        if self._index is None:  # an HNSW index's first rows: these are all its rows
            self._index = self.codec.graph(self.params, self._blocks)
        for block in blocks:
            self._insert(self._index, block)

    def _insert(self, index, block: np.ndarray, step: int = 65_536) -> None:
        for start in range(0, len(block), step):  # bounded copies of a memory-mapped block
            index.add(np.ascontiguousarray(block[start : start + step], dtype=np.float32))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows and their exact float32 scores for one query, best first; only rows where
        ``allowed``."""
        import faiss

        query = np.asarray(query, dtype=np.float32).reshape(-1)
        n = len(self) if allowed is None else int(allowed.sum())
        k = min(k, n)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        want = min(k * self.oversample, n)
        if self._ivf:  # a filter that leaves few rows reads every list, skipping the rows it excludes
            probes = self._index.nprobe if graph_serves(allowed) else self._index.nlist
            index, params = self._index, faiss.IVFRaBitQSearchParameters()
            params.nprobe = probes
        elif self.kind == "hnsw" and graph_serves(allowed):
            index, params = self._index, faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, want))
        else:  # a graph's own storage is the exact index of its codes
            index, params = self._flat(), faiss.SearchParameters()
        bits = restrict(params, allowed)  # noqa: F841 (faiss reads it during the search)
        _, found = index.search(query[None, :], want, params=params)
        return rescore(self._blocks, self._starts, query, found[0][found[0] >= 0], k)

    def _flat(self):
        import faiss

        return self._index if self.kind == "exact" else faiss.downcast_index(self._index.storage)

    # --- the HNSW graph over the codes (the codes are stored by the caller) -------------------

    def build_graph(self) -> None:
        """(Re)build HNSW over all rows, e.g. when a collection grows past the threshold."""
        self.kind, self._index = "hnsw", self.codec.graph(self.params, self._blocks)
        for block in self._blocks:
            self._insert(self._index, block)

    @property
    def _ivf(self) -> bool:
        """Whether the ANN is int4's inverted file (searched by lists, not a graph)."""
        return self.kind == "hnsw" and self.codec.kind == "int4"

    def save_graph(self, path: str | Path) -> None:
        import faiss

        if self.kind != "hnsw":
            raise InputError("only an HNSW index has a graph to save")
        faiss.write_index(self._index, str(path))

    def load_graph(self, path: str | Path) -> None:
        self.kind, self._index = "hnsw", read_graph(path, len(self), self.dim, self.params.ef_search)
        if self._ivf:  # its lists read a search: koe5's rule for its size, not the file's
            self._index.nprobe = ivf_probes(self._index.nlist)

    def drop_graph(self) -> None:
        self.kind = "exact"
        self.blocks = self._blocks


def rescore(
    blocks: list[np.ndarray], starts: np.ndarray, query: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of candidate ``rows`` by their float32 inner product with ``query``, best first
    (equal scores: lower row first, as exact search orders them)."""
    rows = np.unique(rows.astype(np.int64))
    scores = gather(blocks, starts, rows) @ query
    top = np.lexsort((rows, -scores))[:k]
    return rows[top], scores[top]


def gather(blocks: list[np.ndarray], starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The float32 vectors of sorted ``rows`` (``starts``: each block's first row), one fancy-indexed
    read a block, in file order: a memory-mapped block pages in only those rows."""
    which = np.searchsorted(starts, rows, side="right") - 1
    out = np.empty((len(rows), blocks[0].shape[1] if blocks else 0), dtype=np.float32)
    parts = [(b, which == b) for b in np.unique(which)]
    for b, take in parts:
        prefetch(blocks[b], rows[take] - starts[b])
    for b, take in parts:
        out[take] = blocks[b][rows[take] - starts[b]]
    return out


def prefetch(block: np.ndarray, rows: np.ndarray) -> None:
    """Ask the kernel for the pages of ``rows`` of a memory-mapped block all at once, so that a disk
    reads them in parallel rather than one page fault after another (100 random rows off this VM's
    disk: ~1 ms instead of ~5 ms, with 40 ms outliers); a block in memory needs nothing."""
    mapping = block
    while mapping is not None and not isinstance(mapping, mmap.mmap):
        mapping = getattr(mapping, "base", None)
    if mapping is None or not len(rows) or not hasattr(mmap, "MADV_WILLNEED"):  # not every OS has it
        return
    start = block.__array_interface__["data"][0] - np.frombuffer(mapping, np.uint8).ctypes.data
    size = block.strides[0]
    for at in (start + rows * size).tolist():
        page = at - at % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_WILLNEED, page, at + size - page)


def sample_rows(blocks: list[np.ndarray], limit: int = CALIBRATION_ROWS) -> np.ndarray:
    """Up to ``limit`` rows spread evenly over ``blocks`` (all of them when there are fewer)."""
    starts = np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).astype(np.int64)
    picked = np.unique(np.linspace(0, starts[-1] - 1, min(limit, int(starts[-1]))).astype(np.int64))
    return gather(blocks, starts, picked)
