"""How a sentence-transformers model pools token vectors into one: read from its Pooling config.

Torch-free and free of koe5 imports: both the ONNX runner (a folder's ``1_Pooling/config.json``) and
koe5's unpadded CPU encoder (a loaded Pooling module) read pooling through :func:`pooling_name`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from koe5.errors import ModelError


def pooling_name(config: Mapping) -> str:
    """The pooling of a sentence-transformers Pooling config (its ``config.json``, or a Pooling
    module's attributes): ``mean``, ``cls``, or the name of any other mode or mix of modes."""
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6 keeps one flag per mode
        flag = "pooling_mode_"
        on = "+".join(sorted(k[len(flag) :] for k, v in config.items() if k.startswith(flag) and v))
        mode = {"": "mean", "mean_tokens": "mean", "cls_token": "cls"}.get(on, on)
    return mode


def pooling_mode(folder: Path) -> str:
    """The folder's sentence-transformers pooling (``mean`` or ``cls``; others are refused)."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return "mean"
    mode = pooling_name(json.loads(path.read_text(encoding="utf-8")))
    if mode not in ("mean", "cls"):
        raise ModelError(
            f"{path}: pooling {mode!r} is not supported by the onnx backends; use backend='torch'"
        )
    return mode
