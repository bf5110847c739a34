"""Inference backends: what turns a padded batch of token ids into normalised sentence vectors.

* ``torch``: the sentence-transformers model (SDPA attention; fp16/bf16 on CUDA; on CPU its linear
  layers run through oneDNN with packed weights, see :mod:`koe5.onednn`).
* ``onnx``: the same graph exported to ONNX, run by ONNX Runtime (``koe5 export --onnx``).
* ``onnx-int8``: that graph with dynamically quantised int8 weights (``koe5 export --onnx --int8``).
* ``auto``: per kind of input, the fastest backend that passed the quality gate when it was
  exported (``onnx/koe5_backends.json``); torch where nothing was measured.

Every runner takes ``input_ids`` and ``attention_mask`` as int64 numpy arrays ``(n, width)`` and
returns float32 L2-normalised vectors ``(n, dim)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from koe5.errors import ModelError

BACKENDS = ("torch", "onnx", "onnx-int8", "auto")
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
CHOICE_FILE = "koe5_backends.json"


def onnx_dir(folder: str | Path) -> Path:
    """Where a model folder's ONNX exports live (``<folder>/onnx``, sentence-transformers' layout)."""
    return Path(folder) / "onnx"


class TorchRunner:
    name = "torch"

    def __init__(self, model, precision: str = "auto") -> None:
        import torch

        self.model = model
        self.device = model.device
        if self.device.type == "cuda" and precision in ("auto", "fp16", "bf16"):
            use_bf16 = precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported())
            model.to(torch.bfloat16 if use_bf16 else torch.float16)
        self._with_token_types = "token_type_ids" in getattr(model.tokenizer, "model_input_names", ())
        self.forward_model = model
        if self.device.type == "cpu" and next(model.parameters()).dtype == torch.float32:
            from koe5 import onednn

            if onednn.available():
                self.forward_model = onednn.packed_copy(model)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features = {
                "input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(attention_mask).to(self.device),
            }
            if self._with_token_types:
                features["token_type_ids"] = torch.zeros_like(features["input_ids"])
            emb = self.forward_model(features)["sentence_embedding"].float()
            return torch.nn.functional.normalize(emb, dim=-1).cpu().numpy()


class OnnxRunner:
    """ONNX Runtime session over the exported encoder, with the folder's pooling done in numpy."""

    def __init__(self, path: Path, pooling: str, name: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the onnx backends need onnxruntime: pip install 'koe5[onnx]'") from exc
        if not path.is_file():
            raise ModelError(f"{path} does not exist: run `koe5 export MODEL --onnx` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("KOE5_THREADS", 0)) or (os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's idle threads spin for a while after each call; beside torch in the same
        # process (backend="auto") they would take the cores torch needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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


def pooling_mode(folder: Path) -> str:
    """The folder's sentence-transformers pooling (``mean`` or ``cls``; others are refused)."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return "mean"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    mode = cfg.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6 writes one flag per mode
        mode = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
        if cfg.get("pooling_mode_lasttoken") or cfg.get("pooling_mode_max_tokens"):
            mode = "other"
    if mode not in ("mean", "cls"):
        raise ModelError(
            f"{path}: pooling {mode!r} is not supported by the onnx backends; use backend='torch'"
        )
    return mode


def auto_choice(folder: Path) -> dict[str, str]:
    """Per kind, the backend that ``auto`` uses: recorded at export time, else torch."""
    path = onnx_dir(folder) / CHOICE_FILE
    if path.is_file():
        choice = json.loads(path.read_text(encoding="utf-8")).get("auto", {})
        return {"query": choice.get("query", "torch"), "passage": choice.get("passage", "torch")}
    return {"query": "torch", "passage": "torch"}
