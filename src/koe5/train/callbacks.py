"""Trainer callbacks: the JSONL log every run writes (loss, learning rate, evaluation metrics)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


class JsonlLog(TrainerCallback):
    """Append each of the trainer's log records to ``path`` as one JSON line, from the main process.

    Each line has ``step``, ``epoch`` and ``time`` (seconds since the log was opened) besides the
    trainer's own keys (``loss``, ``learning_rate``, ``grad_norm``, ``eval_*``). A resumed run first
    drops the lines the killed run wrote after its last checkpoint, so steps are not logged twice.
    """

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.started = time.time()
        self.resume_step = resume_step
        self.last_eval: tuple[int, dict] | None = None  # (step, metrics) of the latest evaluation

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.resume_step is not None and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if any(k.startswith("eval_") for k in logs):
            self.last_eval = (state.global_step, {k: v for k, v in logs.items() if k.startswith("eval_")})
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        record["time"] = round(time.time() - self.started, 2)
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_log_record(path: str | Path, record: dict) -> None:
    """Append one record (e.g. the final evaluation) to a run's JSONL log."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
