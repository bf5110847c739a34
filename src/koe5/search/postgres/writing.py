"""How a PostgreSQL index is written: a resumable build in a staging schema, and the rows a change
inserts or deletes inside its transaction (chunks and postings by binary COPY, then the counts)."""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np

from koe5.errors import InputError
from koe5.search import building
from koe5.search.dense import choose_kind
from koe5.search.documents import Document
from koe5.search.postgres.database import (
    FORMAT,
    PARTIAL,
    VERSION,
    Database,
    create_hnsw,
    create_tables,
    save_state,
)

log = logging.getLogger("koe5")

CHUNK_COLUMNS = (
    "row, doc_id, chunk, start_char, end_char, text, title, metadata_json, metadata, terms, embedding"
)
CHUNK_TYPES = ["int8", "text", "int4", "int4", "int4", "text", "text", "text", "jsonb", "int4", "vector"]


def build(db: Database, documents, settings: dict, writer, resume: bool, overwrite: bool, batch_docs: int):
    """Write ``documents`` into ``NAME__partial`` and rename it ``NAME`` when complete (the caller
    holds the build lock). Returns the :class:`~koe5.search.building.BuildReport`."""
    name, staging = db.name, db.name + PARTIAL
    with db.connection() as conn:
        existing = db.meta(conn, name)  # a schema that is not a koe5 index is refused here
        if existing is not None and not overwrite:
            raise InputError(f"{db.url_shown} already holds an index; pass overwrite (--force) to replace it")
        state = _start_staging(db, conn, staging, settings, resume)
    target = StagingSchema(db, staging, state, writer)
    report = building.write_batches(target, documents, batch_docs, writer.show_progress)
    if not state["documents"]:
        raise InputError(f"no documents to index{building.describe_skips(report.skipped)}")
    dense = settings["dense"]
    kind = choose_kind(state["chunks"], dense["ann"], dense["threshold"])
    with db.connection() as conn:
        if kind == "hnsw":
            log.info("koe5: building the HNSW graph over %d chunks", state["chunks"])
            create_hnsw(conn, staging, dense["hnsw"])
        for table in ("chunks", "postings"):
            conn.execute(f"ANALYZE {staging}.{table}")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"koe5-write:{name}"])
            state.update(dense=kind, updated=building.now(), skipped=dict(report.skipped))
            save_state(conn, staging, state)
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            conn.execute(f"ALTER SCHEMA {staging} RENAME TO {name}")
    for reason, count in report.skipped.items():
        log.warning("koe5: skipped %d %s", count, reason)
    return report


def _start_staging(db: Database, conn, staging: str, settings: dict, resume: bool) -> dict:
    """The state of the build in progress: resumed from ``staging`` or a fresh schema."""
    from koe5._version import __version__

    partial = db.meta(conn, staging)
    if partial is not None and resume:
        building.check_resumable(f"{db.url_shown} (schema {staging})", partial["manifest"], settings)
        return partial["state"]
    with conn.transaction():
        if partial is not None:
            log.info("koe5: removing the unfinished build in schema %s", staging)
            conn.execute(f"DROP SCHEMA {staging} CASCADE")
        elif resume:
            log.info("koe5: nothing to resume; building from the start")
        manifest = {"format": FORMAT, "version": VERSION, "koe5": __version__, "created": building.now()}
        manifest.update(settings)
        state = {
            "documents": 0,
            "chunks": 0,
            "terms": 0,
            "next_row": 0,
            "dense": "exact",
            "updated": building.now(),
            "skipped": {},
        }
        create_tables(conn, staging, settings["model"]["dim"], manifest, state)
    return state


class StagingSchema:
    """The staging schema as a :func:`~koe5.search.building.write_batches` target: one transaction
    per batch, the state row updated in it (the resume point)."""

    def __init__(self, db: Database, schema: str, state: dict, writer) -> None:
        self.db, self.schema, self.state, self.writer = db, schema, state, writer
        self.name = f"{db.url_shown} (schema {schema})"

    def done_ids(self) -> set[str]:
        with self.db.connection() as conn:
            return {r[0] for r in conn.execute(f"SELECT DISTINCT doc_id FROM {self.schema}.chunks")}

    def write(self, batch: list[Document]) -> int:
        prepared = self.writer.prepare(batch)
        state = dict(self.state)
        with self.db.writing(self.schema) as conn:
            n_chunks = insert(conn, self.schema, state, *prepared)
            state["documents"] += len(batch)
            commit_state(conn, self.schema, state)
        self.state.update(state)  # only once committed
        return n_chunks


def present(conn, schema: str, ids: list[str]) -> list[str]:
    """Which of ``ids`` the index holds, in the order given."""
    if not ids:
        return []
    found = {
        r[0]
        for r in conn.execute(f"SELECT DISTINCT doc_id FROM {schema}.chunks WHERE doc_id = ANY(%s)", [ids])
    }
    return [i for i in ids if i in found]


def insert(
    conn, schema: str, state: dict, columns: dict, vectors: np.ndarray, tokens: list[list[str]]
) -> int:
    """Insert prepared chunks (numbered from ``state["next_row"]``) and their postings; updates the
    counts in ``state``."""
    from psycopg.types.json import Jsonb

    start = int(state["next_row"])
    vectors = np.asarray(vectors, dtype=np.float32)
    with conn.cursor().copy(f"COPY {schema}.chunks ({CHUNK_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(CHUNK_TYPES)
        for i, terms in enumerate(tokens):
            meta = columns["metadata"][i]
            copy.write_row(
                (
                    start + i,
                    columns["doc_id"][i],
                    columns["chunk"][i],
                    columns["start"][i],
                    columns["end"][i],
                    columns["text"][i],
                    columns["title"][i],
                    meta,
                    Jsonb(json.loads(meta) if meta else {}),
                    len(terms),
                    vectors[i],
                )
            )
    with conn.cursor().copy(
        f"COPY {schema}.postings (term, row, tf, terms) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int8", "int4", "int4"])
        for i, terms in enumerate(tokens):
            for term, tf in Counter(terms).items():
                copy.write_row((term, start + i, tf, len(terms)))
    state["next_row"] = start + len(tokens)
    state["chunks"] += len(tokens)
    state["terms"] += sum(len(t) for t in tokens)
    return len(tokens)


def drop(conn, schema: str, ids: list[str], state: dict) -> None:
    """Delete documents ``ids`` (all present) with their postings; updates the counts in ``state``."""
    if not ids:
        return
    gone = conn.execute(
        f"DELETE FROM {schema}.chunks WHERE doc_id = ANY(%s) RETURNING row, terms", [ids]
    ).fetchall()
    conn.execute(f"DELETE FROM {schema}.postings WHERE row = ANY(%s)", [[r[0] for r in gone]])
    state["documents"] -= len(ids)
    state["chunks"] -= len(gone)
    state["terms"] -= sum(r[1] for r in gone)


def grow_dense(conn, schema: str, settings: dict, state: dict) -> None:
    """Build the HNSW graph when ``ann="auto"`` and the index grew past the threshold."""
    dense = settings["dense"]
    kind = choose_kind(state["chunks"], dense["ann"], dense["threshold"])
    if kind == "hnsw" and state["dense"] != "hnsw":
        create_hnsw(conn, schema, dense["hnsw"])
        state["dense"] = "hnsw"


def commit_state(conn, schema: str, state: dict) -> None:
    state["updated"] = building.now()
    save_state(conn, schema, state)
