"""Where a run keeps its checkpoints, and which one a resumed run continues from.

Hugging Face's trainer writes ``checkpoint-<step>/`` folders file by file; a run killed while writing
one leaves it incomplete. The trainer state file is written last, so a checkpoint counts only when
its state parses and its weights are there.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger("koe5")

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else -1


def is_complete(path: Path) -> bool:
    """Weights, optimizer state and a readable trainer state: enough to resume exactly."""
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    has_weights = any(path.glob("*.safetensors")) or (path / "pytorch_model.bin").is_file()
    return has_weights and (path / "optimizer.pt").is_file()


def last_checkpoint(folder: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``folder``, or ``None``; incomplete ones are
    reported and skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.iterdir() if checkpoint_step(p) >= 0), key=checkpoint_step, reverse=True
    )
    for path in found:
        if is_complete(path):
            return path
        log.warning("koe5: %s is incomplete (the run was stopped while writing it); skipping it", path)
    return None
