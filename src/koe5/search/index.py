"""A search index over your own documents: chunks, their vectors and their Kiwi terms, in one folder.

``Index.build`` chunks each document (:mod:`~koe5.search.chunking`), encodes the chunks with the model
and analyses them for BM25; ``search`` ranks documents by their best chunk, densely, by BM25 or by both
fused (:mod:`~koe5.search.hybrid`), and returns that chunk. ``add`` and ``delete`` change the index by
document id, encoding and analysing only the new documents. The folder layout and why a crash never
leaves it half-written: :mod:`~koe5.search.store`; a ``postgresql://`` URL instead of a folder puts the
index in a database (:mod:`~koe5.search.postgres`; ``build`` and ``load`` return a ``PgIndex``).

Example::

    import koe5
    from koe5.search import Index

    docs = [{"id": "seoul", "title": "서울", "text": "서울은 대한민국의 수도이다.", "year": 2024},
            {"id": "busan", "text": "부산은 항구 도시이다."}]
    index = Index.build(docs, koe5.load(), "my-index")
    for hit in index.search("한국의 수도는?", k=3):
        print(hit.doc_id, round(hit.score, 3), hit.text, hit.metadata)
    index.add([{"id": "incheon", "text": "인천에는 국제공항이 있다."}])
    index.delete(["busan"])
    index = Index.load("my-index")          # the model is loaded when a query needs it
    index.search("공항", mode="bm25", filters={"year": 2024})
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from koe5.errors import IndexFormatError, InputError
from koe5.rerank import Reranker
from koe5.search import building, changes, dense_state, indexed_model, ranking, reranking, store
from koe5.search.bm25 import KoreanBM25
from koe5.search.chunking import Chunker
from koe5.search.dense import ANN_THRESHOLD, HNSWParams, choose_kind
from koe5.search.documents import Document
from koe5.search.hybrid import DEFAULT_FUSION, Fusion
from koe5.search.korean import KiwiAnalyzer
from koe5.search.location import is_database
from koe5.search.ranking import MODES, Hit
from koe5.search.rows import Rows

__all__ = ["COMPACT_AT", "MODES", "SEGMENT_DOCS", "Hit", "Index"]

#: Documents per segment: the unit of a resumable build (a crash loses at most one segment's work).
SEGMENT_DOCS = 2000
#: Share of deleted chunks above which segments holding deleted chunks are rewritten without them.
COMPACT_AT = 0.25


class Index:
    """A dense + Korean BM25 index in one folder. Make one with :meth:`build`, open one with :meth:`load`.

    ``manifest`` holds the model, settings and counts. ``last_report`` says what the latest build or
    ``add`` did (documents, chunks, skipped by reason, seconds).
    """

    def __init__(self, folder: str | Path, encoder=None, *, _manifest: dict | None = None) -> None:
        self.folder = Path(folder)
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self.last_report: dict[str, Any] = {}
        self.rerankers = reranking.Rerankers()  # those search was given by name, loaded once
        self._open(_manifest)
        if encoder is not None:
            indexed_model.check_model(self.folder, self.manifest, encoder)

    @classmethod
    def load(cls, folder: str | Path, encoder=None) -> Index:
        """Open an index. Without ``encoder`` its own model is loaded when first needed; with one, it
        must be that model (:class:`~koe5.errors.ModelMismatchError`)."""
        if is_database(folder):
            from koe5.search.postgres import PgIndex

            return PgIndex.load(folder, encoder)
        return cls(folder, encoder)

    def _open(self, manifest: dict | None = None) -> None:
        folder = self.folder
        self.manifest = m = manifest or store.read_manifest(folder)
        segments = [store.read_segment(folder, s["name"]) for s in m["segments"]]
        gen = folder / m["generation"]
        try:
            self._rows = Rows(segments, np.load(gen / "deleted.npy"))
            self._bm25 = KoreanBM25.load(gen / "bm25")
        except (OSError, ValueError, IndexError, InputError) as exc:
            raise IndexFormatError(f"{gen}: damaged or missing index state ({exc})") from exc
        if len(self._bm25) != len(self._rows.live):
            raise IndexFormatError(
                f"{gen}: BM25 holds {len(self._bm25)} chunks, expected {len(self._rows.live)}"
            )
        self._dense = dense_state.open_dense(folder, m, self._rows)  # float32 or compact vectors

    @property
    def encoder(self):
        """The model of this index (loaded on first use if none was given)."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = indexed_model.load_encoder(self.folder, self.manifest)
            return self._encoder

    def __len__(self) -> int:
        return len(self._rows.ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows.ids

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return f"Index({str(self.folder)!r}, documents={c['documents']}, chunks={c['chunks']})"

    # --- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        documents: Iterable[Document | dict] | str | Path,
        encoder,
        folder: str | Path,
        *,
        chunk_tokens: int | None = None,
        overlap: int = 64,
        ann: str = "auto",
        ann_threshold: int = ANN_THRESHOLD,
        hnsw: HNSWParams | None = None,
        vectors: str = "float32",
        oversample: int | None = None,
        analyzer: KiwiAnalyzer | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        fusion: Fusion = DEFAULT_FUSION,
        resume: bool = False,
        overwrite: bool = False,
        segment_docs: int = SEGMENT_DOCS,
        show_progress: bool = False,
        cache=None,
        batch_size: int | None = None,
        engine=None,
    ) -> Index:
        """Index ``documents`` (a path, or Documents / dicts with id, text, title, metadata) into ``folder``.

        ``chunk_tokens``: chunk size in tokens, prefix and special tokens included (default and
        maximum: the model's ``max_length``); ``overlap``: tokens shared by consecutive chunks;
        ``ann``: ``"auto"`` (exact below ``ann_threshold`` chunks, else HNSW), ``"exact"`` or
        ``"hnsw"``; ``vectors``: ``"float32"``, ``"float16"``, ``"int8"``, ``"int4"`` or ``"binary"``,
        searched with ``oversample`` × k candidates rescored (:mod:`~koe5.search.compact`);
        ``analyzer``/``k1``/``b``: the Korean BM25; ``fusion``: the index's default hybrid.

        Written beside ``folder`` (``.<name>.partial``), ``segment_docs`` documents a segment, and moved
        into place at the end (replacing an index needs ``overwrite``); after a crash, ``resume=True``
        continues from the last finished segment. Blank documents are skipped and counted
        (``last_report``), a repeated id is an error; ``cache`` reuses vectors encoded before;
        ``engine``: a :class:`~koe5.distributed.RayEngine` prepares the segments on Ray actors.
        """
        if is_database(folder):  # the same arguments, into a PostgreSQL database
            args = {k: v for k, v in locals().items() if k not in ("cls", "folder")}
            from koe5.search.postgres import PgIndex

            return PgIndex.build(url=folder, **args)
        started = time.perf_counter()
        folder = Path(folder)
        if segment_docs < 1:
            raise InputError(f"segment_docs must be positive, got {segment_docs}")
        building.check_target(folder, overwrite, vectors)
        analyzer = analyzer or KiwiAnalyzer()
        chunker = Chunker.for_encoder(encoder, max_tokens=chunk_tokens, overlap=overlap)
        choose_kind(0, ann)  # validates the name
        dense = dict(ann=ann, threshold=ann_threshold, hnsw=hnsw, vectors=vectors, oversample=oversample)
        settings = building.settings_of(encoder, chunker, analyzer, k1=k1, b=b, fusion=fusion, **dense)
        writer = building.SegmentWriter(encoder, chunker, analyzer, cache, batch_size, show_progress)
        how = {"resume": resume, "overwrite": overwrite, "segment_docs": segment_docs, "engine": engine}
        report = building.build_folder(
            documents, folder, settings, writer, show_progress=show_progress, **how
        )
        index = cls(folder, encoder)
        index.last_report = report.summary(started)
        return index

    # --- changing --------------------------------------------------------------------------

    def add(
        self,
        documents: Iterable[Document | dict] | str | Path,
        *,
        replace: bool = False,
        show_progress: bool = False,
        cache=None,
        batch_size: int | None = None,
    ) -> dict[str, Any]:
        """Add documents without touching the others' vectors or terms; returns the report.

        A document whose id is already in the index is an error, or with ``replace`` replaces the old
        one. Blank documents are skipped and counted.
        """
        started = time.perf_counter()
        batches, seen, skipped = building.read_batches(documents, SEGMENT_DOCS, show_progress)
        new_ids = [d.id for batch in batches for d in batch]
        existing = [i for i in new_ids if i in self._rows.ids]
        if not replace:
            ranking.refuse_existing(existing, seen)
        writer = building.SegmentWriter.for_index(
            self.manifest, self.encoder, self._bm25.analyzer, cache, batch_size, show_progress
        )
        with self._change():
            self._drop_docs(existing)
            chunks = 0
            for batch in batches:
                name = f"{self.manifest['next_segment']:06d}"
                n_chunks = writer.write_segment(self.folder, name, batch)
                self.manifest["next_segment"] += 1
                self.manifest["segments"].append({"name": name, "documents": len(batch), "chunks": n_chunks})
                self._rows.append(store.read_segment(self.folder, name))
                self._bm25.add_tokens(store.read_segment_tokens(self.folder, name))
                self._dense.add(np.asarray(self._rows.segments[-1].vectors))
                chunks += n_chunks
            graph_changed = bool(batches) and self._dense.kind == "hnsw"
            graph_changed |= changes.grow_dense(self.manifest, self._dense, len(self._rows.live))
            self._commit(graph_changed)
        self.last_report = building.add_summary(len(new_ids), len(existing), chunks, skipped, started)
        return self.last_report

    def delete(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Delete documents by id; returns how many were deleted. Unknown ids are an error unless
        ``missing_ok``. Deleted chunks vanish from results at once; their space is reclaimed when
        they pass :data:`COMPACT_AT` of the index (segments rewritten, the HNSW graph rebuilt)."""
        if isinstance(ids, str):
            ids = [ids]
        ids = list(dict.fromkeys(str(i) for i in ids))
        unknown = [i for i in ids if i not in self._rows.ids]
        if not missing_ok:
            ranking.refuse_unknown(unknown)
        present = [i for i in ids if i in self._rows.ids]
        if not present:
            return 0
        with self._change():
            self._drop_docs(present)
            deleted = self._rows.deleted
            graph_changed = len(deleted) > 0 and deleted.mean() > COMPACT_AT and self._compact()
            self._commit(graph_changed)
        return len(present)

    def compact(self) -> None:
        """Rewrite the segments that hold deleted chunks without them (and rebuild the HNSW graph)."""
        with self._change():
            self._commit(self._compact())

    # --- searching -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
        *,
        fusion: Fusion | None = None,
        query_vector: np.ndarray | None = None,
        rerank: Reranker | str | None = None,
        rerank_depth: int = reranking.DEFAULT_DEPTH,
    ) -> list[Hit]:
        """The ``k`` best documents for ``query``, each with its best chunk.

        ``mode``: ``"hybrid"`` (dense and BM25 fused by ``fusion``, default the index's), ``"dense"``
        or ``"bm25"``. ``filters``: ``{metadata key: value}`` (a list/tuple/set value means any of
        them; ``"doc_id"`` filters on ids). A query BM25 finds no terms in (only punctuation or
        stopwords) gives BM25 no candidates rather than an error. ``query_vector``: the query's
        embedding if already computed (with this index's model and query prefix). ``rerank``: a
        :class:`~koe5.rerank.Reranker` (or a name or folder, loaded once) orders the ``rerank_depth``
        best (``k`` to 1000); each hit's ``score`` is then the reranker's and ``retrieval_score`` the
        first stage's (:mod:`~koe5.search.reranking`).
        """
        ranking.check_request(query, k, mode)
        if rerank is not None:
            first = {"mode": mode, "filters": filters, "fusion": fusion, "query_vector": query_vector}
            return reranking.reranked_search(self, query, k, rerank, rerank_depth, **first)
        rows = self._rows
        allowed = ~rows.deleted
        if filters:
            allowed &= ranking.filter_mask(rows, filters)
        if not allowed.any():
            return []
        fusion = fusion or Fusion(**self.manifest["fusion"])
        depth = max(k, fusion.depth) if mode == "hybrid" else k
        dense = sparse = {}
        idf_total = 0.0
        if mode != "bm25":
            dim = self.manifest["model"]["dim"]
            vector = ranking.query_vector(lambda: self.encoder, query, query_vector, dim)
            dense = ranking.dense_candidates(self._dense, vector, allowed, rows, depth)
        if mode != "dense":
            terms = self._bm25.query_ids(query)
            sparse = ranking.bm25_candidates(self._bm25, terms, allowed, rows, depth)
            if mode == "hybrid" and fusion.adaptive is not None:  # only an adaptive fusion reads it
                idf_total = self._bm25.idf_total(terms)
        ranked = ranking.rank(mode, dense, sparse, fusion, idf_total)
        return [Hit.of_chunk(rows.chunk(row), score) for _, score, row in ranked[:k]]

    def unknown_filter_keys(self, filters: dict[str, Any]) -> list[str]:
        """The keys of ``filters`` that no document's metadata has (their filter matches nothing)."""
        return ranking.unknown_keys(self._rows, filters)

    @contextlib.contextmanager
    def _change(self) -> Iterator[None]:
        """Hold the writer lock, check nobody changed the index since it was opened, and on any
        failure reopen it from disk (where the previous version is intact)."""
        with store.writer_lock(self.folder):
            on_disk = store.read_manifest(self.folder)
            if on_disk["generation"] != self.manifest["generation"]:
                raise IndexFormatError(f"{self.folder} was changed by another process; load it again")
            try:
                yield
            except BaseException:
                self._open()
                raise

    def _drop_docs(self, ids: list[str]) -> None:
        if ids:
            self._bm25.remove(self._rows.drop(ids))

    def _compact(self) -> bool:
        """Rewrite segments with deleted rows; returns whether the HNSW graph was rebuilt."""
        self._rows, rebuilt = changes.compact(self.folder, self.manifest, self._rows, self._dense)
        return rebuilt

    def _commit(self, graph_changed: bool) -> None:
        changes.commit_generation(
            self.folder, self.manifest, self._rows, self._bm25, self._dense, graph_changed
        )
