"""Compact vectors (float16, int8, int4, binary) against exact float32 search: the codec, candidate search
with rescoring, filters, and an index built, changed and reopened with each setting."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from koe5.cli import app
from koe5.errors import IndexFormatError, InputError
from koe5.search import Index, building
from koe5.search.compact import DEFAULT_OVERSAMPLE, Codec, CompactIndex, rescore, vectors_of
from koe5.search.dense import DenseIndex, HNSWParams
from koe5.search.dense_state import CALIBRATION, CODES

KINDS = ("float16", "int8", "int4", "binary")
SMALL_HNSW = HNSWParams(m=16, ef_construction=64, ef_search=64)


def clustered(n: int, dim: int, seed: int, centres: int = 40) -> np.ndarray:
    """Unit vectors around a few centres that share a common direction (as E5's vectors do)."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim)) + 3.0 * np.ones(dim) / np.sqrt(dim)
    x = middle[rng.integers(0, centres, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    vectors, queries = clustered(3000, 64, 0), clustered(50, 64, 1)
    exact = DenseIndex(64)
    exact.add(vectors)
    return vectors, queries, exact


def _recall(index, exact, queries, allowed=None) -> float:
    found = [index.search(q, 10, allowed)[0] for q in queries]
    truth = [exact.search(q, 10, allowed)[0] for q in queries]
    return float(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(found, truth, strict=True)]))


# --- the codec and the candidate search ----------------------------------------------------------


@pytest.mark.parametrize("ann", ["exact", "hnsw"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_finds_the_exact_top_10_with_exact_scores(data, kind, ann):
    vectors, queries, exact = data
    index = CompactIndex(Codec.calibrate(kind, vectors), ann, SMALL_HNSW)
    index.add(vectors[:1000])
    index.add(vectors[1000:])  # rows numbered on across blocks
    assert len(index) == 3000 and index.oversample == DEFAULT_OVERSAMPLE[kind]
    # 64 bits say little about 64-dim noise: binary needs more candidates here than on real vectors
    floor = {"float16": 0.99, "int8": 0.99, "int4": 0.95, "binary": 0.7}[kind] if ann == "exact" else 0.7
    assert _recall(index, exact, queries) >= floor
    for q in queries[:10]:
        rows, scores = index.search(q, 10)
        np.testing.assert_allclose(scores, vectors[rows] @ q, rtol=0, atol=1e-6)  # rescored: float32's
        assert np.all(np.diff(scores) <= 0)


def test_oversampling_is_what_recovers_binary_recall(data):
    vectors, queries, exact = data
    index = CompactIndex(Codec.calibrate("binary", vectors), oversample=1)
    index.add(vectors)
    alone = _recall(index, exact, queries)
    index.oversample = 40
    assert alone < 0.5 and _recall(index, exact, queries) >= 0.95


def test_rescoring_orders_candidates_by_float32_scores():
    vectors = clustered(100, 16, 2)
    blocks, starts = [vectors[:30], vectors[30:]], np.array([0, 30, 100])
    q = vectors[7]
    candidates = np.array([99, 7, 45, 7, 3, 31, 60])  # unordered, a repeat, across both blocks
    rows, scores = rescore(blocks, starts, q, candidates, k=4)
    expected = sorted(set(candidates.tolist()), key=lambda r: -float(vectors[r] @ q))[:4]
    assert rows.tolist() == expected and rows[0] == 7
    np.testing.assert_allclose(scores, vectors[rows] @ q, rtol=0, atol=1e-6)
    tied = np.repeat(vectors[:1], 3, axis=0)  # equal scores: lower row first, as exact search
    assert rescore([tied], np.array([0, 3]), q, np.array([2, 0, 1]), 3)[0].tolist() == [0, 1, 2]


class Recording:
    """A block of float32 rows that remembers which rows were read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.read = array, array.shape, set()

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, rows):
        self.read.update(np.atleast_1d(rows).tolist())
        return self.array[rows]


@pytest.mark.parametrize("kind", KINDS)
def test_search_reads_only_the_candidates_float32_rows(data, kind):
    vectors, queries, _ = data
    codec = Codec.calibrate(kind, vectors)
    block = Recording(vectors)
    index = CompactIndex(codec)
    index.attach([block], [codec.encode(vectors)])
    rows, _ = index.search(queries[0], 5)
    assert len(rows) == 5 and 5 <= len(block.read) <= 5 * index.oversample


def test_int8_ranges_are_calibrated_and_later_rows_clipped():
    sample = clustered(500, 16, 3)
    codec = Codec.calibrate("int8", sample)
    low, high = codec.params
    np.testing.assert_array_equal(low, sample.min(axis=0))
    np.testing.assert_array_equal(high, sample.max(axis=0))
    codes = codec.encode(sample)
    assert codes.dtype == np.uint8 and codes.shape == (500, 16)
    decoded = low + (codes + 0.5) / 255 * (high - low)  # faiss's 8-bit scalar quantizer
    assert np.abs(decoded - sample).max() <= (high - low).max() / 255
    outside = np.stack([low - 1.0, high + 1.0])  # beyond the calibrated range: clipped to its ends
    assert codec.encode(outside)[0].tolist() == [0] * 16 and codec.encode(outside)[1].tolist() == [255] * 16
    flat = Codec.calibrate("int8", np.ones((3, 8), np.float32))  # a constant dimension still has a width
    assert np.all(flat.params[1] > flat.params[0])


def test_binary_codes_are_the_sign_bits_around_the_corpus_mean():
    sample = clustered(200, 16, 3)
    codec = Codec.calibrate("binary", sample)
    np.testing.assert_allclose(codec.params, sample.mean(axis=0), atol=1e-6)
    codes = codec.encode(sample)
    assert codes.shape == (200, 2 + 8) and codec.code_size == 10  # 16 bits, then two float32 factors
    np.testing.assert_array_equal(codes[:, :2], np.packbits(sample > codec.params, axis=1, bitorder="little"))
    row = codec.params[None, :].copy()
    row[0, [0, 9, 15]] += 0.1  # above the mean in dimensions 0, 9 and 15 only
    assert codec.encode(row)[0, :2].tolist() == [0b00000001, 0b10000010]
    with pytest.raises(InputError, match="vectors must be one of"):
        Codec.calibrate("int2", sample)


def test_int4_codes_hold_four_bits_a_dimension_and_its_ann_is_an_inverted_file(data, tmp_path):
    import faiss

    vectors, queries, exact = data
    codec = Codec.calibrate("int4", vectors)
    np.testing.assert_allclose(codec.params, vectors.mean(axis=0), atol=1e-6)  # centred as binary
    assert codec.code_size == codec.encode(vectors[:3]).shape[1] and 4 * 64 // 8 < codec.code_size <= 64
    index = CompactIndex(codec, "hnsw", SMALL_HNSW, oversample=1)
    index.add(vectors)
    ivf = faiss.downcast_index(index._index)
    assert isinstance(ivf, faiss.IndexIVFRaBitQ) and ivf.nlist == 64 and ivf.nprobe == 16  # sqrt(3000)
    # at 1 candidate a result, 4 bits find what 1 bit cannot (the oversampling test below)
    assert _recall(index, exact, queries) >= 0.8
    index.save_graph(tmp_path / "ivf.faiss")
    again = CompactIndex(codec, "exact", SMALL_HNSW, oversample=1)
    again.attach([vectors], None)
    again.load_graph(tmp_path / "ivf.faiss")
    assert [again.search(q, 10)[0].tolist() for q in queries] == [
        index.search(q, 10)[0].tolist() for q in queries
    ]


@pytest.mark.parametrize("ann", ["exact", "hnsw"])
@pytest.mark.parametrize("kind", KINDS)
def test_filters_apply_to_every_kind(data, kind, ann):
    vectors, queries, exact = data
    index = CompactIndex(Codec.calibrate(kind, vectors), ann, SMALL_HNSW)
    index.add(vectors)
    rng = np.random.default_rng(4)
    for share in (0.5, 0.02):  # HNSW with a filter; exact over the codes below EXACT_BELOW
        allowed = rng.random(len(vectors)) < share
        for q in queries[:10]:
            rows, _ = index.search(q, 10, allowed)
            assert len(rows) == 10 and allowed[rows].all()
        assert _recall(index, exact, queries, allowed) >= 0.85
    few = np.zeros(len(vectors), bool)
    few[[5, 2500]] = True
    assert sorted(index.search(queries[0], 10, few)[0].tolist()) == [5, 2500]


def test_a_graph_is_saved_loaded_and_rebuilt(data, tmp_path):
    vectors, queries, _ = data
    codec = Codec.calibrate("binary", vectors)
    index = CompactIndex(codec, "hnsw", SMALL_HNSW)
    index.add(vectors)
    index.save_graph(tmp_path / "g.faiss")
    again = CompactIndex(codec, "exact", SMALL_HNSW)
    again.attach([vectors], None)
    again.load_graph(tmp_path / "g.faiss")
    assert again.kind == "hnsw"
    assert [again.search(q, 5)[0].tolist() for q in queries[:5]] == [
        index.search(q, 5)[0].tolist() for q in queries[:5]
    ]
    again.blocks = [vectors[:1500]]  # compaction: new rows, then the graph rebuilt over them
    again.build_graph()
    assert again.search(queries[0], 10)[0].max() < 1500


# --- in an index ---------------------------------------------------------------------------------


def _dense(index, query: str, k: int = 5):
    return [(h.doc_id, round(h.score, 5)) for h in index.search(query, k=k, mode="dense")]


@pytest.fixture(scope="module")
def float32_index(tiny, docs, tmp_path_factory):
    return Index.build(docs, tiny, tmp_path_factory.mktemp("f32") / "index", chunk_tokens=64, overlap=8)


QUESTIONS = ("대한민국의 수도", "한라산 겨울", "부산 항구 도시", "?!")


@pytest.mark.parametrize("kind", KINDS)
def test_an_index_of_compact_vectors_searches_as_float32(tiny, docs, tmp_path, float32_index, kind):
    index = Index.build(docs, tiny, tmp_path / kind, chunk_tokens=64, overlap=8, vectors=kind)
    dense = index.manifest["dense"]
    assert dense["vectors"] == kind and dense["oversample"] == DEFAULT_OVERSAMPLE[kind]
    assert "vectors" not in float32_index.manifest["dense"]  # float32 manifests stay as they were
    for seg in index.manifest["segments"]:
        assert (index.folder / "segments" / seg["name"] / CODES).exists()
    assert (index.folder / index.manifest["generation"] / CALIBRATION).exists() == (kind != "float16")
    for q in QUESTIONS:
        assert _dense(index, q) == _dense(float32_index, q)
    hits = index.search("대한민국", k=5, mode="dense", filters={"kind": "short"})
    assert hits and all(h.metadata["kind"] == "short" for h in hits)


@pytest.mark.parametrize("kind", KINDS)
def test_add_delete_compact_and_reopen_keep_the_setting(tiny, docs, tmp_path, float32_index, kind):
    pair = []
    for name, vectors in (("f32", "float32"), (kind, kind)):
        index = Index.build(docs[:10], tiny, tmp_path / name, chunk_tokens=64, overlap=8, vectors=vectors)
        pair.append(index)
    calibration = pair[1].folder / pair[1].manifest["generation"] / CALIBRATION
    before = calibration.read_bytes() if calibration.exists() else None
    for index in pair:
        index.add(docs[10:])
        index.add([{"id": "new", "text": "제주도의 한라산은 겨울에 눈이 많이 내린다."}])
    compact = pair[1]
    assert vectors_of(compact.manifest) == kind
    for seg in compact.manifest["segments"]:  # the added segments got their codes
        assert (compact.folder / "segments" / seg["name"] / CODES).exists()
    after = compact.folder / compact.manifest["generation"] / CALIBRATION
    assert (after.read_bytes() if after.exists() else None) == before  # later rows: the same ranges
    for q in QUESTIONS:
        assert _dense(compact, q, 10) == _dense(pair[0], q, 10)
    for index in pair:
        index.delete([d["id"] for d in docs[:14]])  # past COMPACT_AT: segments rewritten
    assert compact.manifest["counts"]["deleted_chunks"] == 0
    again = Index.load(compact.folder, tiny)
    assert vectors_of(again.manifest) == kind
    for q in QUESTIONS:
        assert _dense(again, q, 10) == _dense(pair[0], q, 10)


@pytest.mark.parametrize("kind", ["int8", "int4", "binary"])
def test_hnsw_over_codes_grows_compacts_and_reopens(tiny, docs, tmp_path, kind):
    # calibrated on 3 documents, the codes of the rest are clipped: enough candidates to hold them all
    options = {"chunk_tokens": 64, "overlap": 8, "vectors": kind, "oversample": 10}
    index = Index.build(docs[:3], tiny, tmp_path / "auto", ann_threshold=5, **options)
    exact = Index.build(
        docs, tiny, tmp_path / "exact", ann="exact", **{**options, "vectors": "float32", "oversample": None}
    )
    assert index.manifest["dense"]["active"] == "exact"
    index.add(docs[3:])
    assert index.manifest["dense"]["active"] == "hnsw"
    for seg in index.manifest["segments"]:  # an HNSW graph carries its own codes: the files are not read
        (index.folder / "segments" / seg["name"] / CODES).unlink()
    again = Index.load(index.folder, tiny)
    assert again._dense.kind == "hnsw"
    for q in QUESTIONS:
        assert _dense(again, q) == _dense(exact, q)
    again.delete([d["id"] for d in docs[:14]])
    assert again.manifest["counts"]["deleted_chunks"] == 0 and again._dense.kind == "hnsw"
    exact.delete([d["id"] for d in docs[:14]])
    reopened = Index.load(again.folder, tiny)
    for q in QUESTIONS:
        assert _dense(reopened, q) == _dense(exact, q)


def test_missing_codes_are_named(tiny, docs, tmp_path):
    index = Index.build(docs[:4], tiny, tmp_path / "i", vectors="int8")
    (index.folder / "segments" / index.manifest["segments"][0]["name"] / CODES).unlink()
    with pytest.raises(IndexFormatError, match=r"damaged or missing int8 codes.*codes\.npy"):
        Index.load(index.folder, tiny)


def test_settings_are_checked_and_never_mixed(tiny, docs, tmp_path, monkeypatch):
    with pytest.raises(
        InputError, match="vectors must be one of float32, float16, int8, int4, binary, not 'int2'"
    ):
        Index.build(docs, tiny, tmp_path / "a", vectors="int2")
    with pytest.raises(InputError, match="oversample applies to compact vectors"):
        Index.build(docs, tiny, tmp_path / "a", oversample=4)
    with pytest.raises(InputError, match="oversample must be a positive integer"):
        Index.build(docs, tiny, tmp_path / "a", vectors="int8", oversample=0)
    Index.build(docs[:3], tiny, tmp_path / "b")
    with pytest.raises(InputError, match="holds float32 vectors, not int8; pass overwrite"):
        Index.build(docs[:3], tiny, tmp_path / "b", vectors="int8")
    assert (
        vectors_of(Index.build(docs[:3], tiny, tmp_path / "b", vectors="int8", overwrite=True).manifest)
        == "int8"
    )

    def interrupted(self, folder, name, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(building.SegmentWriter, "write_segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Index.build(docs, tiny, tmp_path / "c", segment_docs=4, vectors="binary")
    monkeypatch.undo()
    with pytest.raises(
        InputError, match=r"cannot resume.*holds binary vectors, not int8; build again without"
    ):
        Index.build(docs, tiny, tmp_path / "c", segment_docs=4, vectors="int8", resume=True)


def test_an_old_index_without_the_setting_reads_as_float32(float32_index, tmp_path, tiny):
    shutil.copytree(float32_index.folder, tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text(encoding="utf-8"))
    manifest["dense"].pop("vectors", None)
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    old = Index.load(tmp_path / "old", tiny)
    assert isinstance(old._dense, DenseIndex) and vectors_of(old.manifest) == "float32"
    assert _dense(old, "대한민국의 수도") == _dense(float32_index, "대한민국의 수도")


# --- the command line ----------------------------------------------------------------------------


def test_the_command_line_builds_compact_indexes_and_reports_their_memory(tiny_model_dir, docs, tmp_path):
    runner = CliRunner()
    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs), encoding="utf-8")
    index = tmp_path / "idx"
    args = ["index", "build", source, "-o", index, "--model", tiny_model_dir, "--vectors", "binary"]
    result = runner.invoke(app, ["--quiet", *map(str, [*args, "--oversample", "12"])])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["index", "info", str(index), "--json"])
    info = json.loads(result.stdout)
    assert info["dense"]["vectors"] == "binary" and info["dense"]["oversample"] == 12
    assert info["memory"]["vectors"] == "binary" and info["memory"]["resident bytes per chunk"] == 384 / 8 + 8
    result = runner.invoke(app, ["index", "info", str(index)])
    assert "binary vectors, 12x k candidates rescored; 56 bytes a chunk in memory" in result.stdout

    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "n1", "text": "인천에는 국제공항이 있다."}\n', encoding="utf-8")
    result = runner.invoke(app, ["index", "add", str(index), str(more), "--vectors", "int8"])
    assert result.exit_code == 2 and "holds binary vectors, not int8" in result.output
    result = runner.invoke(app, ["index", "add", str(index), str(more), "--vectors", "binary", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["documents"] == len(docs) + 1
    plain = tmp_path / "plain"
    result = runner.invoke(
        app, ["--quiet", "index", "build", str(source), "-o", str(plain), "--model", str(tiny_model_dir)]
    )
    info = json.loads(runner.invoke(app, ["index", "info", str(plain), "--json"]).stdout)
    assert info["memory"] == {"vectors": "float32", "resident bytes": 384 * 4 * info["counts"]["chunks"],
                              "resident bytes per chunk": 1536.0}  # fmt: skip
