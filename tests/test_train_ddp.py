"""DDP with cross-device negatives: two gloo CPU processes (torchrun) train as one process does.

Each device embeds half of every global batch; gathering the embeddings makes all of them negatives for
every query, so two processes with 4 rows each must reach the weights (and the losses) of one process
with 8 rows. Without the gathering each query would see half the negatives and both would differ.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from koe5.train import TrainConfig, to_toml, train

TRAIN_SAMPLE = Path(__file__).parent / "data" / "train" / "welfare_sample.jsonl"
KOE5 = Path(sys.executable).parent / "koe5"


@pytest.mark.skipif(not KOE5.exists(), reason="the koe5 command is not installed beside this Python")
def test_two_processes_with_cross_device_negatives_equal_one_process(tiny_train_model_no_dropout, tmp_path):
    cfg = TrainConfig.from_recipe(
        "koe5", data=[str(TRAIN_SAMPLE)], model=str(tiny_train_model_no_dropout), batch_size=8, mini_batch=2,
        max_steps=2, warmup=0.0, optimizer="sgd", lr=0.5, max_length=32, logging_steps=1, save_steps=100,
        precision="fp32",  # equal in exact arithmetic; bf16 (the default on CPUs that have it) rounds apart
    )  # fmt: skip
    train(cfg.replace(output=str(tmp_path / "one")))
    config = tmp_path / "ddp.toml"
    config.write_text(to_toml(cfg.replace(output=str(tmp_path / "two"))), encoding="utf-8")
    # PYTHONFAULTHANDLER: a worker that gets SIGABRT prints every thread's Python stack first
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "--no-python",
        str(KOE5), "-q", "train", "--config", str(config),
    ]  # fmt: skip
    returncode, output = run_group(command, env, timeout=300)
    assert returncode == 0, output[-6000:]
    one = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, atol=2e-5, rtol=0)

    def losses(run):
        lines = (tmp_path / run / "log.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if "loss" in r]

    assert losses("two") == pytest.approx(losses("one"), abs=1e-4)


def run_group(command: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run ``command`` in its own process group; past ``timeout``, abort the whole group (torchrun and
    its workers) so that a hung run fails with its workers' stacks and leaves no process behind."""
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
            return process.returncode, output
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGABRT)  # the workers print their stacks (PYTHONFAULTHANDLER)
            try:
                output, _ = process.communicate(timeout=30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            return None, f"timed out after {timeout} s; the processes' stacks:\n{output}"
