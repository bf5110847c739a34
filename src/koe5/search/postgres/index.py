"""A koe5 index in PostgreSQL + pgvector: what :class:`~koe5.search.Index` does, on a database server.

Chunking, encoding and the Kiwi analysis stay in koe5 (:class:`~koe5.search.building.SegmentWriter`,
the same as for a folder); the database stores chunks, vectors and BM25 postings, answers dense
queries with pgvector and scores BM25 itself; fusion is the folder index's. ``add`` and ``delete``
are single transactions under the index's writer lock, so readers see a change whole or not at all,
and a killed writer leaves the previous state. Tables and locks: :mod:`~koe5.search.postgres.database`.

Example::

    import koe5
    from koe5.search import Index

    url = "postgresql://me@db.internal:5432/app?index=manuals"
    index = Index.build("docs.jsonl", koe5.load(), url)        # a PgIndex
    index.search("전세 계약 갱신", k=5, filters={"year": 2024})
    index = Index.load(url)                                    # in another process, or koe5 serve --index URL
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from koe5.errors import InputError
from koe5.rerank import Reranker
from koe5.search import building, indexed_model, ranking, reranking
from koe5.search.chunking import Chunker
from koe5.search.compact import check_vectors
from koe5.search.dense import ANN_THRESHOLD, HNSWParams, choose_kind
from koe5.search.documents import Document
from koe5.search.hybrid import DEFAULT_FUSION, Fusion
from koe5.search.korean import KiwiAnalyzer
from koe5.search.location import redact
from koe5.search.postgres import writing
from koe5.search.postgres.database import Database
from koe5.search.postgres.queries import (
    bm25_rows,
    chunk_records,
    dense_rows,
    filter_sql,
    idf_total,
    unknown_keys,
)
from koe5.search.ranking import Hit

#: Documents written per transaction of a build (its resume unit), as a folder's segment.
BATCH_DOCS = 2000


class PgIndex:
    """A dense + Korean BM25 index in a PostgreSQL schema. Make one with :meth:`build`, open one with
    :meth:`load` (or :meth:`Index.build` / :meth:`Index.load` with a ``postgresql://`` URL)."""

    def __init__(self, db: Database, encoder=None) -> None:
        self.db = db
        self.location = redact(db.url)
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self.last_report: dict[str, Any] = {}
        self.rerankers = reranking.Rerankers()  # those search was given by name, loaded once
        try:
            with db.reading() as conn:
                self.settings = db.read(conn)["manifest"]
            if encoder is not None:
                indexed_model.check_model(self.location, self.settings, encoder)
        except BaseException:
            db.close()  # nobody else holds the pool: its threads would outlive the error
            raise
        self._analyzer = KiwiAnalyzer.from_config(self.settings["bm25"]["analyzer"])

    @classmethod
    def load(cls, url: str, encoder=None, *, pool_size: int = 4) -> PgIndex:
        """Open the index a URL names. Without ``encoder`` its model is loaded when first needed; with
        one, it must be that model (:class:`~koe5.errors.ModelMismatchError` otherwise)."""
        return cls(Database(url, pool_size=pool_size), encoder)

    @property
    def folder(self) -> str:
        """Where the index is (the URL, password hidden): what a folder index reports as its folder."""
        return self.location

    @property
    def manifest(self) -> dict[str, Any]:
        """Model and settings, as a folder index's manifest, with the counts read now."""
        with self.db.reading() as conn:
            state = self.db.state(conn)
        return {**self.settings, **_public(self.settings, state)}

    @property
    def encoder(self):
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = indexed_model.load_encoder(self.location, self.settings)
            return self._encoder

    def __len__(self) -> int:
        with self.db.reading() as conn:
            return int(self.db.state(conn)["documents"])

    def __contains__(self, doc_id: object) -> bool:
        with self.db.reading() as conn:
            sql = f"SELECT 1 FROM {self.db.name}.chunks WHERE doc_id = %s LIMIT 1"
            return conn.execute(sql, [str(doc_id)]).fetchone() is not None

    def __repr__(self) -> str:
        return f"PgIndex({self.location!r})"

    def close(self) -> None:
        """Close the connection pool (also on leaving a ``with`` block)."""
        self.db.close()

    def __enter__(self) -> PgIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        documents: Iterable[Document | dict] | str | Path,
        encoder,
        url: str,
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
        segment_docs: int = BATCH_DOCS,
        show_progress: bool = False,
        cache=None,
        batch_size: int | None = None,
        engine=None,
    ) -> PgIndex:
        """:meth:`Index.build <koe5.search.Index.build>` into a database: the same arguments, the
        same chunks, vectors and BM25. The build goes into the schema ``NAME__partial`` one
        transaction of ``segment_docs`` documents at a time (``resume`` continues after a crash) and
        becomes ``NAME`` in the transaction that finishes it; an index there stays until then."""
        started = time.perf_counter()
        if segment_docs < 1:
            raise InputError(f"segment_docs must be positive, got {segment_docs}")
        if engine is not None:
            raise InputError("the Ray engine builds folder indexes; build into a database without it")
        if check_vectors(vectors) != "float32" or oversample is not None:
            raise InputError(
                f"a PostgreSQL index keeps float32 vectors, not {vectors} (pgvector 0.6.2 has no halfvec or "
                "bit types to search them); compact vectors and oversample are for folder indexes"
            )
        analyzer = analyzer or KiwiAnalyzer()
        chunker = Chunker.for_encoder(encoder, max_tokens=chunk_tokens, overlap=overlap)
        choose_kind(0, ann)
        settings = building.settings_of(
            encoder, chunker, analyzer, k1=k1, b=b, ann=ann, threshold=ann_threshold, hnsw=hnsw, fusion=fusion
        )
        settings["source"] = building.source_of(documents)
        writer = building.SegmentWriter(encoder, chunker, analyzer, cache, batch_size, show_progress)
        db = Database(url)
        try:
            with db.build_lock():
                report = writing.build(db, documents, settings, writer, resume, overwrite, segment_docs)
        except BaseException:
            db.close()
            raise
        index = cls(db, encoder)
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
        """Add documents in one transaction (encoded and analysed before it starts); an id already in
        the index is an error, or with ``replace`` replaces the old document."""
        started = time.perf_counter()
        batches, seen, skipped = building.read_batches(documents, BATCH_DOCS, show_progress)
        new_ids = [d.id for batch in batches for d in batch]
        writer = building.SegmentWriter.for_index(
            self.settings, self.encoder, self._analyzer, cache, batch_size, show_progress
        )
        prepared = [writer.prepare(batch) for batch in batches]
        schema = self.db.name
        with self.db.writing(schema) as conn:
            existing = writing.present(conn, schema, new_ids)
            if not replace:
                ranking.refuse_existing(existing, seen)
            state = self.db.state(conn)
            writing.drop(conn, schema, existing, state)
            chunks = sum(writing.insert(conn, schema, state, *p) for p in prepared)
            state["documents"] += len(new_ids)
            writing.grow_dense(conn, schema, self.settings, state)
            writing.commit_state(conn, schema, state)
        self.last_report = building.add_summary(len(new_ids), len(existing), chunks, skipped, started)
        return self.last_report

    def delete(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Delete documents by id in one transaction; returns how many. Unknown ids are an error
        unless ``missing_ok``."""
        if isinstance(ids, str):
            ids = [ids]
        ids = list(dict.fromkeys(str(i) for i in ids))
        schema = self.db.name
        with self.db.writing(schema) as conn:
            present = writing.present(conn, schema, ids)
            unknown = [i for i in ids if i not in set(present)]
            if not missing_ok:
                ranking.refuse_unknown(unknown)
            if not present:
                return 0
            state = self.db.state(conn)
            writing.drop(conn, schema, present, state)
            writing.commit_state(conn, schema, state)
        return len(present)

    def compact(self) -> None:
        """Reclaim the space of deleted rows now (``VACUUM``; autovacuum does it anyway in time)."""
        with self.db.connection() as conn:
            for table in ("chunks", "postings"):
                conn.execute(f"VACUUM (ANALYZE) {self.db.name}.{table}")

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
        """:meth:`Index.search <koe5.search.Index.search>` on the database: the same arguments,
        candidates, fusion and reranking; every query of one first stage reads one snapshot of the index."""
        ranking.check_request(query, k, mode)
        if rerank is not None:
            first = {"mode": mode, "filters": filters, "fusion": fusion, "query_vector": query_vector}
            return reranking.reranked_search(self, query, k, rerank, rerank_depth, **first)
        where = filter_sql(filters)
        fusion = fusion or Fusion(**self.settings["fusion"])
        depth = max(k, fusion.depth) if mode == "hybrid" else k
        vector = (
            ranking.query_vector(lambda: self.encoder, query, query_vector, self.settings["model"]["dim"])
            if mode != "bm25"
            else None
        )
        terms = self._analyzer.analyze([query])[0] if mode != "dense" else []
        schema = self.db.name
        with self.db.reading() as conn:
            state = self.db.state(conn)
            dense = sparse = {}
            if vector is not None:
                ef = self.settings["dense"]["hnsw"]["ef_search"] if state["dense"] == "hnsw" else None
                dense = ranking.candidates(
                    lambda want: _columns(dense_rows(conn, schema, vector, want, where, ef)), depth
                )
            idf = 0.0
            if terms:
                stats = {**state, **self.settings["bm25"]}
                sparse = ranking.candidates(
                    lambda want: _columns(bm25_rows(conn, schema, terms, want, where, stats)), depth
                )
                if mode == "hybrid" and fusion.adaptive is not None:
                    idf = idf_total(conn, schema, terms, state["chunks"])
            ranked = ranking.rank(mode, dense, sparse, fusion, idf)[:k]
            records = chunk_records(conn, schema, [row for _, _, row in ranked])
        return [Hit.of_chunk(records[row], score) for _, score, row in ranked]

    def unknown_filter_keys(self, filters: dict[str, Any]) -> list[str]:
        """The keys of ``filters`` that no document's metadata has (their filter matches nothing)."""
        keys = [k for k in filters if k != "doc_id"]
        if not keys:
            return []
        with self.db.reading() as conn:
            return unknown_keys(conn, self.db.name, keys)


def _columns(found: list[tuple[int, str, float]]) -> tuple[list, list, list]:
    if not found:
        return [], [], []
    rows, docs, scores = zip(*found, strict=True)
    return list(rows), list(docs), list(scores)


def _public(settings: dict, state: dict) -> dict:
    """The folder manifest's keys for the changing part of the index."""
    return {
        "state": "complete",
        "updated": state["updated"],
        "dense": {**settings["dense"], "active": state["dense"]},
        "counts": {
            "documents": state["documents"],
            "chunks": state["chunks"],
            "deleted_chunks": 0,
            "skipped": state.get("skipped", {}),
        },
    }
