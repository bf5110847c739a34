"""The ``onnx`` and ``onnx-int8`` backends: an exported encoder run by ONNX Runtime, pooled in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from koe5.errors import ModelError
from koe5.runtime.base import SynchronousRunner
from koe5.runtime.hardware import cpu_threads

ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}


def onnx_dir(folder: str | Path) -> Path:
    """Where a model folder's ONNX exports live (``<folder>/onnx``, sentence-transformers' layout)."""
    return Path(folder) / "onnx"


def onnx_session(path: Path, how: str):
    """An ONNX Runtime session on the CPU for ``path``; ``how`` is the command that writes the file,
    named in the error when it is missing."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError("the onnx backends need onnxruntime: pip install 'koe5[onnx]'") from exc
    if not path.is_file():
        raise ModelError(f"{path} does not exist: run `{how}` first")
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's idle threads spin for a while after each call; beside torch in the same
    # process (backend="auto") they would take the cores torch needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner(SynchronousRunner):
    """ONNX Runtime session over the exported encoder, with the folder's pooling done in numpy."""

    def __init__(self, path: Path, pooling: str, name: str) -> None:
        self.session = onnx_session(path, "koe5 export MODEL --onnx")
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pooling = pooling
        self.name = name

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self.session.run(None, feeds)[0]
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            mask = attention_mask[..., None].astype(np.float32)
            emb = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb / np.maximum(norm, 1e-12)).astype(np.float32)
