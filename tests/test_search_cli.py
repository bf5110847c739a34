"""`koe5 index build/add/delete/info`, `koe5 search` and `koe5 bench --retrievers`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from koe5.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["--quiet", *map(str, args)])


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory, sample_texts):
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    rows = [{"id": f"d{i}", "text": t, "year": 2020 + i % 3} for i, t in enumerate(sample_texts)]
    rows.append({"id": "blank", "text": "   "})
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_help():
    for cmd in (["index"], ["index", "build"], ["index", "add"], ["index", "delete"], ["search"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_build_search_add_delete(docs_file, tiny_model_dir, tmp_path):
    index = tmp_path / "idx"
    result = invoke("index", "build", docs_file, "-o", index, "--model", tiny_model_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents"] == 15 and report["skipped"] == {"empty documents": 1}
    assert report["counts"]["documents"] == 15 and report["dense"] == "exact"

    result = invoke("search", index, "대한민국의 수도", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3 and {"doc_id", "score", "chunk_id", "text", "title", "metadata"} <= set(hits[0])

    result = invoke("search", index, "대한민국", "--mode", "bm25", "--filter", "year=2021", "--json")
    assert {h["metadata"]["year"] for h in json.loads(result.stdout)["hits"]} == {2021}

    result = invoke("search", index, "서울 수도", "--mode", "bm25")
    assert result.exit_code == 0 and " 1. " in result.stdout and "d1" in result.stdout

    result = invoke("search", index, "서울 수도", "--fusion", "rrf", "--dense-weight", "0.7", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["hits"]) == 10
    result = invoke("search", index, "서울", "--dense-weight", "2")
    assert result.exit_code == 2 and "between 0 and 1" in result.output

    result = invoke("search", index, "?!", "--mode", "bm25")
    assert result.exit_code == 0 and "no results" in result.stdout

    more = tmp_path / "more.csv"
    more.write_text("id,text\nn1,인천에는 국제공항이 있다.\n", encoding="utf-8")
    result = invoke("index", "add", index, more, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["documents"] == 16

    result = invoke("index", "delete", index, "d1", "n1")
    assert result.exit_code == 0 and "deleted 2 documents; 14 left" in result.stdout
    result = invoke("index", "delete", index, "d1")
    assert result.exit_code == 2 and "not in the index: 'd1'" in result.output

    result = invoke("index", "info", index)
    assert result.exit_code == 0 and "documents   14" in result.stdout
    # a new index keeps the default fusion: a weight per query from the lists' peaks and the coverage
    from koe5.search.hybrid import DEFAULT_FUSION

    low, high = DEFAULT_FUSION.adaptive
    expected = f"{DEFAULT_FUSION.method}, dense weight {low:g}-{high:g} by query (from the lists' peaks"
    assert expected in result.stdout


def test_clear_errors(docs_file, tiny_model_dir, tmp_path):
    result = invoke("search", tmp_path / "missing", "질문")
    assert result.exit_code == 2 and "no such index folder" in result.output
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "a.txt").write_text("x")
    result = invoke("search", tmp_path / "foreign", "질문")
    assert result.exit_code == 2 and "not a koe5 index" in result.output
    bad = tmp_path / "euckr.jsonl"
    bad.write_bytes("한국어".encode("euc-kr"))
    result = invoke("index", "build", bad, "-o", tmp_path / "x", "--model", tiny_model_dir)
    assert result.exit_code == 2 and "euckr.jsonl:1: not valid UTF-8" in result.output
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "가"}\n{"id": "a", "text": "나"}\n', encoding="utf-8")
    result = invoke("index", "build", dup, "-o", tmp_path / "y", "--model", tiny_model_dir)
    assert result.exit_code == 2 and f"duplicate document id 'a': {dup}:2 and {dup}:1" in result.output
    result = invoke(
        "index", "build", docs_file, "-o", tmp_path / "z", "--model", tiny_model_dir, "--ann", "ivf"
    )
    assert result.exit_code == 2 and "auto, exact or hnsw" in result.output


def test_bench_reports_each_retriever(tiny_model_dir, tmp_path):
    result = invoke(
        "bench",
        "--model",
        tiny_model_dir,
        "--tasks",
        "PublicHealthQA",
        "--retrievers",
        "dense,bm25,hybrid",
        "-o",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = doc["retrievers"]
    assert rows[1] == "koe5/bm25-kiwi" and rows[2].startswith("koe5/hybrid-")
    assert set(doc["ndcg_at_10"]) == set(rows)
    assert all(set(v) == {"PublicHealthQA"} for v in doc["ndcg_at_10"].values())
    assert {r["model"] for r in doc["tables"]["top_k"]["10"]} == set(rows)
    for row in rows:
        assert (tmp_path / row / "PublicHealthQA.json").exists()
    result = invoke("bench", "--tasks", "PublicHealthQA", "--retrievers", "bm25,sparse")
    assert result.exit_code == 2 and "--retrievers takes dense, bm25, hybrid" in result.output


def test_unknown_filter_keys_are_said_and_unreadable_files_counted(docs_file, tiny_model_dir, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("서울은 대한민국의 수도이다.", encoding="utf-8")
    (folder / "b.txt").write_bytes("café".encode("latin-1"))
    built = invoke("index", "build", folder, "-o", tmp_path / "idx", "-m", tiny_model_dir, "--json")
    assert built.exit_code == 0, built.output
    report = json.loads(built.stdout)
    assert report["skipped"] == {"files that are not valid UTF-8": 1}
    assert report["counts"]["skipped"] == {"files that are not valid UTF-8": 1}
    found = invoke("search", tmp_path / "idx", "수도", "--filter", "nokey=x", "--json")
    doc = json.loads(found.stdout)
    assert doc["hits"] == [] and doc["warnings"] == [
        "no document has the metadata key 'nokey': its filter matches nothing"
    ]
    shown = invoke("search", tmp_path / "idx", "수도", "--filter", "nokey=x")
    assert "warning: no document has the metadata key 'nokey'" in shown.output
    known = json.loads(invoke("search", tmp_path / "idx", "수도", "--filter", "path=a.txt", "--json").stdout)
    assert [h["doc_id"] for h in known["hits"]] == ["a.txt"] and "warnings" not in known


def test_fusion_flags_keep_or_replace_the_indexs_per_query_weight():
    from types import SimpleNamespace

    from koe5.cli.search import _fusion
    from koe5.search.hybrid import DEFAULT_FUSION

    index = SimpleNamespace(manifest={"fusion": DEFAULT_FUSION.to_dict()})
    assert _fusion(index, None, None) is None  # the index's own
    other = "minmax" if DEFAULT_FUSION.method == "dbsf" else "dbsf"
    rescaled = _fusion(index, other, None)  # another scaling, the same per-query weight
    assert rescaled.method == other and (rescaled.adaptive, rescaled.confidence) == (
        DEFAULT_FUSION.adaptive,
        DEFAULT_FUSION.confidence,
    )
    fixed = _fusion(index, None, 0.6)  # a fixed weight replaces it
    assert fixed.weight == 0.6 and fixed.adaptive is None and fixed.confidence is None
