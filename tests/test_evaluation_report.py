"""The `koe5 bench --json` document, built by the library from a benchmark run."""

from __future__ import annotations

import json

from koe5.evaluation import FunctionRetriever, evaluate_tasks
from koe5.evaluation.report import bench_document


def oracle(data, top_k):
    """Ranks each query's relevant documents first, by grade."""
    return {q: {d: float(g) for d, g in data.qrels[q].items()} for q in data.queries}


def test_bench_document_of_two_retrievers(tmp_path):
    results = {
        row: evaluate_tasks(FunctionRetriever(row, rank), ["PublicHealthQA"], output_dir=tmp_path, label=row)
        for row, rank in (("me/oracle", oracle), ("me/empty", lambda data, k: {}))
    }
    doc = bench_document(
        results,
        model="me/oracle",
        ks=[1, 10],
        path="/models/x",
        seconds=12.34,
        encoded=7,
        output_dir=tmp_path,
    )
    assert list(doc) == [
        "model",
        "path",
        "retrievers",
        "seconds",
        "encoded_texts",
        "results_dir",
        "tables",
        "ndcg_at_10",
        "tasks",
        "by_retriever",
    ]
    assert doc["model"] == "me/oracle" and doc["path"] == "/models/x"
    assert doc["retrievers"] == ["me/oracle", "me/empty"]
    assert doc["seconds"] == 12.3 and doc["encoded_texts"] == 7
    assert doc["results_dir"] == str(tmp_path / "me/oracle")
    assert doc["tables"]["tasks"] == ["PublicHealthQA"] and list(doc["tables"]["top_k"]) == ["1", "10"]
    best = {row["model"]: row["ndcg"] for row in doc["tables"]["top_k"]["10"]}
    assert best == {"me/oracle": 1.0, "me/empty": 0.0}
    assert doc["ndcg_at_10"] == {"me/oracle": {"PublicHealthQA": 1.0}, "me/empty": {"PublicHealthQA": 0.0}}
    assert doc["tasks"] == {"PublicHealthQA": results["me/oracle"]["PublicHealthQA"]["scores"]}
    assert (
        doc["by_retriever"]["me/empty"]["PublicHealthQA"] == results["me/empty"]["PublicHealthQA"]["scores"]
    )
    json.dumps(doc)  # plain data


def test_bench_document_defaults(tmp_path):
    results = {"me/oracle": evaluate_tasks(FunctionRetriever("me/oracle", oracle), ["PublicHealthQA"])}
    doc = bench_document(results, model="me/oracle", ks=[10])
    assert doc["path"] is None and doc["seconds"] == 0.0 and doc["encoded_texts"] == 0
    assert doc["results_dir"] == "results/me/oracle"
