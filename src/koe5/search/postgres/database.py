"""Connections to the database of an index, its tables, and the locks that serialise its writers.

Every index is one schema. Its tables::

    koe5_meta (key text, value jsonb)   'manifest': format, version, model, settings (as a folder's)
                                        'state':    documents, chunks, terms (BM25 length sum),
                                                    next_row, dense ("exact"/"hnsw"), updated, skipped
    chunks    (row bigint, doc_id, chunk, start_char, end_char, text, title,
               metadata_json text (as given), metadata jsonb (for filters), terms int, embedding vector(dim))
    postings  (term text, row bigint, tf int, terms int)   one row per Kiwi term of a chunk

``row`` numbers chunks in the order they were written, like a folder index's rows (ties rank the
lower row first in both). A writer takes ``pg_advisory_xact_lock`` on the index inside its transaction;
a build holds a session advisory lock for its whole run and works in the schema ``NAME__partial``,
renamed to ``NAME`` in the transaction that completes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from koe5.errors import BusyError, DatabaseError, IndexFormatError, InputError, StoreUnavailableError
from koe5.search.location import redact, split_url

log = logging.getLogger("koe5")

FORMAT = "koe5-index-postgres"
VERSION = 1
PARTIAL = "__partial"
#: Seconds to wait for a connection before the database counts as unreachable.
CONNECT_TIMEOUT = 10


def driver():
    """psycopg and its pool, imported on first use (an optional extra)."""
    try:
        import psycopg
        import psycopg_pool
        from pgvector.psycopg import register_vector
    except ImportError as exc:
        raise DatabaseError(
            "a PostgreSQL index needs psycopg, psycopg-pool and pgvector: pip install 'koe5[postgres]'"
        ) from exc
    return psycopg, psycopg_pool, register_vector


def unavailable(exc: Exception, url: str) -> Exception:
    """The koe5 error for a driver failure: unreachable servers are :class:`StoreUnavailableError`."""
    psycopg = driver()[0]
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.ProgrammingError) and "dsn" in str(exc).lower():
        return InputError(f"{redact(url)}: not a usable PostgreSQL URL ({reason})")
    return StoreUnavailableError(f"cannot use the PostgreSQL server of {redact(url)}: {reason}")


class Database:
    """The database of one index: a pool of connections (autocommit; every unit of work is an explicit
    transaction), the index's schema name, and its lock keys."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = CONNECT_TIMEOUT) -> None:
        psycopg, psycopg_pool, register_vector = driver()
        self.url, self.url_shown = url, redact(url)
        self.dsn, self.name = split_url(url)
        self.timeout = timeout
        self._up = True
        self._kwargs = kwargs = {
            "autocommit": True,
            "connect_timeout": max(1, int(timeout)),
            "application_name": _who(),
        }
        try:  # one direct connection first: a wrong URL or a server that is down fails here, by name
            with psycopg.connect(self.dsn, **kwargs) as conn:
                self._check_server(conn)
        except psycopg.Error as exc:
            raise unavailable(exc, url) from exc
        self.pool = psycopg_pool.ConnectionPool(
            self.dsn,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs=kwargs,
            configure=register_vector,
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=timeout,
            open=True,
            name=f"koe5:{self.name}",
        )

    def _check_server(self, conn) -> None:
        found = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if found is not None:
            return
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        if available is None:
            raise DatabaseError(
                f"{redact(self.url)}: this PostgreSQL server has no pgvector extension; install pgvector "
                "(https://github.com/pgvector/pgvector) on the server"
            )
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except Exception as exc:  # psycopg.errors.InsufficientPrivilege and friends
            reason = str(exc).strip().splitlines()[0]
            raise DatabaseError(
                f"{redact(self.url)}: pgvector is installed but not enabled in this database, and "
                f"{conn.info.user!r} may not enable it ({reason}); ask a superuser to run "
                "CREATE EXTENSION vector in it"
            ) from exc

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection; an unreachable server is a :class:`StoreUnavailableError`.

        While the server is down, callers wait 1 s for the pool, not ``timeout``, and then try one
        direct connection: the pool's own reconnection backs off exponentially (for minutes after a
        long outage), and a server should answer again as soon as the database is back.
        """
        psycopg, psycopg_pool, register_vector = driver()
        try:
            with contextlib.ExitStack() as stack:
                try:
                    wait = self.timeout if self._up else 1.0
                    conn = stack.enter_context(self.pool.connection(timeout=wait))
                except psycopg_pool.PoolTimeout:
                    conn = stack.enter_context(psycopg.connect(self.dsn, **self._kwargs))
                    register_vector(conn)
                    self.pool.check()  # the server answers again: refill the pool now
                self._up = True
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            self._up = False
            raise unavailable(exc, self.url) from exc

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """A read-only transaction on one snapshot: every query of a search sees one state of the index."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(self.timeout * 3000)}"])
            yield conn

    @contextlib.contextmanager
    def writing(self, schema: str) -> Iterator[Any]:
        """A transaction holding the writer lock of ``schema``: writers of one index take turns."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"koe5-write:{schema}"])
            yield conn

    @contextlib.contextmanager
    def build_lock(self) -> Iterator[None]:
        """Held for a whole build of this index; a second build is refused at once, naming the first."""
        psycopg = driver()[0]
        key = f"koe5-build:{self.name}"
        try:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=int(self.timeout), application_name=_who()
            )
        except psycopg.Error as exc:
            raise unavailable(exc, self.url) from exc
        with conn:
            if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key]).fetchone()[0]:
                holder = conn.execute(
                    "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
                    "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.objid::bigint = (hashtext(%s)::bigint & 4294967295) LIMIT 1",
                    [key],
                ).fetchone()
                who = (
                    f"{holder[0]} from {holder[1] or 'a local socket'}, since {holder[2]:%Y-%m-%d %H:%M:%S}"
                    if holder
                    else "another session"
                )
                raise BusyError(
                    f"{redact(self.url)}: another build of index {self.name!r} is running ({who})"
                )
            yield

    # --- the schema of an index ------------------------------------------------------------

    def meta(self, conn, schema: str) -> dict[str, Any] | None:
        """``{"manifest": ..., "state": ...}`` of ``schema``, or ``None`` when there is no such schema.
        A schema that is not a koe5 index is a :class:`DatabaseError`."""
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
        if exists is None:
            return None
        table = conn.execute("SELECT to_regclass(%s)", [f"{schema}.koe5_meta"]).fetchone()[0]
        if table is None:
            raise DatabaseError(
                f"{redact(self.url)}: the schema {schema!r} exists and is not a koe5 index; choose another "
                "?index= name"
            )
        rows = dict(conn.execute(f"SELECT key, value FROM {schema}.koe5_meta").fetchall())
        manifest = rows.get("manifest") or {}
        if manifest.get("format") != FORMAT:
            raise IndexFormatError(f"{redact(self.url)}: schema {schema!r} is not a koe5 index")
        version = manifest.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise IndexFormatError(
                f"{redact(self.url)}: index format version {version!r} is newer than this koe5 reads "
                f"({VERSION}); upgrade koe5 or rebuild the index"
            )
        return rows

    def state(self, conn) -> dict[str, Any]:
        """The changing counts of the open index: one row, for the hot path (the manifest and the
        format were checked when it was opened)."""
        return conn.execute(f"SELECT value FROM {self.name}.koe5_meta WHERE key = 'state'").fetchone()[0]

    def read(self, conn) -> dict[str, Any]:
        """The metadata of the (complete) index, or :class:`IndexFormatError` naming what is missing."""
        rows = self.meta(conn, self.name)
        if rows is None:
            partial = self.meta(conn, self.name + PARTIAL)
            hint = " (a build of it did not finish; rerun koe5 index build with --resume)" if partial else ""
            raise IndexFormatError(f"{redact(self.url)}: no index {self.name!r} in this database{hint}")
        return rows


def create_tables(conn, schema: str, dim: int, manifest: dict, state: dict) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.koe5_meta (key text PRIMARY KEY, value jsonb NOT NULL)")
    conn.execute(
        f"CREATE TABLE {schema}.chunks (row bigint PRIMARY KEY, doc_id text NOT NULL, chunk int NOT NULL, "
        "start_char int NOT NULL, end_char int NOT NULL, text text NOT NULL, title text NOT NULL, "
        "metadata_json text NOT NULL, metadata jsonb NOT NULL, terms int NOT NULL, "
        f"embedding vector({int(dim)}) NOT NULL)"
    )
    conn.execute(f"CREATE INDEX ON {schema}.chunks (doc_id)")
    conn.execute(
        f"CREATE TABLE {schema}.postings (term text NOT NULL, row bigint NOT NULL, tf int NOT NULL, "
        "terms int NOT NULL, PRIMARY KEY (term, row))"
    )
    conn.execute(f"CREATE INDEX ON {schema}.postings (row)")
    conn.execute(
        f"INSERT INTO {schema}.koe5_meta VALUES ('manifest', %s), ('state', %s)",
        [Jsonb(manifest), Jsonb(state)],
    )


def save_state(conn, schema: str, state: dict) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(f"UPDATE {schema}.koe5_meta SET value = %s WHERE key = 'state'", [Jsonb(state)])


def create_hnsw(conn, schema: str, hnsw: dict) -> None:
    m, ef = int(hnsw["m"]), int(hnsw["ef_construction"])
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS chunks_hnsw ON {schema}.chunks USING hnsw (embedding vector_ip_ops) "
        f"WITH (m = {m}, ef_construction = {ef})"
    )


def _who() -> str:
    """The application_name of koe5's sessions: who holds a lock, in ``pg_stat_activity``."""
    return f"koe5 pid {os.getpid()} on {socket.gethostname()}"[:63]
