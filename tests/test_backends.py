"""Token-budget batching, ONNX backends (fp32, int8), `auto`, and the quality gate."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import koe5
from koe5.batching import length_sorted_batches, token_cost
from koe5.cli import app
from koe5.errors import ModelError
from koe5.runtime.onnx_runner import onnx_dir
from koe5.runtime.select import CHOICE_FILE

pytest.importorskip("onnxruntime")


def test_token_budget_batches():
    lengths = [400, 20, 390, 25, 18, 380, 22]
    batches = length_sorted_batches(lengths, batch_size=64, max_tokens=900)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:  # every batch within budget, unless one input alone exceeds it
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or token_cost(len(batch), longest) <= 900
    assert [len(b) for b in batches] == [1, 1, 2, 3]  # the longest alone, short ones together
    assert [len(b) for b in length_sorted_batches(lengths, batch_size=2)] == [2, 2, 2, 1]
    with pytest.raises(ValueError, match="max_tokens"):
        length_sorted_batches(lengths, 8, max_tokens=0)


def test_budget_does_not_change_vectors(tiny, sample_texts):
    small = tiny.encode_passages(sample_texts, max_tokens=64)
    large = tiny.encode_passages(sample_texts, max_tokens=100_000, batch_size=128)
    np.testing.assert_allclose(small, large, atol=1e-5)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    from koe5.runtime.export import export_onnx

    folder = tmp_path_factory.mktemp("onnx") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    export_onnx(str(folder), int8=True)
    return folder


def test_onnx_matches_torch(exported, tiny, sample_texts):
    onnx = koe5.load(str(exported), backend="onnx")
    assert onnx.backend == "onnx" and onnx.dim == tiny.dim and onnx.max_length == 512
    for kind in ("query", "passage"):
        a = onnx.encode(sample_texts, kind)
        b = tiny.encode(sample_texts, kind)
        assert np.sum(a * b, axis=1).min() > 0.9999


def test_int8_is_close_and_different(exported, tiny, sample_texts):
    int8 = koe5.load(str(exported), backend="onnx-int8")
    a = int8.encode_queries(sample_texts)
    b = tiny.encode_queries(sample_texts)
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.95 and cos.max() < 0.99999  # quantised: close, not identical
    assert (onnx_dir(exported) / "model_qint8.onnx").stat().st_size < (
        onnx_dir(exported) / "model.onnx"
    ).stat().st_size


def test_auto_reads_the_recorded_choice(exported, tiny, sample_texts):
    plain = koe5.load(str(exported), backend="auto")
    assert plain.backend == "torch"  # nothing measured yet
    path = onnx_dir(exported) / CHOICE_FILE
    path.write_text(json.dumps({"auto": {"query": "onnx-int8", "passage": "torch"}}))
    try:
        auto = koe5.load(str(exported), backend="auto")
        assert auto.backend == "passage=torch,query=onnx-int8"
        int8 = koe5.load(str(exported), backend="onnx-int8")
        np.testing.assert_allclose(
            auto.encode_queries(sample_texts), int8.encode_queries(sample_texts), atol=1e-6
        )
        np.testing.assert_allclose(
            auto.encode_passages(sample_texts), tiny.encode_passages(sample_texts), atol=1e-5
        )
    finally:
        path.unlink()


def test_auto_may_choose_torch_in_bf16_for_a_kind(exported, tiny, sample_texts):
    from koe5.embcache import model_fingerprint

    path = onnx_dir(exported) / CHOICE_FILE
    try:
        path.write_text(json.dumps({"auto": {"query": "torch", "passage": "torch-bf16"}}))
        mixed = koe5.load(str(exported), backend="auto")
        assert mixed.backend == "passage=torch-bf16,query=torch"
        query, passage = mixed.runners["query"], mixed.runners["passage"]
        assert (query.precision_name, passage.precision_name) == ("fp32", "bf16")
        assert passage.model is not mixed.model  # a bf16 copy: the encoder's model stays fp32
        assert next(mixed.model.parameters()).dtype == torch.float32
        np.testing.assert_allclose(
            mixed.encode_queries(sample_texts), tiny.encode_queries(sample_texts), atol=1e-5
        )
        cos = (mixed.encode_passages(sample_texts) * tiny.encode_passages(sample_texts)).sum(1)
        assert cos.min() > 0.99 and cos.max() < 1 - 1e-7  # bf16: close, not identical
        assert model_fingerprint(mixed) != model_fingerprint(tiny)

        path.write_text(json.dumps({"auto": {"query": "onnx-int8", "passage": "torch-bf16"}}))
        alone = koe5.load(str(exported), backend="auto")
        assert alone.backend == "passage=torch-bf16,query=onnx-int8"
        assert alone.runners["passage"].model is alone.model  # no fp32 runner: no copy
    finally:
        path.unlink()


def test_gate_measures_torch_in_bf16_where_the_cpu_has_bf16(exported, monkeypatch):
    from koe5.runtime import export
    from koe5.runtime.export import choose_backends, speed_samples

    texts = speed_samples(8, 2)
    try:
        monkeypatch.setattr(export, "cpu_has_native_bf16", lambda: False)
        report = choose_backends(
            exported, tasks=("PublicHealthQA",), backends=("torch-bf16",), speed_texts=texts
        )
        assert set(report["backends"]) == {"torch"}  # emulated bf16 is slow: not a candidate
        monkeypatch.setattr(export, "cpu_has_native_bf16", lambda: True)
        report = choose_backends(
            exported, tasks=("PublicHealthQA",), backends=("torch-bf16",), speed_texts=texts
        )
        assert set(report["backends"]) == {"torch", "torch-bf16"}
        bf16, fp32 = report["backends"]["torch-bf16"], report["backends"]["torch"]
        assert bf16["passes_gate"] == (bf16["ndcg_at_10"] >= fp32["ndcg_at_10"] - export.GATE)
        assert set(report["auto"].values()) <= {"torch", "torch-bf16"}
    finally:
        (onnx_dir(exported) / CHOICE_FILE).unlink(missing_ok=True)


def test_onnx_without_export_is_a_clear_error(tiny_model_dir):
    with pytest.raises(ModelError, match="koe5 export"):
        koe5.load(str(tiny_model_dir), backend="onnx")


def test_a_hub_model_runs_from_the_copy_koe5_export_made(exported, tiny, sample_texts, tmp_path, monkeypatch):
    """`koe5 export HUB_ID` saves the hub model in koe5's cache and exports it there; an ONNX backend
    of the same hub id then loads that copy, offline, with the registry's prefixes for that id."""
    from koe5.env import hub_copy
    from koe5.runtime.select import exported_copy

    hub_id = "intfloat/multilingual-e5-small"  # in the registry: "query: " and "passage: "
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path))
    assert exported_copy(hub_id, "auto") == (hub_id, "torch")  # never exported: nothing recorded
    assert exported_copy(hub_id, "onnx") == (hub_id, "onnx")
    with pytest.raises(ModelError, match=f"ONNX export of {hub_id}; run `koe5 export {hub_id} --onnx`"):
        koe5.load(hub_id, backend="onnx")
    shutil.copytree(exported, hub_copy(hub_id))
    onnx = koe5.load(hub_id, backend="onnx")
    assert onnx.backend == "onnx" and onnx.path == str(tmp_path / "models" / hub_id.replace("/", "--"))
    assert onnx.spec.query_prefix == "query: " and onnx.spec.id == hub_id
    for kind in ("query", "passage"):
        a, b = onnx.encode(sample_texts, kind), tiny.encode(sample_texts, kind)
        assert np.sum(a * b, axis=1).min() > 0.9999


def test_cli_export_and_encode(exported, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["--quiet", "export", str(exported), "--onnx", "--no-gate"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["--quiet", "encode", "-", "--model", str(exported), "--backend", "onnx"], input="서울\n"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["embedding"]
    assert runner.invoke(app, ["export", str(exported)]).exit_code == 2  # nothing asked for


def test_quality_gate_on_the_bundled_subset(default_model_dir):
    """The gate itself, on the full default model: int8 may be chosen only within 0.005 NDCG@10."""
    from koe5.runtime.export import GATE, choose_backends, export_onnx, speed_samples

    export_onnx("default", int8=True)
    # fp32 ONNX is the same graph (checked above on the tiny model); small speed samples keep it quick
    report = choose_backends(default_model_dir, backends=("onnx-int8",), speed_texts=speed_samples(32, 4))
    torch_ndcg = report["backends"]["torch"]["ndcg_at_10"]
    assert torch_ndcg > 0.7  # PublicHealthQA 0.72, Belebele 0.91 in fp32
    for _name, entry in report["backends"].items():
        assert entry["passes_gate"] == (entry["ndcg_at_10"] >= torch_ndcg - GATE)
        assert entry["query_tokens_per_s"] > 0 and entry["passage_tokens_per_s"] > 0
    assert set(report["backends"]) == {"torch", "onnx-int8"}
    for kind, chosen in report["auto"].items():
        assert report["backends"][chosen]["passes_gate"]
        speed = report["backends"][chosen][f"{kind}_tokens_per_s"]
        passing = [e[f"{kind}_tokens_per_s"] for e in report["backends"].values() if e["passes_gate"]]
        assert speed == max(passing)
    assert json.loads((onnx_dir(default_model_dir) / CHOICE_FILE).read_text())["auto"] == report["auto"]


@pytest.mark.parametrize(
    ("config", "want"),
    [
        ({"pooling_mode": "cls"}, "cls"),
        ({}, "mean"),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_mean_sqrt_len_tokens": True}, "mean_sqrt_len_tokens"),  # not plain mean
        ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, "max_tokens+mean_tokens"),
    ],
)
def test_pooling_mode_of_a_folder(tmp_path, config, want):
    from koe5.runtime.pooling import pooling_mode

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if want in ("mean", "cls"):
        assert pooling_mode(tmp_path) == want
    else:  # the onnx backends pool by mean or CLS only: anything else is refused, by name
        with pytest.raises(ModelError, match=re.escape(f"pooling {want!r} is not supported")):
            pooling_mode(tmp_path)
