"""Reranking in the search pipeline: ``Index.search(rerank=...)`` on a folder and on PostgreSQL,
``koe5 search --rerank``, and the benchmark's ``RerankRetriever`` / ``koe5 bench --retrievers X+rerank``."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from koe5.cli import app
from koe5.errors import InputError, ModelError
from koe5.evaluation import BM25Retriever, FunctionRetriever, RerankRetriever, evaluate_split
from koe5.rerank import Reranker, default_reranker_dir, known_rerankers
from koe5.search import Index
from koe5.search.reranking import MAX_DEPTH
from koe5.tasks.data import assemble

QUERIES = ["대한민국의 수도", "서울 지하철", "한라산 눈"]
runner = CliRunner()


@pytest.fixture(scope="module")
def built(tiny, docs, tmp_path_factory):
    return Index.build(docs, tiny, tmp_path_factory.mktemp("rr") / "index", chunk_tokens=64, overlap=8)


@pytest.fixture(scope="module")
def reranker(tiny_reranker_dir) -> Reranker:
    return Reranker.load(str(tiny_reranker_dir), device="cpu")


class Recorder:
    """A stand-in reranker that records what it read and scores the later texts higher."""

    name = "recorder"

    def score(self, query, texts):
        self.query, self.texts = query, list(texts)
        return np.arange(len(texts), dtype=np.float32)


def by_hand(index, reranker, query, k, depth, **first_stage):
    """The first stage's ``depth`` best, scored with ``Reranker.score`` and sorted here, ``k`` of them:
    [(doc id, reranker score, first-stage score)]."""
    first = index.search(query, k=depth, **first_stage)
    texts = [f"{h.title} {h.text}" if h.title else h.text for h in first]
    scores = reranker.score(query, texts)
    order = sorted(range(len(first)), key=lambda i: -scores[i])[:k]  # sorted is stable: ties keep order
    return [(first[i].doc_id, float(scores[i]), first[i].score) for i in order]


def assert_reranked_by_hand(index, reranker, modes=("hybrid", "dense", "bm25"), filters=None) -> None:
    for mode in modes:
        for query in QUERIES:
            got = index.search(query, k=4, mode=mode, filters=filters, rerank=reranker, rerank_depth=9)
            want = by_hand(index, reranker, query, 4, 9, mode=mode, filters=filters)
            assert [h.doc_id for h in got] == [d for d, _, _ in want], (mode, query)
            for hit, (_, score, first) in zip(got, want, strict=True):
                assert abs(hit.score - score) < 1e-6 and abs(hit.retrieval_score - first) < 1e-6


# --- the folder index ----------------------------------------------------------------------------


def test_reranking_is_the_first_stage_s_best_reordered_by_the_reranker(built, reranker):
    assert_reranked_by_hand(built, reranker)
    hits = built.search("서울", k=3, rerank=reranker, rerank_depth=5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0 < h.score < 1 for h in hits)  # the reranker's sigmoid, not the hybrid's score


def test_the_reranker_reads_title_and_best_chunk_and_equal_scores_keep_the_first_order(built):
    recorder = Recorder()
    first = built.search("한라산 겨울", k=6, mode="bm25")
    assert first[0].doc_id == "long" and first[0].title == "긴 문서"
    hits = built.search("한라산 겨울", k=6, mode="bm25", rerank=recorder, rerank_depth=6)
    assert recorder.query == "한라산 겨울"
    assert recorder.texts[0] == f"긴 문서 {first[0].text}"  # title, a space, the best chunk
    assert recorder.texts[1:] == [h.text for h in first[1:]]  # no title, no space
    assert [h.doc_id for h in hits] == [h.doc_id for h in reversed(first)]
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in reversed(first)]

    class Flat:
        name = "flat"

        def score(self, query, texts):
            return np.ones(len(texts), dtype=np.float32)

    flat = built.search("한라산 겨울", k=6, mode="bm25", rerank=Flat(), rerank_depth=6)
    assert [h.doc_id for h in flat] == [h.doc_id for h in first]


def scaled(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return (values - values.min()) / (values.max() - values.min())


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7])
def test_a_weight_below_one_blends_the_reranker_with_the_first_stage(
    built, reranker, tiny_reranker_dir, weight
):
    assert reranker.weight == 1.0  # a folder koe5 knows nothing of: the reranker's order alone
    blended = Reranker.load(str(tiny_reranker_dir), device="cpu", weight=weight)
    for query in QUERIES:
        first = built.search(query, k=9)
        hits = built.search(query, k=4, rerank=blended, rerank_depth=9)
        read = reranker.score(query, [f"{h.title} {h.text}" if h.title else h.text for h in first])
        mixed = weight * scaled(read) + (1 - weight) * scaled([h.score for h in first])
        order = sorted(range(len(first)), key=lambda i: -mixed[i])[:4]  # stable: ties keep the first order
        assert [h.doc_id for h in hits] == [first[i].doc_id for i in order], query
        assert [h.score for h in hits] == pytest.approx([mixed[i] for i in order])
        assert [h.retrieval_score for h in hits] == pytest.approx([first[i].score for i in order])
        if weight == 0:  # the first stage's order, whatever the reranker says
            assert [h.doc_id for h in hits] == [h.doc_id for h in first[:4]]


@pytest.mark.parametrize("weight", [-0.1, 1.5, True, "0.5"])
def test_a_bad_weight_is_named(tiny_reranker_dir, weight):
    with pytest.raises(ModelError, match="weight must be a number from 0 to 1"):
        Reranker.load(str(tiny_reranker_dir), device="cpu", weight=weight)


def test_retrieval_score_is_kept_and_only_reranked_hits_report_it(built, reranker):
    plain = built.search("서울", k=3)
    assert all(h.retrieval_score is None and "retrieval_score" not in h.to_dict() for h in plain)
    reranked = built.search("서울", k=3, rerank=reranker)  # the default depth: 50
    first = {h.doc_id: h.score for h in built.search("서울", k=50)}
    for hit in reranked:
        assert hit.to_dict()["retrieval_score"] == hit.retrieval_score == first[hit.doc_id]


def test_filters_apply_to_the_reranked_candidates(built, reranker):
    assert_reranked_by_hand(built, reranker, modes=("hybrid",), filters={"kind": "short"})
    hits = built.search("서울", k=5, filters={"doc_id": ["s1", "s2"]}, rerank=reranker, rerank_depth=10)
    assert sorted(h.doc_id for h in hits) == ["s1", "s2"]  # fewer candidates than k: all of them
    assert built.search("?!", k=5, mode="bm25", rerank=reranker) == []
    assert built.search("서울", filters={"kind": "none"}, rerank=reranker) == []


@pytest.mark.parametrize(
    ("k", "depth", "message"),
    [
        (10, 5, r"rerank_depth \(5\) must be at least k \(10\)"),
        (10, MAX_DEPTH + 1, f"rerank_depth must be at most {MAX_DEPTH}"),
        (10, "50", "rerank_depth must be an integer, got str"),
        (10, 50.0, "rerank_depth must be an integer, got float"),
        (10, True, "rerank_depth must be an integer, got bool"),
    ],
)
def test_bad_depths_are_named_before_the_reranker_loads(built, k, depth, message):
    with pytest.raises(InputError, match=message):
        built.search("서울", k=k, rerank="/no/such/reranker", rerank_depth=depth)


def test_bad_rerankers_are_named(built):
    with pytest.raises(InputError, match=r"rerank must be a Reranker or a reranker's name.*not int"):
        built.search("서울", rerank=42)
    with pytest.raises(ModelError, match="reranker folder /no/such/reranker does not exist"):
        built.search("서울", rerank="/no/such/reranker")
    with pytest.raises(InputError, match="k must be a positive integer"):
        built.search("서울", k=0, rerank="/no/such/reranker")
    assert len(built.search("서울", k=60)) == len(built)  # without rerank, rerank_depth plays no part


def test_a_reranker_named_by_its_folder_is_loaded_once(built, reranker, tiny_reranker_dir, monkeypatch):
    loads = []
    real = Reranker.load.__func__

    def counting(cls, name, **kw):
        loads.append(name)
        return real(cls, name, device="cpu")

    monkeypatch.setattr(Reranker, "load", classmethod(counting))
    first = built.search("서울", k=3, rerank=str(tiny_reranker_dir), rerank_depth=10)
    again = built.search("서울", k=3, rerank=str(tiny_reranker_dir), rerank_depth=10)
    assert loads == [str(tiny_reranker_dir)]
    want = built.search("서울", k=3, rerank=reranker, rerank_depth=10)
    assert [h.to_dict() for h in first] == [h.to_dict() for h in again]
    assert [h.doc_id for h in first] == [h.doc_id for h in want]


# --- PostgreSQL ----------------------------------------------------------------------------------


def test_the_database_index_reranks_as_the_folder_index(built, reranker, tiny, docs, postgres):
    pytest.importorskip("psycopg")
    url = postgres.url(f"rerank_{os.getpid()}")
    with Index.build(docs, tiny, url, chunk_tokens=64, overlap=8, overwrite=True) as database:
        assert type(database).__name__ == "PgIndex"
        assert_reranked_by_hand(database, reranker)
        for query in QUERIES:
            a = built.search(query, k=4, filters={"kind": "short"}, rerank=reranker, rerank_depth=9)
            b = database.search(query, k=4, filters={"kind": "short"}, rerank=reranker, rerank_depth=9)
            assert [h.chunk_id for h in a] == [h.chunk_id for h in b]
            assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
            assert np.allclose([h.retrieval_score for h in a], [h.retrieval_score for h in b], atol=1e-4)
        with pytest.raises(InputError, match=r"rerank_depth \(3\) must be at least k \(4\)"):
            database.search("서울", k=4, rerank=reranker, rerank_depth=3)


# --- koe5 search ---------------------------------------------------------------------------------


def invoke(*args):
    return runner.invoke(app, ["--quiet", *map(str, args)])


def test_cli_search_reranks_with_a_folder_and_reports_both_scores(built, reranker, tiny_reranker_dir):
    result = invoke(
        "search", built.folder, "대한민국의 수도", "-k", 3, "--reranker", tiny_reranker_dir, "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reranker"] == reranker.name and doc["rerank_depth"] == 50
    want = built.search("대한민국의 수도", k=3, rerank=reranker)
    assert [h["doc_id"] for h in doc["hits"]] == [h.doc_id for h in want]
    for got, hit in zip(doc["hits"], want, strict=True):
        assert got["score"] == pytest.approx(hit.score, abs=1e-6)
        assert got["retrieval_score"] == pytest.approx(hit.retrieval_score, abs=1e-6)

    shown = invoke(
        "search", built.folder, "서울", "-k", 2, "--reranker", tiny_reranker_dir, "--rerank-depth", 5
    )
    assert shown.exit_code == 0 and " 1. " in shown.stdout and "(first stage " in shown.stdout
    plain = json.loads(invoke("search", built.folder, "서울", "-k", 2, "--json").stdout)
    assert "reranker" not in plain and "retrieval_score" not in plain["hits"][0]


def test_cli_rerank_flag_uses_the_default_reranker(built, tiny_reranker_dir, tmp_path, monkeypatch):
    missing = invoke("search", built.folder, "서울", "--rerank")
    assert missing.exit_code == 2 and "run `koe5 train-reranker`" in missing.output
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path))
    shutil.copytree(tiny_reranker_dir, default_reranker_dir())
    result = invoke("search", built.folder, "서울", "-k", 2, "--rerank", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reranker"] == "koe5-reranker-small"
    assert doc["rerank_weight"] == known_rerankers()["default"].extra["weight"] < 1  # the registry's
    wide = json.loads(invoke("search", built.folder, "서울", "-k", 60, "--rerank", "--json").stdout)
    assert wide["rerank_depth"] == 60  # the CLI's default depth grows with -k


def test_cli_rerank_options_are_checked(built, tiny_reranker_dir):
    result = invoke("search", built.folder, "서울", "--rerank-depth", 20)
    need = "--rerank-depth, --rerank-weight, --rerank-window and --rerank-backend need --rerank"
    assert result.exit_code == 2 and need in result.output
    result = invoke("search", built.folder, "서울", "--rerank-window", 64)
    assert result.exit_code == 2 and need in result.output
    result = invoke("search", built.folder, "서울", "--reranker", tiny_reranker_dir, "--rerank-window", 7)
    assert result.exit_code == 2 and "window must be a whole number of tokens" in result.output
    # a window reads each hit's chunk in parts: the scores are the library's with that window
    windowed = Reranker.load(str(tiny_reranker_dir), device="cpu", window=16)
    want = built.search("서울", k=3, rerank=windowed, rerank_depth=50)
    args = ("--reranker", tiny_reranker_dir, "--rerank-window", 16, "--json")
    doc = json.loads(invoke("search", built.folder, "서울", "-k", 3, *args).stdout)
    assert [h["doc_id"] for h in doc["hits"]] == [h.doc_id for h in want]
    assert [h["score"] for h in doc["hits"]] == pytest.approx([h.score for h in want], abs=1e-5)
    result = invoke("search", built.folder, "서울", "--rerank-weight", 0.5)
    assert result.exit_code == 2 and "need --rerank" in result.output
    result = invoke("search", built.folder, "서울", "--reranker", tiny_reranker_dir, "--rerank-weight", 2)
    assert result.exit_code == 2 and "weight must be a number from 0 to 1, got 2.0" in result.output
    first = json.loads(invoke("search", built.folder, "서울", "-k", 3, "--json").stdout)["hits"]
    weighted = ("--reranker", tiny_reranker_dir, "--rerank-weight", 0)
    result = invoke("search", built.folder, "서울", "-k", 3, *weighted, "--json")
    doc = json.loads(result.stdout)
    assert doc["rerank_weight"] == 0 and [h["doc_id"] for h in doc["hits"]] == [h["doc_id"] for h in first]
    result = invoke("search", built.folder, "서울", "-k", 10, "--rerank", "--rerank-depth", 5)
    assert result.exit_code == 2 and "rerank_depth (5) must be at least k (10)" in result.output


# --- the benchmark -------------------------------------------------------------------------------


def test_cli_search_reranks_with_an_onnx_backend(built, tiny_reranker_dir, tmp_path):
    """--rerank-backend onnx: the exported reranker orders the hits as torch does, and JSON says which ran."""
    pytest.importorskip("onnxruntime")
    import shutil

    from koe5.rerank.export import export_reranker

    folder = tmp_path / "ce"
    shutil.copytree(tiny_reranker_dir, folder)
    export_reranker(str(folder))
    found = {}
    for backend in ("torch", "onnx"):
        args = ("--reranker", folder, "--rerank-backend", backend, "--json")
        doc = json.loads(invoke("search", built.folder, "대한민국의 수도", "-k", 5, *args).stdout)
        assert doc["rerank_backend"] == backend
        found[backend] = [(h["doc_id"], round(h["score"], 4)) for h in doc["hits"]]
    assert found["onnx"] == found["torch"]
    result = invoke("search", built.folder, "서울", "--rerank-backend", "onnx")
    assert result.exit_code == 2 and "--rerank-backend need --rerank" in result.output  # the list's end


@pytest.fixture(scope="module")
def small_task(sample_texts):
    """The Korean sample as a corpus (one document with a title) and four questions about it."""
    corpus = {f"d{i}": {"title": "", "text": text} for i, text in enumerate(sample_texts)}
    corpus["d1"]["title"] = "수도"
    queries = {"q0": "대한민국의 수도", "q1": "항구 도시", "q2": "보건 서비스 신청", "q3": "한자 표기"}
    qrels = [("q0", "d1", 1), ("q1", "d2", 1), ("q2", "d13", 1), ("q3", "d7", 1)]
    return assemble(corpus, queries, qrels, origin="the Korean sample")


def test_rerank_retriever_reorders_exactly_the_first_stage_s_best(small_task, reranker, tiny_reranker_dir):
    data = small_task
    bm25 = BM25Retriever()
    first = bm25.rank(data, 6)
    retriever = RerankRetriever(bm25, reranker, depth=6)
    assert retriever.name == f"bm25-kiwi+rerank-{tiny_reranker_dir.name}-d6"  # a folder: its last part
    run = retriever.rank(data, 10)
    for qid, query in data.queries.items():
        docs = list(first[qid])
        assert set(run[qid]) == set(docs)
        texts = [data.doc_text(d) for d in docs]
        scores = reranker.score(query, texts)
        order = sorted(range(len(docs)), key=lambda i: -scores[i])
        assert list(run[qid]) == [docs[i] for i in order]
        assert np.allclose([run[qid][docs[i]] for i in order], scores[order], atol=1e-6)
    top2 = retriever.rank(data, 2)
    assert all(list(top2[q]) == list(run[q])[:2] for q in data.queries)
    blended = RerankRetriever(bm25, Reranker.load(str(tiny_reranker_dir), device="cpu", weight=0.0), depth=6)
    assert blended.name == f"bm25-kiwi+rerank-{tiny_reranker_dir.name}-d6-w0"  # a row of its own
    assert all(list(blended.rank(data, 10)[q]) == list(first[q]) for q in data.queries)  # BM25's order
    assert 0 <= evaluate_split(retriever, data, ks=(1, 5))["ndcg_at_5"] <= 1


def test_rerank_retriever_sorts_the_first_stage_and_skips_queries_without_candidates(small_task):
    data = small_task
    ids = list(data.corpus)

    def unsorted(data, k):  # a run need not be best first: the reranked set is the k best by score
        return {q: {ids[i]: float(i) for i in range(len(ids))} for q in list(data.queries)[1:]}

    recorder = Recorder()
    run = RerankRetriever(FunctionRetriever("f", unsorted), recorder, depth=3).rank(data, 10)
    first_query = next(iter(data.queries))
    assert run[first_query] == {}
    assert all(set(run[q]) == set(ids[-3:]) for q in list(data.queries)[1:])
    assert recorder.texts == [data.doc_text(d) for d in reversed(ids[-3:])]
    with pytest.raises(InputError, match="depth must be a positive integer"):
        RerankRetriever(BM25Retriever(), recorder, depth=0)


def test_cli_bench_files_a_reranked_retriever_under_its_own_row(tiny_model_dir, tiny_reranker_dir, tmp_path):
    folder = tmp_path / "mini-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = {"d1": "서울은 대한민국의 수도이다.", "d2": "부산은 항구 도시이다.", "d3": "김치는 배추로 만든다."}
    corpus = [{"_id": k, "title": "", "text": v} for k, v in docs.items()]
    queries = [{"_id": "q1", "text": "한국의 수도는?"}, {"_id": "q2", "text": "김치 재료"}]
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    out = tmp_path / "out"
    kinds = f"hybrid,hybrid+rerank:{tiny_reranker_dir},bm25+rerank:{tiny_reranker_dir}"
    args = [
        "bench",
        "-m",
        tiny_model_dir,
        "-t",
        folder,
        "-o",
        out,
        "-r",
        kinds,
        "--rerank-depth",
        2,
        "--json",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["retrievers"]
    hybrid = rows[0]
    assert rows[1:] == [
        f"{hybrid}+rerank-{tiny_reranker_dir.name}-d2",
        f"koe5/bm25-kiwi+rerank-{tiny_reranker_dir.name}-d2",
    ]
    for row in rows:
        saved = json.loads((out / row / "mini-beir.json").read_text(encoding="utf-8"))
        assert saved["koe5_retriever"] == row

    for bad in ("hybrid+rerankx", "hybrid+rerank:", "sparse+rerank"):
        refused = invoke("bench", "-t", folder, "-r", bad)
        assert refused.exit_code == 2 and "+rerank:MODEL" in refused.output, bad
    refused = invoke("bench", "-t", folder, "-r", "bm25+rerank", "--rerank-depth", 0)
    assert refused.exit_code == 2 and "--rerank-depth must be at least 1" in refused.output
    # a reranker reading windows scores differently: a row of its own
    windowed = ["-r", f"bm25+rerank:{tiny_reranker_dir}", "--rerank-depth", 2, "--rerank-window", 16]
    result = invoke("bench", "-m", tiny_model_dir, "-t", folder, "-o", out, *windowed, "--json")
    assert result.exit_code == 0, result.output
    row = f"koe5/bm25-kiwi+rerank-{tiny_reranker_dir.name}-d2-win16"
    assert json.loads(result.stdout)["retrievers"] == [row]
    # another backend scores differently, so its results go under a row of their own
    pytest.importorskip("onnxruntime")
    import shutil

    from koe5.rerank.export import export_reranker

    exported = tmp_path / "ce-onnx"
    shutil.copytree(tiny_reranker_dir, exported)
    export_reranker(str(exported))
    onnx = ["-r", f"bm25+rerank:{exported}", "--rerank-depth", 2, "--rerank-backend", "onnx", "--json"]
    result = invoke("bench", "-t", folder, "-o", out, *onnx)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["retrievers"] == ["koe5/bm25-kiwi+rerank-ce-onnx-d2-onnx"]


def test_rerank_labels_name_the_weight_and_the_backend():
    from koe5.evaluation.retrievers import rerank_label

    assert rerank_label("koe5/hybrid", "a/b-reranker", 50) == "koe5/hybrid+rerank-b-reranker-d50"
    assert rerank_label("koe5/hybrid", "r", 20, 0.2) == "koe5/hybrid+rerank-r-d20-w0.2"
    assert rerank_label("koe5/hybrid", "r", 20, 0.2, "onnx-int8") == "koe5/hybrid+rerank-r-d20-w0.2-onnx-int8"
    assert rerank_label("koe5/hybrid", "r", 20, 0.3, "torch", 128) == "koe5/hybrid+rerank-r-d20-w0.3-win128"
