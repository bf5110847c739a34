"""Reranker backends: the ONNX exports (fp32, int8), ``auto`` and its quality gate, on the tiny reranker."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from koe5.cli import app
from koe5.errors import ModelError
from koe5.rerank import Reranker
from koe5.runtime.onnx_runner import onnx_dir
from koe5.runtime.select import CHOICE_FILE

pytest.importorskip("onnxruntime")

QUERY = "한국의 수도는 어디인가요?"
TEXTS = [
    "서울은 대한민국의 수도이다.",
    "부산은 항구 도시이다.",
    "제주도의 한라산은 겨울에 눈이 많이 내린다.",
    "서울",
    "대한민국의 수도 서울에는 많은 사람이 산다. " * 8,
]


@pytest.fixture(scope="module")
def exported(tiny_reranker_dir, tmp_path_factory):
    """A copy of the tiny reranker with both ONNX exports (the shared fixture stays torch-only)."""
    from koe5.rerank.export import export_reranker

    folder = tmp_path_factory.mktemp("rerank-onnx") / "tiny-ce"
    shutil.copytree(tiny_reranker_dir, folder)
    assert export_reranker(str(folder), int8=True) == folder
    return folder


def test_onnx_scores_as_torch(exported):
    torch_scores = Reranker.load(str(exported)).score(QUERY, TEXTS, raw=True)
    onnx = Reranker.load(str(exported), backend="onnx")
    assert onnx.backend == "onnx" and onnx.cross_encoder is None and onnx.device == "cpu"
    np.testing.assert_allclose(onnx.score(QUERY, TEXTS, raw=True), torch_scores, atol=1e-4)
    # activation, ranking and counts are the model's, whatever runs it
    stats = onnx.score_with_stats(QUERY, TEXTS)
    assert stats.tokens > 0 and np.all((stats.scores > 0) & (stats.scores < 1))
    int8 = Reranker.load(str(exported), backend="onnx-int8")
    quantised = int8.score(QUERY, TEXTS, raw=True)
    # int8 weights change the logits (how much it costs in NDCG@10 is the gate's measurement, on a real
    # model: the tiny one's random head spreads its five logits over 0.03, inside int8's rounding)
    assert int8.backend == "onnx-int8" and not np.allclose(quantised, torch_scores, atol=1e-6)
    assert quantised.shape == torch_scores.shape and np.all(np.abs(quantised - torch_scores) < 1)
    files = onnx_dir(exported)
    assert (files / "model_qint8.onnx").stat().st_size < (files / "model.onnx").stat().st_size
    assert not list(files.glob(".export-*")) and not list(files.glob("*.tmp*"))


def test_auto_reads_the_gate_s_choice(exported):
    path = onnx_dir(exported) / CHOICE_FILE
    assert Reranker.load(str(exported), backend="auto").backend == "torch"  # nothing recorded yet
    try:
        path.write_text(json.dumps({"auto": {"pairs": "onnx-int8"}}))
        assert Reranker.load(str(exported), backend="auto").backend == "onnx-int8"
        path.write_text(json.dumps({"auto": {"pairs": "tensorrt"}}))
        with pytest.raises(ModelError, match=r"auto\.pairs is 'tensorrt'"):
            Reranker.load(str(exported), backend="auto")
    finally:
        path.unlink(missing_ok=True)


def test_backend_errors_name_the_problem(exported, tiny_reranker_dir, tiny_model_dir, tmp_path):
    from koe5.rerank.backends import runner_name
    from koe5.rerank.export import export_reranker

    with pytest.raises(ModelError, match="unknown reranker backend 'tensorrt'; available: torch, onnx"):
        Reranker.load(str(exported), backend="tensorrt")
    with pytest.raises(ModelError, match="koe5 export NAME --reranker --onnx"):
        Reranker.load(str(tiny_reranker_dir), backend="onnx")  # a folder never exported
    with pytest.raises(ModelError, match=r"ONNX export of some/hub-id.*koe5 export some/hub-id --reranker"):
        runner_name("onnx", "some/hub-id", "some/hub-id", local=False)
    assert runner_name("auto", "some/hub-id", "some/hub-id", local=False) == "torch"  # nothing recorded
    with pytest.raises(ModelError, match="runs on the CPU, not 'cuda'"):
        Reranker.load(str(exported), backend="onnx", device="cuda")
    with pytest.raises(ModelError, match="cannot be saved: load it with backend='torch'"):
        Reranker.load(str(exported), backend="onnx").save(tmp_path / "copy")
    embedding = tmp_path / "embedding"
    shutil.copytree(tiny_model_dir, embedding)
    with pytest.raises(ModelError, match="an embedding model"):
        export_reranker(str(embedding))
    assert not onnx_dir(embedding).exists()  # refused before anything was written


def test_a_hub_reranker_runs_from_the_copy_koe5_export_made(exported, tmp_path, monkeypatch):
    """`koe5 export HUB_ID --reranker` saves the hub reranker in koe5's cache and exports it there; an
    ONNX backend of the same hub id then loads that copy, offline, under the hub id's name."""
    from koe5.env import hub_copy

    monkeypatch.setenv("KOE5_CACHE", str(tmp_path))
    shutil.copytree(exported, hub_copy("someone/tiny-ce"))
    onnx = Reranker.load("someone/tiny-ce", backend="onnx")
    assert onnx.backend == "onnx" and onnx.name == "someone/tiny-ce"
    assert onnx.location == str(tmp_path / "models" / "someone--tiny-ce")
    expected = Reranker.load(str(exported), backend="onnx").score(QUERY, TEXTS, raw=True)
    np.testing.assert_allclose(onnx.score(QUERY, TEXTS, raw=True), expected)


def test_weights_beyond_one_onnx_file_go_beside_it(exported, tmp_path, monkeypatch):
    """A model over ONNX's 2 GiB file limit (XLM-R large) keeps its weights in model.onnx.data: the
    export writes both, moves the graph in last, and both exports still load and score."""
    from koe5.rerank.export import export_reranker
    from koe5.runtime import export

    folder = tmp_path / "large"
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 0)
    export_reranker(str(folder), int8=True)
    files = sorted(p.name for p in onnx_dir(folder).iterdir())
    assert files == ["model.onnx", "model.onnx.data", "model_qint8.onnx"]
    expected = Reranker.load(str(exported), backend="onnx").score(QUERY, TEXTS, raw=True)
    outside = Reranker.load(str(folder), backend="onnx").score(QUERY, TEXTS, raw=True)
    np.testing.assert_allclose(outside, expected)
    assert Reranker.load(str(folder), backend="onnx-int8").score(QUERY, TEXTS).shape == (len(TEXTS),)


def test_a_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    import torch

    from koe5.rerank.export import export_reranker

    folder = tmp_path / "broken"
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("onnx"))

    def half_then_fail(module, args, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a graph")
        raise RuntimeError("killed")

    monkeypatch.setattr(torch.onnx, "export", half_then_fail)
    with pytest.raises(RuntimeError, match="killed"):
        export_reranker(str(folder))
    assert list(onnx_dir(folder).iterdir()) == []  # no model.onnx, no temporary folder


def test_the_gate_measures_each_backend_and_records_auto(exported, monkeypatch):
    from koe5.rerank.export import choose_reranker_backends
    from koe5.runtime import export

    path = onnx_dir(exported) / CHOICE_FILE
    try:
        monkeypatch.setattr(export, "cpu_has_native_bf16", lambda: True)
        how = {"tasks": ("PublicHealthQA",), "queries": 4, "depth": 5}
        report = choose_reranker_backends(exported, **how)
        assert set(report["backends"]) == {"torch", "torch-bf16", "onnx", "onnx-int8"}
        reference = report["backends"]["torch"]["ndcg_at_10"]
        assert report["backends"]["onnx"]["ndcg_at_10"] == pytest.approx(reference, abs=1e-4)
        for entry in report["backends"].values():
            assert 0 <= entry["ndcg_at_10"] <= 1 and entry["pairs_per_s"] > 0 and entry["tokens_per_s"] > 0
            assert entry["passes_gate"] == (entry["ndcg_at_10"] >= reference - export.GATE)
        chosen = report["auto"]["pairs"]
        passing = [e["pairs_per_s"] for e in report["backends"].values() if e["passes_gate"]]
        assert report["backends"][chosen]["pairs_per_s"] == max(passing)
        assert json.loads(path.read_text())["auto"] == report["auto"]
        assert Reranker.load(str(exported), backend="auto").backend == chosen
        monkeypatch.setattr(export, "cpu_has_native_bf16", lambda: False)
        report = choose_reranker_backends(exported, backends=("onnx-int8",), **how)
        assert set(report["backends"]) == {"torch", "onnx-int8"}  # emulated bf16 is slow: not a candidate
    finally:
        path.unlink(missing_ok=True)


def test_cli_export_rerank_and_search_with_a_backend(exported, tmp_path):
    runner = CliRunner()
    args = ["--quiet", "export", str(exported), "--reranker", "--onnx", "--no-gate", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"folder": str(exported), "report": None}
    lines = "\n".join(TEXTS) + "\n"
    orders = {}
    for backend in ("torch", "onnx"):
        args = ["--quiet", "rerank", QUERY, "--model", str(exported), "--backend", backend, "--json"]
        result = runner.invoke(app, args, input=lines)
        assert result.exit_code == 0, result.output
        orders[backend] = [row["index"] for row in json.loads(result.stdout)]
    assert orders["onnx"] == orders["torch"] and sorted(orders["onnx"]) == list(range(len(TEXTS)))
    result = runner.invoke(app, ["rerank", QUERY, "--model", str(exported), "--backend", "gpu"], input=lines)
    assert result.exit_code == 2 and "unknown reranker backend 'gpu'" in result.output
