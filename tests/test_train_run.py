"""Training runs on the tiny model: learning, GradCache exactness, exact resume, merging, errors, CLI."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from koe5.errors import InputError
from koe5.train import TrainConfig, train
from koe5.train.config import tomllib_loads
from koe5.train.run import split_heldout
from koe5.train.triplets import load_triplets

TRAIN_SAMPLE = Path(__file__).parent / "data" / "train" / "welfare_sample.jsonl"


def _config(model_dir, output, **changes) -> TrainConfig:
    values = dict(
        data=[str(TRAIN_SAMPLE)], output=str(output), model=str(model_dir), batch_size=8, mini_batch=4,
        lr=1e-4, max_steps=2, warmup=0.0, max_length=40, save_steps=100, logging_steps=1,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig.from_recipe("koe5", **values)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _log(output):
    return [json.loads(line) for line in (output / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def test_heldout_split_keeps_groups_whole():
    rows = load_triplets(str(TRAIN_SAMPLE))
    train_idx, held = split_heldout(rows, 0.2, seed=1)
    assert abs(len(held) - 0.2 * len(rows)) < 6 and sorted(train_idx + held) == list(range(len(rows)))
    assert not {rows.groups[i] for i in held} & {rows.groups[i] for i in train_idx}
    assert split_heldout(rows, 0.2, seed=1) == (train_idx, held)


def test_training_lowers_the_loss_raises_heldout_ndcg_and_saves_a_loadable_model(
    tiny_train_model_dir, tmp_path
):
    import koe5

    out = tmp_path / "run"
    cfg = _config(
        tiny_train_model_dir, out, batch_size=16, max_steps=6, lr=2e-4, eval_holdout=0.25, eval_steps=3,
        save_steps=3, merge_base=0.5, max_length=32,
    )  # fmt: skip
    result = train(cfg)
    log = _log(out)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2])
    evals = [r for r in log if "eval_heldout_ndcg_at_10" in r and "event" not in r]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert evals[-1]["eval_heldout_ndcg_at_10"] > evals[0]["eval_heldout_ndcg_at_10"] + 0.02
    assert result.metrics["tuned"]["eval_heldout_ndcg_at_10"] == evals[-1]["eval_heldout_ndcg_at_10"]
    assert log[-1]["event"] == "final" and "eval_heldout_ndcg_at_10" in log[-1]
    # files: effective config, checkpoints, the tuned and the merged model, the evaluation summary
    assert TrainConfig.from_dict(tomllib_loads((out / "train_config.toml").read_text())) == cfg
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]
    assert json.loads((out / "eval.json").read_text())["steps"] == 6
    prompts = json.loads((out / "model" / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    base, tuned, merged = (
        _weights(tiny_train_model_dir),
        _weights(out / "model-tuned"),
        _weights(out / "model"),
    )
    name = "encoder.layer.1.attention.self.query.weight"
    key = next(k for k in merged if k.endswith(name))
    base_key = next(k for k in base if k.endswith(name))
    assert not torch.equal(tuned[key], base[base_key])
    torch.testing.assert_close(merged[key], 0.5 * base[base_key] + 0.5 * tuned[key], atol=1e-6, rtol=0)
    encoder = koe5.load(str(out / "model"), device="cpu")
    assert (encoder.query_prefix, encoder.passage_prefix) == ("query: ", "passage: ")
    assert encoder.max_length == 512  # trained at 32 tokens, saved with the model's own limit
    assert encoder.encode_queries(["긴급복지 지원은 누가 받나요?"]).shape == (1, encoder.dim)


def test_gradcache_step_equals_full_batch_step(tiny_train_model_no_dropout, tmp_path):
    """With dropout off, one step with mini-batch 2 updates the weights as one with mini-batch = batch."""
    runs = {}
    for mini in (2, 8):
        cfg = _config(
            tiny_train_model_no_dropout,
            tmp_path / f"m{mini}",
            mini_batch=mini,
            max_steps=1,
            optimizer="sgd",
            lr=0.5,
            precision="fp32",  # the two computations are equal in exact arithmetic, not in bf16
        )
        train(cfg)
        runs[mini] = _weights(tmp_path / f"m{mini}" / "model")
    start = _weights(tiny_train_model_no_dropout)
    changed = 0
    for key, value in runs[8].items():
        torch.testing.assert_close(runs[2][key], value, atol=1e-5, rtol=0)
        changed += not torch.allclose(value, start[key], atol=1e-4)
    assert changed > 10  # the step did move the weights


def test_gradcache_gradients_equal_plain_mnrl(tiny_train_model_no_dropout):
    """The cached loss's gradients equal MultipleNegativesRankingLoss's on the same batch."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    rows = load_triplets(str(TRAIN_SAMPLE)).dataset.select(range(8)).to_dict()
    grads = []
    for make in (
        lambda m: CachedMultipleNegativesRankingLoss(m, scale=20, mini_batch_size=3),
        lambda m: MultipleNegativesRankingLoss(m, scale=20),
    ):
        model = SentenceTransformer(str(tiny_train_model_no_dropout), device="cpu")
        model.max_seq_length = 40
        columns = (("query", "query: "), ("positive", "passage: "), ("negative_1", "passage: "))
        features = [model.tokenize([p + t for t in rows[c]]) for c, p in columns]
        make(model)(features, None).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, atol=1e-5, rtol=1e-4)


class _Kill(TrainerCallback):
    """Stops the run right after the checkpoint of ``step`` is written, as a kill would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


def test_resume_after_a_kill_gives_the_uninterrupted_weights(tiny_train_model_dir, tmp_path, caplog):
    """Dropout on: equal weights need the same batches and the same random states after resuming."""
    cfg = dict(max_steps=3, save_steps=2, warmup=0.25, batch_size=4, mini_batch=2, max_length=24)
    train(_config(tiny_train_model_dir, tmp_path / "straight", **cfg))
    out = tmp_path / "killed"
    killed = _config(tiny_train_model_dir, out, **cfg)
    with pytest.raises(KeyboardInterrupt):
        train(killed, callbacks=[_Kill(2)])
    assert not (out / "model").exists() and (out / "checkpoints" / "checkpoint-2").is_dir()
    assert not any(
        p.name.startswith("checkpoint-") and p.name != "checkpoint-2" for p in (out / "checkpoints").iterdir()
    )
    (out / "checkpoints" / "checkpoint-3").mkdir()  # written halfway when the kill came
    (out / "checkpoints" / "checkpoint-3" / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="--resume"):
        train(killed)
    with pytest.raises(InputError, match=r"lr: 0.0001 → 0.001"):
        train(killed.replace(lr=1e-3), resume=True)
    with caplog.at_level(logging.WARNING, logger="koe5"):
        result = train(killed, resume=True)
    assert result.resumed_from.name == "checkpoint-2" and "checkpoint-3 is incomplete" in caplog.text
    straight, resumed = _weights(tmp_path / "straight" / "model"), _weights(out / "model")
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, atol=1e-6, rtol=0)
    steps = [r["step"] for r in _log(out) if "loss" in r]
    assert steps == [1, 2, 3]  # the killed run's lines after its checkpoint are not repeated


def test_bad_data_and_batch_errors(tiny_train_model_dir, tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"query": f"q{i}", "document": f"d{i}"}) + "\n" for i in range(5)))
    with pytest.raises(InputError, match="batch_size 8 is larger than the 5 training rows"):
        train(_config(tiny_train_model_dir, tmp_path / "a", data=[str(small)]))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"query": "q", "document": ""}) + "\n")
    with pytest.raises(InputError, match=r"empty.jsonl:1: field 'document' is empty"):
        train(_config(tiny_train_model_dir, tmp_path / "b", data=[str(empty)]))
    with pytest.raises(InputError, match="no query column"):
        train(_config(tiny_train_model_dir, tmp_path / "c", data=[str(_bad_columns(tmp_path))]))
    with pytest.raises(
        InputError, match="needs at least as many distinct groups, but the training rows have 2"
    ):
        rows = [{"query": f"q{i}", "document": f"d{i}", "group": "same" if i else "other"} for i in range(9)]
        grouped = tmp_path / "grouped.jsonl"
        grouped.write_text("".join(json.dumps(r) + "\n" for r in rows))
        train(_config(tiny_train_model_dir, tmp_path / "d", data=[str(grouped)]))


def _bad_columns(tmp_path):
    path = tmp_path / "cols.jsonl"
    path.write_text(json.dumps({"text": "q", "document": "d"}) + "\n")
    return path


def test_gist_loss_with_a_guide_model_and_gradient_checkpointing(tiny_train_model_dir, tmp_path):
    guide = str(tiny_train_model_dir)
    cfg = _config(
        tiny_train_model_dir, tmp_path / "gist", loss="gist", guide=guide, gradient_checkpointing=True
    )
    assert train(cfg.replace(max_steps=1)).steps == 1


def test_cli_train_with_a_config_file(tiny_train_model_dir, tmp_path):
    from typer.testing import CliRunner

    from koe5.cli import app

    config = tmp_path / "small.toml"
    config.write_text(
        f'data = ["{TRAIN_SAMPLE}"]\nmodel = "{tiny_train_model_dir}"\nbatch_size = 8\nmini_batch = 4\n'
        "max_length = 32\nwarmup = 0.0\nmax_steps = 5\n",
        encoding="utf-8",
    )
    out = tmp_path / "cli-run"
    args = ["-q", "train", "--config", str(config), "-o", str(out), "--max-steps", "1", "--lr", "3e-5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = tomllib_loads((out / "train_config.toml").read_text())
    assert (saved["max_steps"], saved["lr"], saved["batch_size"], saved["recipe"]) == (1, 3e-5, 8, "koe5")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output


def test_cli_merge(tiny_train_model_dir, tmp_path):
    from typer.testing import CliRunner

    from koe5.cli import app

    out = tmp_path / "merged"
    result = CliRunner().invoke(
        app, ["merge", str(tiny_train_model_dir), str(tiny_train_model_dir), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    for key, value in _weights(tiny_train_model_dir).items():
        torch.testing.assert_close(_weights(out)[key], value)
    assert json.loads((out / "koe5_merge.json").read_text())["alpha"] == 0.5


def test_bf16_on_cpu_trains_and_saves_fp32_weights(tiny_train_model_dir, tmp_path):
    """bf16 autocast on a CPU (the default where the CPU has bf16 hardware) runs and keeps fp32 weights."""
    from koe5.train.run import _precision

    cfg = _config(tiny_train_model_dir, tmp_path / "bf16", precision="bf16")
    assert _precision(cfg)["bf16"]
    train(cfg)
    weights = _weights(tmp_path / "bf16" / "model")
    assert {v.dtype for v in weights.values()} == {torch.float32}
    start = _weights(tiny_train_model_dir)
    assert any(not torch.equal(weights[k], start[k]) for k in start)
    assert all(math.isfinite(r["loss"]) for r in _log(tmp_path / "bf16") if "loss" in r)


def test_precision_follows_the_hardware(monkeypatch):
    from koe5.train import run
    from koe5.train.run import _precision

    cfg = TrainConfig(data=["x"], output="o")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: False)
    assert _precision(cfg) == {"bf16": False, "fp16": False}  # CPU without bf16 hardware: float32
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: True)
    assert _precision(cfg) == {"bf16": True, "fp16": False}  # AVX512-BF16 / AMX: bf16 autocast
    assert _precision(cfg.replace(precision="fp32")) == {"bf16": False, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16, expected in ((True, {"bf16": True, "fp16": False}), (False, {"bf16": False, "fp16": True})):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        assert _precision(cfg) == expected
    assert _precision(cfg.replace(precision="fp32")) == {"bf16": False, "fp16": False}
