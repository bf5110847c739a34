"""Benchmark runner: any retriever, MTEB result files, embedding cache, `koe5 bench` / `leaderboard`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from koe5.cli import app
from koe5.embcache import EmbeddingCache, encode_cached, model_fingerprint
from koe5.evaluation import DenseRetriever, FunctionRetriever, evaluate_tasks
from koe5.evaluation.leaderboard import collect
from koe5.tasks import get_task

runner = CliRunner()


def oracle(data, top_k):
    """Ranks each query's relevant documents first, by grade."""
    return {q: {d: float(g) for d, g in data.qrels[q].items()} for q in data.queries}


def test_any_ranking_function_can_be_benchmarked(tmp_path):
    results = evaluate_tasks(FunctionRetriever("oracle", oracle), ["PublicHealthQA"], output_dir=tmp_path)
    scores = results["PublicHealthQA"]["scores"]["test"][0]
    assert scores["ndcg_at_10"] == scores["recall_at_10"] == scores["main_score"] == 1.0
    assert scores["precision_at_1"] == 1.0 and scores["f1_at_1"] == 1.0

    nothing = evaluate_tasks(FunctionRetriever("empty", lambda data, k: {}), ["PublicHealthQA"])
    assert nothing["PublicHealthQA"]["scores"]["test"][0]["ndcg_at_10"] == 0.0


def test_result_files_are_mteb_shaped_and_read_by_the_leaderboard(tmp_path):
    evaluate_tasks(
        FunctionRetriever("oracle", oracle), ["PublicHealthQA"], output_dir=tmp_path, label="me/oracle"
    )
    doc = json.loads((tmp_path / "me" / "oracle" / "PublicHealthQA.json").read_text())
    assert doc["task_name"] == "PublicHealthQA" and doc["mteb_version"] == "1.20.1"
    entry = doc["scores"]["test"][0]
    assert entry["hf_subset"] == "korean" and entry["main_score"] == 1.0
    assert {
        f"{m}_at_{k}" for m in ("ndcg", "recall", "precision", "map", "mrr") for k in (1, 10, 1000)
    } <= set(entry)
    assert collect([tmp_path])["me/oracle"]["PublicHealthQA"]["task_name"] == "PublicHealthQA"


def test_dense_retriever_matches_brute_force(tiny):
    data = get_task("PublicHealthQA").load()
    run = DenseRetriever(tiny).rank(data, top_k=5)
    qid = next(iter(data.queries))
    q = tiny.encode_queries([data.queries[qid]])[0]
    docs = tiny.encode_passages([data.doc_text(d) for d in data.corpus])
    best = np.argsort(-(docs @ q))[:5]
    assert list(run[qid]) == [list(data.corpus)[i] for i in best]


def test_embedding_cache_second_run_encodes_nothing(tiny, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    first = DenseRetriever(tiny, cache=cache)
    a = evaluate_tasks(first, ["PublicHealthQA"])
    assert first.encoded == 154  # 77 documents + 77 queries
    second = DenseRetriever(tiny, cache=cache)
    b = evaluate_tasks(second, ["PublicHealthQA"])
    assert second.encoded == 0
    assert a["PublicHealthQA"]["scores"] == b["PublicHealthQA"]["scores"]


def test_cache_keys_on_model_and_prefix(tiny, tiny_model_dir, tmp_path):
    import koe5

    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    texts = ["서울은 대한민국의 수도이다.", "부산은 항구 도시이다."]
    vectors, n = encode_cached(tiny, texts, "passage", cache)
    assert n == 2
    again, n = encode_cached(tiny, [texts[1], "새 문장"], "passage", cache)
    assert n == 1
    np.testing.assert_array_equal(again[0], vectors[1])
    other = koe5.load(str(tiny_model_dir), device="cpu", passage_prefix="")
    assert model_fingerprint(other) != model_fingerprint(tiny)
    _, n = encode_cached(other, texts, "passage", cache)
    assert n == 2


def test_cli_bench_json_then_cached(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path / "cache"))  # an embedding cache of its own
    args = ["--quiet", "bench", "--model", str(tiny_model_dir), "--tasks", "PublicHealthQA", "--json"]
    args += ["--output-dir", str(tmp_path)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["encoded_texts"] == 154
    ndcg = doc["tasks"]["PublicHealthQA"]["test"][0]["ndcg_at_10"]
    assert 0 < ndcg <= 1
    row = doc["tables"]["top_k"]["10"][0]
    assert row["ndcg"] == pytest.approx(ndcg, abs=1e-5)
    assert (tmp_path / "local" / tiny_model_dir.name / "PublicHealthQA.json").is_file()

    second = json.loads(runner.invoke(app, args).stdout)
    assert second["encoded_texts"] == 0
    assert second["tasks"] == doc["tasks"]


def test_cli_bench_tables(tiny_model_dir, tmp_path):
    args = [
        "--quiet",
        "bench",
        "-m",
        str(tiny_model_dir),
        "-t",
        "PublicHealthQA",
        "-o",
        str(tmp_path),
        "--k",
        "1,10",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "### Top-k 1" in result.stdout and "### Top-k 10" in result.stdout
    assert "Average F1@10" in result.stdout and "NDCG@10 per task" in result.stdout


def test_cli_bench_bad_task(tiny_model_dir, tmp_path):
    result = runner.invoke(
        app, ["--quiet", "bench", "-m", str(tiny_model_dir), "-t", "NoSuchTask", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "NoSuchTask" in result.output and "AutoRAGRetrieval" in result.output


def test_cli_leaderboard_reproduces_the_card(tmp_path):
    from pathlib import Path

    ref = Path(__file__).parent / "data" / "kure_results"
    result = runner.invoke(app, ["leaderboard", str(ref)])
    assert result.exit_code == 0, result.output
    # KoE5's row of the KoE5/KURE card at top-k 1: Recall, Precision, NDCG, F1
    assert "| nlpai-lab/KoE5 | 0.50157 | 0.57790 | 0.57790 | 0.53178 |" in result.stdout
    as_csv = runner.invoke(app, ["leaderboard", str(ref), "--format", "csv", "--k", "10"])
    assert as_csv.stdout.splitlines()[0] == "top_k,model,recall,precision,ndcg,f1"
    as_json = json.loads(runner.invoke(app, ["leaderboard", str(ref), "-f", "json"]).stdout)
    assert as_json["top_k"]["1"][0]["model"] == "nlpai-lab/KURE-v1"
    empty = runner.invoke(app, ["leaderboard", str(tmp_path)])
    assert empty.exit_code == 2 and "no MTEB result files" in empty.output


def test_cli_bench_on_a_beir_folder(tiny_model_dir, tmp_path):
    folder = tmp_path / "mini-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = {"d1": "서울은 대한민국의 수도이다.", "d2": "부산은 항구 도시이다.", "d3": "김치는 배추로 만든다."}
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": k, "title": "", "text": v}, ensure_ascii=False) + "\n" for k, v in docs.items()
        ),
        encoding="utf-8",
    )
    queries = {"q1": "한국의 수도는?", "q2": "김치 재료"}
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in queries.items()),
        encoding="utf-8",
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    out = tmp_path / "out"
    args = ["--quiet", "bench", "-m", str(tiny_model_dir), "-t", str(folder), "-o", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["tasks"]["mini-beir"]["test"][0]
    assert scores["recall_at_3"] == 1.0  # three documents: every relevant one is in the top 3
    assert (out / "local" / tiny_model_dir.name / "mini-beir.json").is_file()


def test_cli_bench_any_positive_cut_off(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path / "cache"))
    args = ["--quiet", "bench", "-m", str(tiny_model_dir), "-t", "PublicHealthQA", "-o", str(tmp_path)]
    result = runner.invoke(app, [*args, "--k", "7,10", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    scores = doc["tasks"]["PublicHealthQA"]["test"][0]
    assert 0 < scores["recall_at_7"] <= scores["recall_at_10"]  # computed at 7, beside MTEB's cut-offs
    assert {"recall_at_1000", "ndcg_at_10", "main_score"} <= set(scores)
    assert doc["tables"]["top_k"]["7"][0]["recall"] == pytest.approx(scores["recall_at_7"], abs=1e-5)
    board = runner.invoke(app, ["leaderboard", str(tmp_path), "--k", "7"])
    assert board.exit_code == 0 and "Top-k 7" in board.stdout, board.output
    refused = runner.invoke(app, [*args, "--k", "0"])
    assert refused.exit_code == 2 and "--k needs positive integers" in refused.output


def test_a_killed_encoding_resumes_from_the_pieces_already_cached(tiny, tmp_path, monkeypatch):
    from koe5 import embcache

    monkeypatch.setattr(embcache, "SAVE_EVERY", 4)
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    texts = [f"문장 {i}번은 서울에 관한 것이다." for i in range(10)]
    real = tiny.encode
    calls = []

    def dies_on_the_third_piece(batch, kind, **kw):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(batch, kind, **kw)

    monkeypatch.setattr(tiny, "encode", dies_on_the_third_piece)
    with pytest.raises(KeyboardInterrupt):
        encode_cached(tiny, texts, "passage", cache)
    monkeypatch.setattr(tiny, "encode", real)
    vectors, n = encode_cached(tiny, texts, "passage", cache)
    assert calls[:2] == [4, 4] and n == 2  # only the piece that never finished is encoded again
    np.testing.assert_allclose(vectors, tiny.encode(texts, "passage"), atol=1e-5)
