"""The PostgreSQL + pgvector store against a real server (the ``postgres`` fixture): the same search as a
folder index, transactions, serialised writers, resumable builds, and errors that name their cause."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import koe5
from koe5.errors import (
    BusyError,
    DatabaseError,
    IndexFormatError,
    InputError,
    ModelMismatchError,
    StoreUnavailableError,
)
from koe5.search import Index, building
from koe5.search.location import is_database, redact, split_url

pytest.importorskip("psycopg")

QUERIES = ["대한민국의 수도", "서울 지하철", "경제 성장", "한라산 눈", "?!"]
FILTERS = [None, {"kind": "short"}, {"n": [1, 2, 3, 7]}, {"doc_id": ["s2", "long"]}, {"kind": "none"}]
_names = itertools.count()


def fresh(postgres) -> str:
    """A URL naming an index no other test uses."""
    return postgres.url(f"t{next(_names)}_{os.getpid()}")


@pytest.fixture(scope="module")
def pair(tiny, docs, tmp_path_factory, postgres):
    """The same documents as a folder index and a database index."""
    folder = Index.build(docs, tiny, tmp_path_factory.mktemp("pg") / "index", chunk_tokens=64, overlap=8)
    database = Index.build(docs, tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    return folder, database


def assert_same(a, b, modes=("dense", "bm25", "hybrid")) -> None:
    for mode, query, filters in itertools.product(modes, QUERIES, FILTERS):
        ha = a.search(query, k=10, mode=mode, filters=filters)
        hb = b.search(query, k=10, mode=mode, filters=filters)
        assert [h.chunk_id for h in ha] == [h.chunk_id for h in hb], (mode, query, filters)
        for x, y in zip(ha, hb, strict=True):
            assert abs(x.score - y.score) < 1e-4
            assert {**x.to_dict(), "score": 0} == {**y.to_dict(), "score": 0}


def test_urls():
    assert is_database("postgresql://u@h/db?index=a") and not is_database("postgresql-notes")
    assert split_url("postgresql://u:pw@h:5/db?sslmode=require&index=docs_2") == (
        "postgresql://u:pw@h:5/db?sslmode=require",
        "docs_2",
    )
    assert redact("postgresql://u:secret@h/db?index=a") == "postgresql://u:***@h/db?index=a"
    for bad, why in [
        ("postgresql://h/db", "name the index"),
        ("postgresql://h/db?index=Bad-Name", "lower-case"),
    ]:
        with pytest.raises(InputError, match=why):
            split_url(bad)


def test_compact_vectors_are_refused_before_any_connection(tiny, docs):
    url = "postgresql://nobody@127.0.0.1:1/none?index=compact"  # nothing listens: refused first
    for vectors in ("float16", "int8", "int4", "binary"):
        with pytest.raises(InputError, match=f"keeps float32 vectors, not {vectors} \\(pgvector 0.6.2"):
            Index.build(docs, tiny, url, vectors=vectors)
    with pytest.raises(InputError, match="vectors must be one of"):
        Index.build(docs, tiny, url, vectors="int2")
    with pytest.raises(InputError, match="oversample are for folder indexes"):
        Index.build(docs, tiny, url, oversample=4)


def test_the_database_ranks_as_the_folder_index(pair, docs):
    folder, database = pair
    assert type(database).__name__ == "PgIndex"
    assert database.manifest["counts"] == folder.manifest["counts"]
    for key in ("model", "chunking", "bm25", "fusion"):
        assert database.manifest[key] == folder.manifest[key]
    assert len(database) == len(docs) and "long" in database and "nope" not in database
    assert_same(folder, database)
    assert database.unknown_filter_keys({"kind": "x", "color": "red", "doc_id": "s1"}) == ["color"]


def test_changes_keep_it_equal(tiny, docs, tmp_path, postgres):
    folder = Index.build(docs, tiny, tmp_path / "i", chunk_tokens=64, overlap=8)
    database = Index.build(docs, tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    for index in (folder, database):
        index.add([{"id": "new", "text": "대한민국의 수도는 서울이고 지하철이 있다.", "kind": "short"}])
        index.add([{"id": "s3", "text": "경제 성장과 한라산", "n": 3}], replace=True)
        assert index.delete(["s1", "s2", "gone"], missing_ok=True) == 2
    assert_same(folder, database)
    assert database.manifest["counts"]["documents"] == len(docs) - 1
    with pytest.raises(InputError, match="already in the index"):
        database.add([{"id": "s4", "text": "x"}])
    with pytest.raises(InputError, match="not in the index"):
        database.delete(["nope"])
    again = Index.load(database.db.url)  # another process's view: the model loaded when needed
    assert_same(folder, again, modes=("bm25",))


def test_hnsw_when_the_index_grows(tiny, docs, postgres):
    index = Index.build(docs[:4], tiny, fresh(postgres), chunk_tokens=64, overlap=8, ann_threshold=12)
    assert index.manifest["dense"]["active"] == "exact"
    index.add(docs[4:])
    assert index.manifest["dense"]["active"] == "hnsw"
    with index.db.connection() as conn:
        found = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'chunks_hnsw'",
            [index.db.name],
        ).fetchone()
    assert found and "hnsw" in found[0] and "vector_ip_ops" in found[0]
    hits = index.search("대한민국의 수도", k=5, mode="dense")
    assert len(hits) == 5  # ef_search follows the depth asked for
    exact = index.search("대한민국의 수도", k=5, mode="dense", filters={"kind": ["short", "long"]})
    assert [h.doc_id for h in hits][:3] == [h.doc_id for h in exact][:3]


def test_a_failed_change_leaves_the_previous_state(tiny, docs, postgres, monkeypatch):
    from koe5.search.postgres import writing

    index = Index.build(docs, tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    before = [(h.doc_id, h.score) for h in index.search("대한민국", k=5)]
    real = writing.commit_state

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # after the rows were written, before the commit

    monkeypatch.setattr(writing, "commit_state", crash)
    with pytest.raises(KeyboardInterrupt):
        index.add([{"id": "new", "text": "대한민국 대한민국"}], replace=True)
    with pytest.raises(KeyboardInterrupt):
        index.delete(["s1"])
    monkeypatch.setattr(writing, "commit_state", real)
    assert "new" not in index and "s1" in index
    assert [(h.doc_id, h.score) for h in index.search("대한민국", k=5)] == before
    index.add([{"id": "new", "text": "대한민국"}])
    assert "new" in index


KILLED_WRITER = """
import sys, time
from koe5.search import Index
from koe5.search.postgres import writing
real = writing.commit_state
def slow(conn, schema, state):
    real(conn, schema, state)
    print("in-transaction", flush=True)
    time.sleep(60)
writing.commit_state = slow
Index.load(sys.argv[1]).delete(["s1"])
"""


def test_a_killed_writer_leaves_the_previous_state_and_frees_the_lock(tiny, docs, postgres):
    index = Index.build(docs, tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    url = index.db.url
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "in-transaction"
        waiter = threading.Thread(target=index.delete, args=(["s2"],))
        waiter.start()  # waits for the writer lock the first writer holds
        time.sleep(0.5)
        assert waiter.is_alive() and "s1" in index  # a reader sees the state before either change
        proc.send_signal(signal.SIGKILL)
        waiter.join(30)
        assert not waiter.is_alive()
    finally:
        proc.kill()
        proc.wait()
    assert "s1" in index and "s2" not in index
    assert index.manifest["counts"]["documents"] == len(docs) - 1


def test_concurrent_writers_take_turns_and_readers_see_whole_changes(tiny, docs, postgres):
    index = Index.build(docs, tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    others = [Index.load(index.db.url, tiny) for _ in range(2)]
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def write(target, start):
        try:
            for i in range(start, start + 6):
                target.add([{"id": f"w{i}", "text": f"대한민국 수도 서울 {i}", "kind": "new"}])
        except BaseException as exc:
            errors.append(exc)

    def read():
        while not stop.is_set():
            try:
                hits = index.search("대한민국 수도", k=50, mode="bm25", filters={"kind": "new"})
                seen.add(len(hits))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(o, 100 * n)) for n, o in enumerate(others)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert not errors
    assert index.manifest["counts"]["documents"] == len(docs) + 12
    assert len(index.search("대한민국 수도", k=50, mode="bm25", filters={"kind": "new"})) == 12
    assert seen <= set(range(13))


def test_an_interrupted_build_resumes_and_only_then_replaces(tiny, docs, postgres, monkeypatch):
    url = fresh(postgres)
    Index.build(docs[:3], tiny, url, chunk_tokens=64, overlap=8)
    with pytest.raises(InputError, match="already holds an index"):
        Index.build(docs, tiny, url, chunk_tokens=64, overlap=8)
    real = building.SegmentWriter.prepare
    calls = []

    def flaky(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(building.SegmentWriter, "prepare", flaky)
    how = {"chunk_tokens": 64, "overlap": 8, "segment_docs": 4, "overwrite": True}
    with pytest.raises(KeyboardInterrupt):
        Index.build(docs, tiny, url, **how)
    monkeypatch.undo()
    assert len(Index.load(url)) == 3  # the old index, untouched, until the new one is complete
    resumed = Index.build(docs, tiny, url, resume=True, **how)
    assert resumed.last_report["resumed_documents"] == 8
    assert resumed.last_report["documents"] == len(docs) - 8
    whole = Index.build(docs, tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    assert_same(whole, resumed, modes=("bm25", "dense"))
    with pytest.raises(InputError, match="other chunking settings"):
        monkeypatch.setattr(building.SegmentWriter, "prepare", flaky)
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            Index.build(docs, tiny, url, **how)
        monkeypatch.undo()
        Index.build(docs, tiny, url, resume=True, **{**how, "chunk_tokens": 48})


def test_an_unfinished_build_is_named_and_a_second_build_refused(tiny, docs, postgres, monkeypatch):
    url = fresh(postgres)
    started, release = threading.Event(), threading.Event()
    real = building.SegmentWriter.prepare

    def slow(self, batch):
        started.set()
        release.wait(30)
        return real(self, batch)

    monkeypatch.setattr(building.SegmentWriter, "prepare", slow)
    first = threading.Thread(
        target=Index.build, args=(docs, tiny, url), kwargs={"chunk_tokens": 64, "overlap": 8}
    )
    first.start()
    try:
        assert started.wait(30)
        with pytest.raises(BusyError, match=r"another build of index .* is running \(koe5 pid"):
            Index.build(docs, tiny, url, chunk_tokens=64, overlap=8)
        with pytest.raises(IndexFormatError, match="did not finish; rerun koe5 index build with --resume"):
            Index.load(url)
    finally:
        release.set()
        first.join(60)
    assert len(Index.load(url)) == len(docs)


def test_bad_locations_and_databases_are_named(tiny, docs, postgres):
    dead = f"postgresql://koe5@127.0.0.1:{_closed_port()}/koe5?index=x"
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailableError, match="cannot use the PostgreSQL server of postgresql://koe5@127"
    ):
        Index.load(dead)
    with pytest.raises(StoreUnavailableError):
        Index.build(docs, tiny, dead)
    assert time.monotonic() - started < 15
    with pytest.raises(StoreUnavailableError, match='database "nodb" does not exist'):
        Index.load(postgres.url("x", database="nodb"))
    with pytest.raises(IndexFormatError, match="no index 'absent' in this database"):
        Index.load(postgres.url("absent"))

    import psycopg

    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE plain LOGIN")
        conn.execute("CREATE DATABASE plaindb OWNER plain")
        conn.execute("CREATE SCHEMA notkoe5")
        conn.execute("CREATE TABLE notkoe5.mine (x int)")
    no_ext = postgres.url("x", database="plaindb").replace("koe5@", "plain@")
    with pytest.raises(DatabaseError, match=r"pgvector is installed but not enabled.*CREATE EXTENSION"):
        Index.build(docs, tiny, no_ext)
    with psycopg.connect(postgres.url(database="plaindb"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'x%'").fetchone()[0] == 0
    with pytest.raises(DatabaseError, match="schema 'notkoe5' exists and is not a koe5 index"):
        Index.build(docs, tiny, postgres.url("notkoe5"), overwrite=True)


def test_format_version_and_model_are_checked(tiny, tiny_model_dir, docs, postgres):
    index = Index.build(docs[:3], tiny, fresh(postgres), chunk_tokens=64, overlap=8)
    url = index.db.url
    other = koe5.load(str(tiny_model_dir), device="cpu", passage_prefix="")
    with pytest.raises(ModelMismatchError, match="was built with"):
        Index.load(url, other)
    with index.db.connection() as conn:
        conn.execute(
            f"UPDATE {index.db.name}.koe5_meta SET value = jsonb_set(value, '{{version}}', '99') "
            "WHERE key = 'manifest'"
        )
    with pytest.raises(IndexFormatError, match="format version 99 is newer"):
        Index.load(url)


def test_the_command_line_takes_a_url(tiny_model_dir, docs, tmp_path, postgres):
    import json

    from typer.testing import CliRunner

    from koe5.cli import app

    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs[:6]), encoding="utf-8")
    url = fresh(postgres)
    run = CliRunner().invoke
    built = run(app, ["-q", "index", "build", str(source), "-o", url, "-m", str(tiny_model_dir), "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.output)["counts"]["documents"] == 6
    info = run(app, ["index", "info", url, "--json"])
    assert info.exit_code == 0 and json.loads(info.output)["dense"]["active"] == "exact"
    found = run(app, ["search", url, "대한민국", "--mode", "bm25", "--json", "--filter", "kind=short"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["hits"]
    deleted = run(app, ["index", "delete", url, "s0", "--json"])
    assert json.loads(deleted.output)["deleted"] == 1
    bad = run(app, ["index", "info", url.replace("?index=", "?index=Nope")])
    assert bad.exit_code != 0 and "lower-case" in bad.output


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_servers_share_one_database_and_outlive_its_restart(tiny, tiny_model_dir, docs, tmp_path):
    """Two real ``koe5 serve --index URL`` processes on one database: both answer, one sees the other's
    change, both answer 503 naming the database while it is down, and recover when it is back."""
    import httpx

    from koe5.search.postgres.local import LocalPostgres
    from serve_process import ServerProcess

    own = LocalPostgres(tmp_path / "pg").start()  # its own server: this test stops and restarts it
    try:
        url = own.url("served")
        with Index.build(docs, tiny, url, chunk_tokens=64, overlap=8) as index:
            servers = [ServerProcess(["--index", url], tmp_path / f"serve{i}.log") for i in range(2)]
            try:
                for server in servers:
                    server.wait_ready()
                body = {"query": "대한민국의 수도", "k": 3, "mode": "hybrid"}
                answers = [httpx.post(f"{s.url}/search", json=body, timeout=30) for s in servers]
                assert [a.status_code for a in answers] == [200, 200]
                assert answers[0].json()["hits"] == answers[1].json()["hits"]
                health = httpx.get(f"{servers[0].url}/health", timeout=30).json()["index"]
                assert health["folder"] == url and health["documents"] == len(docs)
                index.add([{"id": "new", "text": "제주도 한라산 겨울 눈 대한민국"}])
                seen = httpx.post(
                    f"{servers[1].url}/search", json={"query": "한라산 겨울", "mode": "bm25"}, timeout=30
                )
                assert "new" in [h["doc_id"] for h in seen.json()["hits"]]
                before = httpx.post(f"{servers[0].url}/search", json=body, timeout=30).json()["hits"]

                own.stop()
                down = httpx.post(f"{servers[0].url}/search", json=body, timeout=60)
                assert down.status_code == 503, down.text
                assert down.json()["error"]["code"] == "index_unavailable"
                assert "cannot use the PostgreSQL server" in down.json()["error"]["message"]
                health = httpx.get(f"{servers[0].url}/health", timeout=60)
                assert health.status_code == 200 and health.json()["index"]["error"]
                emb = httpx.post(f"{servers[0].url}/v1/embeddings", json={"input": "서울"}, timeout=30)
                assert emb.status_code == 200  # embedding needs no database

                own.start()
                for server in servers:
                    back = httpx.post(f"{server.url}/search", json=body, timeout=60)
                    assert back.status_code == 200, back.text
                    assert back.json()["hits"] == before
            finally:
                for server in servers:
                    server.stop()
    finally:
        own.stop()
        own.remove_temporary()
