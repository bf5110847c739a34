"""The on-disk layout of an index (koe5.search.store) and the row bookkeeping over it (koe5.search.rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from koe5.errors import IndexFormatError
from koe5.search import store
from koe5.search.rows import Rows


def _manifest(**extra):
    return {"format": store.FORMAT, "version": store.VERSION, "state": "complete", **extra}


def _columns(doc_chunks: list[tuple[str, int]], metadata: dict | None = None) -> dict[str, list]:
    """Columns of a segment: each (doc id, its number of chunks)."""
    cols: dict[str, list] = {c: [] for c in store.COLUMNS}
    for doc_id, n in doc_chunks:
        for i in range(n):
            cols["doc_id"].append(doc_id)
            cols["chunk"].append(i)
            cols["start"].append(10 * i)
            cols["end"].append(10 * i + 9)
            cols["text"].append(f"{doc_id} 조각 {i}")
            cols["title"].append(doc_id.upper())
            cols["metadata"].append(json.dumps(metadata or {"doc": doc_id}, ensure_ascii=False))
    return cols


def _segment(folder, name, doc_chunks, dim=4):
    cols = _columns(doc_chunks)
    n = len(cols["doc_id"])
    vectors = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    tokens = [[f"t{i}", "공통"] for i in range(n)]
    store.write_segment(folder, name, cols, vectors, tokens)
    return vectors, tokens


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such index folder"),
        (lambda p: p.write_text("x"), "not a folder"),
        (lambda p: p.mkdir(), "manifest.json is missing"),
        (lambda p: (p.mkdir(), (p / store.MANIFEST).write_text("{oops")), "damaged manifest"),
        (lambda p: (p.mkdir(), (p / store.MANIFEST).write_text('{"format": "other"}')), "not a koe5 index"),
        (
            lambda p: (p.mkdir(), (p / store.MANIFEST).write_text(json.dumps(_manifest(version=99)))),
            "newer than this koe5 reads",
        ),
        (
            lambda p: (p.mkdir(), (p / store.MANIFEST).write_text(json.dumps(_manifest(state="building")))),
            "did not finish",
        ),
    ],
)
def test_read_manifest_names_what_is_wrong(tmp_path, setup, message):
    folder = tmp_path / "idx"
    setup(folder)
    with pytest.raises(IndexFormatError, match=message):
        store.read_manifest(folder)


def test_manifest_round_trip_and_a_building_one_when_allowed(tmp_path):
    manifest = _manifest(state="building", model={"name": "모델"})
    store.write_manifest(tmp_path, manifest)
    assert store.read_manifest(tmp_path, allow_building=True) == manifest
    assert "모델" in (tmp_path / store.MANIFEST).read_text(encoding="utf-8")  # not \\u-escaped
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / store.MANIFEST).stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == [store.MANIFEST]  # no temporary left


def test_a_segment_round_trips(tmp_path):
    vectors, tokens = _segment(tmp_path, "000001", [("a", 2), ("b", 1)])
    seg = store.read_segment(tmp_path, "000001")
    assert len(seg) == 3 and seg.name == "000001"
    assert seg.table.column("doc_id").to_pylist() == ["a", "a", "b"]
    assert seg.table.column("text").to_pylist()[1] == "a 조각 1"
    np.testing.assert_array_equal(seg.vectors, vectors)
    assert store.read_segment_tokens(tmp_path, "000001") == tokens


def test_a_damaged_segment_is_named(tmp_path):
    _segment(tmp_path, "000001", [("a", 2)])
    np.save(tmp_path / "segments" / "000001" / "vectors.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(IndexFormatError, match=r"000001: 2 chunks but 5 vectors"):
        store.read_segment(tmp_path, "000001")
    (tmp_path / "segments" / "000001" / "chunks.arrow").write_bytes(b"not arrow")
    with pytest.raises(IndexFormatError, match="damaged or missing segment"):
        store.read_segment(tmp_path, "000001")


def test_garbage_is_what_the_manifest_does_not_name(tmp_path):
    for name in ("000001", "000002"):
        _segment(tmp_path, name, [("a", 1)])
    for gen in ("gen-000001", "gen-000002"):
        (tmp_path / gen).mkdir()
    (tmp_path / ".gen-000003.tmp-abc").mkdir()
    (tmp_path / ".manifest.json.tmp-xyz").write_text("half")
    live = tmp_path / "segments" / "000002"
    kept = sorted(p.name for p in live.iterdir())
    (live / ".codes.npy.tmp-killed").write_bytes(b"half")  # codes written later, the writer killed
    store.collect_garbage(tmp_path, {"segments": [{"name": "000002"}], "generation": "gen-000002"})
    assert sorted(p.name for p in (tmp_path / "segments").iterdir()) == ["000002"]
    assert sorted(p.name for p in live.iterdir()) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen-000002", "segments"]


def test_link_or_copy_shares_the_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"graph")
    store.link_or_copy(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"graph"


def test_the_writer_lock_refuses_a_second_writer(tmp_path):
    holder = (
        "import sys, time; from pathlib import Path; from koe5.search import store\n"
        "with store.writer_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(IndexFormatError, match="another process is changing this index"),
            store.writer_lock(tmp_path),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()
    with store.writer_lock(tmp_path):  # free again once the holder is gone
        pass


def test_rows_number_chunks_across_segments_and_documents(tmp_path):
    _segment(tmp_path, "000001", [("a", 2), ("b", 1)])
    _segment(tmp_path, "000002", [("c", 3)])
    segments = [store.read_segment(tmp_path, n) for n in ("000001", "000002")]
    rows = Rows(segments, np.array([2]))  # b's only chunk deleted
    assert len(rows) == 6
    assert rows.doc_ids == ["a", "b", "c"]
    assert rows.chunk_doc.tolist() == [0, 0, 1, 2, 2, 2]
    assert rows.doc_rows.tolist() == [0, 2, 3]
    assert rows.ids == {"a": 0, "c": 2}  # b is deleted
    assert rows.live.tolist() == [0, 1, 3, 4, 5]
    assert rows.doc_chunk_rows(2).tolist() == [3, 4, 5]
    assert rows.chunk(4) == {
        "doc_id": "c",
        "chunk": 1,
        "start": 10,
        "end": 19,
        "text": "c 조각 1",
        "title": "C",
        "metadata": {"doc": "c"},
    }
    assert [m["doc"] for m in rows.metadata()] == ["a", "b", "c"]
    assert [len(block) for block in rows.vector_blocks] == [3, 3]


def test_rows_drop_and_append(tmp_path):
    _segment(tmp_path, "000001", [("a", 2), ("b", 1)])
    _segment(tmp_path, "000002", [("c", 1), ("d", 2)])
    rows = Rows([store.read_segment(tmp_path, "000001")])
    bm25_rows = rows.drop(["a"])
    assert bm25_rows.tolist() == [0, 1]  # BM25 rows before the change
    assert rows.live.tolist() == [2] and rows.ids == {"b": 1}
    rows.append(store.read_segment(tmp_path, "000002"))
    assert rows.ids == {"b": 1, "c": 2, "d": 3}
    assert rows.live.tolist() == [2, 3, 4, 5]
    assert rows.chunk_doc.tolist() == [0, 0, 1, 2, 3, 3]
    assert rows.chunk(5)["doc_id"] == "d" and rows.chunk(5)["chunk"] == 1
    assert rows.drop(["d"]).tolist() == [2, 3]  # d's rows 4 and 5 are BM25 rows 2 and 3
    masks = [gone.tolist() for _, gone in rows.segment_rows()]
    assert masks == [[True, True, False], [False, True, True]]


def test_no_segments_is_an_empty_index():
    rows = Rows([], np.zeros(0, np.int64))
    assert len(rows) == 0 and rows.ids == {} and rows.live.tolist() == [] and rows.metadata() == []
