"""Where a reranker's forward pass runs: PyTorch (fp32, or bf16) or ONNX Runtime (fp32, or int8).

The embedding models' backends (:mod:`koe5.runtime.select`) per kind of input; a reranker has one kind
of input, the (query, passage) pair, so it has one runner:

* ``torch``: sentence-transformers' ``CrossEncoder`` in the precision asked, with koe5's unpadded fp32
  CPU path (:mod:`koe5.cpu.classifier`) where it covers the model;
* ``onnx`` / ``onnx-int8``: the classifier exported by ``koe5 export NAME --reranker --onnx [--int8]``
  (``<folder>/onnx/model.onnx``, ``model_qint8.onnx``), run by ONNX Runtime on the CPU;
* ``auto``: what the quality gate recorded for this folder (:mod:`koe5.rerank.export`): the fastest
  runner whose NDCG@10 stayed within the gate of torch fp32, ``torch-bf16`` among the candidates on
  CPUs with bf16 hardware; ``torch`` where nothing was recorded.

Example::

    from koe5.rerank import Reranker

    Reranker.load("default", backend="onnx-int8").backend      # 'onnx-int8'
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from koe5.errors import ModelError
from koe5.runtime.onnx_runner import ONNX_FILES, onnx_dir, onnx_session
from koe5.runtime.select import CHOICE_FILE, TORCH_BF16

#: What ``Reranker.load(backend=...)`` accepts.
BACKENDS = ("torch", "onnx", "onnx-int8", "auto")
#: What runs a pass: the backends but ``auto``, and torch in bf16 (a choice ``auto`` may record).
RUNNERS = ("torch", TORCH_BF16, "onnx", "onnx-int8")
#: The key of the pair runner in the choice file's ``auto`` (embedding models have query and passage).
PAIRS = "pairs"
EXPORT_HINT = "koe5 export NAME --reranker --onnx"


def auto_runner(folder: Path) -> str:
    """The runner the gate chose for the folder (its choice file's ``auto.pairs``), else ``torch``."""
    path = onnx_dir(folder) / CHOICE_FILE
    if not path.is_file():
        return "torch"
    choice = json.loads(path.read_text(encoding="utf-8")).get("auto", {}).get(PAIRS, "torch")
    if choice not in RUNNERS:
        raise ModelError(f"{path}: auto.{PAIRS} is {choice!r}, not one of {', '.join(RUNNERS)}")
    return choice


def runner_name(backend: str, name: str, location: str, local: bool) -> str:
    """The runner ``backend`` means for the reranker ``name`` (at ``location``), checked before any
    weights load: an unknown backend, or an ONNX backend without a local folder, is a ModelError;
    ``auto`` is torch where no gate recorded a choice (a hub id koe5 never exported)."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown reranker backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "torch" or (backend == "auto" and not local):  # auto: nothing recorded for a hub id
        return "torch"
    if not local:
        raise ModelError(
            f"reranker backend {backend!r} needs an ONNX export of {name}; run "
            f"`koe5 export {name} --reranker --onnx` (it saves a copy in koe5's cache and exports that)"
        )
    return auto_runner(Path(location)) if backend == "auto" else backend


class OnnxClassifier:
    """A cross-encoder's logits from ONNX Runtime: right-padded int64 ``(n, width)`` arrays in, one
    float32 logit per pair out."""

    def __init__(self, folder: str | Path, runner: str) -> None:
        self.path = onnx_dir(folder) / ONNX_FILES[runner]
        self.session = onnx_session(self.path, EXPORT_HINT + (" --int8" if runner == "onnx-int8" else ""))
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None
    ) -> np.ndarray:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {}
        for name in self.inputs:
            value = given.get(name)
            if value is None:  # a graph that asks for segment ids the tokenizer did not give: segment 0
                value = np.zeros_like(input_ids)
            feeds[name] = value.astype(np.int64, copy=False)
        return self.session.run(None, feeds)[0].astype(np.float32).reshape(-1)
