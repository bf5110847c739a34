"""The search index: build, search, add, delete, load; atomic changes, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import koe5
from koe5.errors import IndexFormatError, InputError, ModelMismatchError
from koe5.search import Index, building, store
from koe5.search.bm25 import KoreanBM25


@pytest.fixture(scope="module")
def built(tiny, docs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx") / "index"
    return Index.build(docs, tiny, folder, chunk_tokens=64, overlap=8)


def _copy(built, tmp_path, tiny):
    import shutil

    shutil.copytree(built.folder, tmp_path / "index")
    return Index.load(tmp_path / "index", tiny)


def test_build_writes_a_versioned_manifest(built, docs, tiny):
    m = json.loads((built.folder / "manifest.json").read_text(encoding="utf-8"))
    assert m["format"] == "koe5-index" and m["version"] == 1 and m["state"] == "complete"
    assert m["model"]["fingerprint"] == koe5.embcache.model_fingerprint(tiny)
    assert m["model"]["passage_prefix"] == "passage: " and m["model"]["dim"] == 384
    assert m["chunking"]["max_tokens"] == 64 and m["chunking"]["overlap"] == 8
    assert m["bm25"]["analyzer"]["tags"][:2] == ["NNG", "NNP"]
    assert m["dense"]["active"] == "exact"
    assert m["counts"]["documents"] == len(docs) and m["counts"]["chunks"] > len(docs)
    assert len(built) == len(docs) and "long" in built


def test_a_document_scores_by_its_best_chunk(built):
    (hit,) = built.search("한라산 겨울", k=1, mode="bm25")
    assert hit.doc_id == "long" and "한라산" in hit.text and hit.chunk_id.startswith("long#")
    assert hit.chunk_id != "long#0" and hit.title == "긴 문서" and hit.metadata == {"kind": "long"}
    assert hit.end - hit.start == len(hit.text)
    for mode in ("dense", "hybrid", "bm25"):
        hits = built.search("서울은 대한민국의 수도", k=5, mode=mode)
        assert len({h.doc_id for h in hits}) == len(hits)  # one hit per document
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_dense_mode_matches_brute_force_over_chunks(built, tiny):
    query = "부산 항구"
    hits = built.search(query, k=3, mode="dense")
    q = tiny.encode_queries([query])[0]
    segment = store.read_segment(built.folder, built.manifest["segments"][0]["name"])
    scores = np.asarray(segment.vectors) @ q
    doc_ids = segment.table.column("doc_id").to_pylist()
    best: dict[str, float] = {}
    for d, s in zip(doc_ids, scores, strict=True):
        best[d] = max(best.get(d, -1.0), float(s))
    expected = sorted(best, key=lambda d: -best[d])[:3]
    assert [h.doc_id for h in hits] == expected
    assert hits[0].score == pytest.approx(best[expected[0]], abs=1e-5)


def test_punctuation_or_stopword_queries(built):
    assert built.search("?!...", mode="bm25") == []
    assert built.search("그리고", mode="bm25") == []
    assert len(built.search("?!...", k=3, mode="hybrid")) == 3  # the dense side still answers
    with pytest.raises(InputError, match="query is empty"):
        built.search("   ")
    with pytest.raises(InputError, match="mode"):
        built.search("서울", mode="sparse")
    with pytest.raises(InputError, match="k must be"):
        built.search("서울", k=0)


def test_filters(built):
    hits = built.search("대한민국", k=20, mode="bm25", filters={"kind": "short"})
    assert hits and all(h.metadata["kind"] == "short" for h in hits)
    assert [h.doc_id for h in built.search("대한민국", k=20, mode="dense", filters={"n": [1, 2]})] in (
        ["s1", "s2"],
        ["s2", "s1"],
    )
    assert built.search("대한민국", filters={"doc_id": "s2"}, mode="bm25")[0].doc_id == "s2"
    assert built.search("대한민국", filters={"kind": "nothing"}) == []
    with pytest.raises(InputError, match="filters must be a dict"):
        built.search("서울", filters=["kind"])


def test_add_and_delete_touch_only_what_changed(built, tiny, tmp_path, docs):
    index = _copy(built, tmp_path, tiny)
    first = index.manifest["segments"][0]["name"]
    vectors_file = index.folder / "segments" / first / "vectors.npy"
    before = vectors_file.stat().st_mtime_ns
    report = index.add([{"id": "new", "text": "인천에는 국제공항이 있다.", "title": "인천"}])
    assert report["documents"] == 1 and report["chunks"] == 1
    assert vectors_file.stat().st_mtime_ns == before  # old vectors were not rewritten
    assert index.search("인천 공항", k=1, mode="bm25")[0].doc_id == "new"
    assert index.delete(["s1", "s2"]) == 2
    assert "s1" not in index and len(index) == len(docs) - 1
    assert all(h.doc_id not in ("s1", "s2") for h in index.search("서울 부산 대한민국", k=50, mode="hybrid"))

    # the same as building the final set from scratch (BM25 statistics included)
    again = Index.load(index.folder, tiny)
    final = [d for d in docs if d["id"] not in ("s1", "s2")] + [
        {"id": "new", "text": "인천에는 국제공항이 있다.", "title": "인천"}
    ]
    fresh = Index.build(final, tiny, tmp_path / "fresh", chunk_tokens=64, overlap=8)
    for mode in ("bm25", "dense", "hybrid"):
        got = [
            (h.doc_id, h.chunk_id, round(h.score, 5))
            for h in again.search("대한민국 수도 공항", k=8, mode=mode)
        ]
        want = [
            (h.doc_id, h.chunk_id, round(h.score, 5))
            for h in fresh.search("대한민국 수도 공항", k=8, mode=mode)
        ]
        assert got == want, mode
    assert again.manifest["counts"] == {**fresh.manifest["counts"], "deleted_chunks": 2}


def test_ids_are_checked(built, tiny, tmp_path):
    index = _copy(built, tmp_path, tiny)
    with pytest.raises(InputError, match=r"already in the index, e\.g\. 's1'"):
        index.add([{"id": "s1", "text": "다른 내용"}])
    index.add([{"id": "s1", "text": "교체된 내용 한라봉"}], replace=True)
    assert index.search("한라봉", k=1, mode="bm25")[0].doc_id == "s1"
    assert len(index.search("대한민국", k=50, mode="bm25")) == len(
        [h for h in index.search("대한민국", k=50, mode="bm25") if h.doc_id != "s1"]
    )
    with pytest.raises(InputError, match="duplicate document id 'x': document 1 and document 0"):
        index.add([{"id": "x", "text": "가"}, {"id": "x", "text": "나"}])
    with pytest.raises(InputError, match="1 id\\(s\\) not in the index: 'nope'"):
        index.delete(["s2", "nope"])
    assert "s2" in index  # nothing was deleted
    assert index.delete(["s2", "nope"], missing_ok=True) == 1


def test_empty_documents_are_skipped_and_counted(tiny, tmp_path):
    docs = [{"id": "a", "text": "서울"}, {"id": "b", "text": "  \n"}, {"id": "c", "text": ""}]
    index = Index.build(docs, tiny, tmp_path / "i")
    assert len(index) == 1 and index.last_report["skipped"] == {"empty documents": 2}
    assert index.manifest["counts"]["skipped"] == {"empty documents": 2}
    with pytest.raises(InputError, match="no documents to index \\(skipped: 1 empty documents\\)"):
        Index.build([{"id": "b", "text": " "}], tiny, tmp_path / "j")


def test_missing_foreign_or_unfinished_folders(tmp_path, built):
    with pytest.raises(IndexFormatError, match="no such index folder"):
        Index.load(tmp_path / "nothing")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    with pytest.raises(IndexFormatError, match="not a koe5 index"):
        Index.load(tmp_path / "foreign")
    (tmp_path / "foreign" / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(IndexFormatError, match="not a koe5 index"):
        Index.load(tmp_path / "foreign")
    manifest = json.loads((built.folder / "manifest.json").read_text())
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(IndexFormatError, match="newer than this koe5 reads"):
        Index.load(tmp_path / "future")
    (tmp_path / "future" / "manifest.json").write_text(json.dumps({**manifest, "state": "building"}))
    with pytest.raises(IndexFormatError, match="--resume"):
        Index.load(tmp_path / "future")


def test_another_model_is_an_error(built, tiny_model_dir):
    other = koe5.load(str(tiny_model_dir), device="cpu", passage_prefix="")
    with pytest.raises(ModelMismatchError, match="was built with"):
        Index.load(built.folder, other)


def test_a_crash_mid_change_leaves_the_previous_index(built, tiny, tmp_path, monkeypatch):
    index = _copy(built, tmp_path, tiny)
    expected = [(h.doc_id, h.score) for h in index.search("대한민국", k=5, mode="hybrid")]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_manifest", crash)  # dies just before the commit
    with pytest.raises(KeyboardInterrupt):
        index.add([{"id": "new", "text": "대한민국 대한민국 대한민국"}])
    with pytest.raises(KeyboardInterrupt):
        index.delete(["s1"])
    monkeypatch.undo()
    for current in (index, Index.load(index.folder, tiny)):  # in memory and on disk
        assert "new" not in current and "s1" in current
        assert [(h.doc_id, h.score) for h in current.search("대한민국", k=5, mode="hybrid")] == expected
    index.add([{"id": "new", "text": "대한민국"}])  # and it still takes changes
    leftovers = [
        p.name for p in index.folder.iterdir() if p.name not in ("manifest.json", ".lock", "segments")
    ]
    assert leftovers == [index.manifest["generation"]]  # orphans of the crash were removed


def test_rebuild_replaces_only_when_complete(built, tiny, tmp_path, monkeypatch, docs):
    index = _copy(built, tmp_path, tiny)
    with pytest.raises(InputError, match="already holds an index"):
        Index.build(docs[:2], tiny, index.folder)
    monkeypatch.setattr(building, "finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        Index.build(docs[:2], tiny, index.folder, overwrite=True)
    monkeypatch.undo()
    assert len(Index.load(index.folder, tiny)) == len(docs)
    assert len(Index.build(docs[:2], tiny, index.folder, overwrite=True)) == 2
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not a koe5 index"):
        Index.build(docs, tiny, tmp_path / "foreign", overwrite=True)


def test_an_interrupted_build_resumes(tiny, docs, tmp_path, monkeypatch):
    real = building.SegmentWriter.write_segment
    calls = []

    def flaky(self, folder, name, batch):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, folder, name, batch)

    monkeypatch.setattr(building.SegmentWriter, "write_segment", flaky)
    with pytest.raises(KeyboardInterrupt):
        Index.build(docs, tiny, tmp_path / "r", chunk_tokens=64, overlap=8, segment_docs=4)
    monkeypatch.undo()
    assert not (tmp_path / "r").exists()
    resumed = Index.build(docs, tiny, tmp_path / "r", chunk_tokens=64, overlap=8, segment_docs=4, resume=True)
    assert resumed.last_report["resumed_documents"] == 8
    assert resumed.last_report["documents"] == len(docs) - 8
    whole = Index.build(docs, tiny, tmp_path / "w", chunk_tokens=64, overlap=8, segment_docs=4)
    for mode in ("bm25", "dense"):
        a = [(h.doc_id, round(h.score, 5)) for h in resumed.search("대한민국 수도", k=10, mode=mode)]
        b = [(h.doc_id, round(h.score, 5)) for h in whole.search("대한민국 수도", k=10, mode=mode)]
        assert a == b

    # resuming with other settings than the interrupted build is refused
    monkeypatch.setattr(building.SegmentWriter, "write_segment", flaky)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        Index.build(docs, tiny, tmp_path / "s", overlap=8, segment_docs=4)
    monkeypatch.undo()
    with pytest.raises(InputError, match="other chunking settings"):
        Index.build(docs, tiny, tmp_path / "s", chunk_tokens=64, overlap=8, segment_docs=4, resume=True)


def test_hnsw_index_and_the_automatic_switch(tiny, docs, tmp_path):
    hnsw = Index.build(docs, tiny, tmp_path / "h", ann="hnsw", chunk_tokens=64, overlap=8)
    exact = Index.build(docs, tiny, tmp_path / "e", ann="exact", chunk_tokens=64, overlap=8)
    assert hnsw.manifest["dense"]["active"] == "hnsw" and (hnsw.folder / "gen-000001" / "hnsw.faiss").exists()
    q = "부산은 항구 도시"
    assert [h.doc_id for h in hnsw.search(q, k=3, mode="dense")] == [
        h.doc_id for h in exact.search(q, k=3, mode="dense")
    ]
    hnsw.add([{"id": "new", "text": "새 문서"}])
    hnsw.delete(["s3"])
    again = Index.load(hnsw.folder, tiny)
    assert "new" in again and all(h.doc_id != "s3" for h in again.search(q, k=30, mode="dense"))

    auto = Index.build(docs[:3], tiny, tmp_path / "a", ann_threshold=5)
    assert auto.manifest["dense"]["active"] == "exact"
    auto.add(docs[3:6])
    assert auto.manifest["dense"]["active"] == "hnsw"
    assert Index.load(auto.folder, tiny).search(docs[4]["text"], k=1, mode="dense")[0].doc_id == docs[4]["id"]


def test_deleting_most_documents_compacts(built, tiny, tmp_path, docs):
    index = _copy(built, tmp_path, tiny)
    gone = [d["id"] for d in docs[:14]]  # 14 of 40 chunks: past COMPACT_AT
    index.delete(gone)
    assert index.manifest["counts"]["deleted_chunks"] == 0  # compacted away
    assert index.manifest["segments"][0]["name"] != built.manifest["segments"][0]["name"]
    again = Index.load(index.folder, tiny)
    assert sorted(again._rows.ids) == sorted(d["id"] for d in docs[14:])
    assert isinstance(again._bm25, KoreanBM25) and len(again._bm25) == again.manifest["counts"]["chunks"]
    assert again.search("한라산", k=1, mode="bm25")[0].doc_id == "long"


def test_compacting_an_hnsw_index_rebuilds_its_graph(tiny, docs, tmp_path):
    index = Index.build(docs, tiny, tmp_path / "h", ann="hnsw", chunk_tokens=64, overlap=8)
    index.delete([d["id"] for d in docs[:14]])
    assert index.manifest["counts"]["deleted_chunks"] == 0
    again = Index.load(index.folder, tiny)
    assert again.manifest["dense"]["active"] == "hnsw"
    hits = again.search(docs[15]["text"][:40], k=5, mode="dense")
    assert {h.doc_id for h in hits} <= {"s14", "long"} and hits[0].doc_id in ("s14", "long")


_SLOW_BUILD = """
import json, sys, time
import koe5
from koe5.search import Index, building
real = building.SegmentWriter.write_segment
def slow(self, folder, name, docs):
    n = real(self, folder, name, docs)
    print("segment", flush=True)
    time.sleep(0.4)
    return n
building.SegmentWriter.write_segment = slow
docs = json.loads(sys.argv[3])
Index.build(docs, koe5.load(sys.argv[1], device="cpu"), sys.argv[2], segment_docs=1)
print("done", flush=True)
"""


def test_a_second_build_of_a_folder_is_refused_while_the_first_runs(tiny, tiny_model_dir, docs, tmp_path):
    import subprocess
    import sys

    from koe5.errors import BusyError

    folder = tmp_path / "index"
    first_docs = docs[:4]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_BUILD, str(tiny_model_dir), str(folder), json.dumps(first_docs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "segment"  # the first build is under way
        with pytest.raises(BusyError, match=rf"being written by another process: pid {proc.pid} on "):
            Index.build(docs[4:], tiny, folder, overwrite=True)
        assert (tmp_path / ".index.partial").is_dir()  # its work in progress untouched
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().endswith("done")
    index = Index.load(folder, tiny)
    assert sorted(index._rows.ids) == sorted(d["id"] for d in first_docs)
    with pytest.raises(InputError, match="already holds an index"):  # finished: never replaced unasked
        Index.build(docs[4:], tiny, folder)


def test_resume_refuses_other_documents(tiny, docs, tmp_path, monkeypatch):
    first, other = tmp_path / "first.jsonl", tmp_path / "other.jsonl"
    first.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    other.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs[:3]), encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):  # killed while writing the second segment
        _interrupted(monkeypatch, 2, lambda: Index.build(first, tiny, tmp_path / "idx", segment_docs=4))
    refusal = r"read .*first\.jsonl \(1 file\(s\), \d+ bytes\), not .*other\.jsonl"
    with pytest.raises(InputError, match=refusal):
        Index.build(other, tiny, tmp_path / "idx", segment_docs=4, resume=True)
    done = Index.build(first, tiny, tmp_path / "idx", segment_docs=4, resume=True)
    assert done.last_report["resumed_documents"] == 4 and len(done) == len(docs)
    assert done.manifest["source"]["path"] == str(first.resolve())


def _interrupted(monkeypatch, at_call: int, build) -> None:
    """Run ``build`` with the segment writer interrupted on its ``at_call``-th segment."""
    real = building.SegmentWriter.write_segment
    calls = []

    def flaky(self, folder, name, batch):
        calls.append(name)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(self, folder, name, batch)

    monkeypatch.setattr(building.SegmentWriter, "write_segment", flaky)
    try:
        build()
    finally:
        monkeypatch.undo()
