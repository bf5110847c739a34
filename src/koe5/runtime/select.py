"""The backend table: for a backend name, which runner serves each kind of input, and building them.

A backend (``torch``, ``onnx``, ``onnx-int8``, ``auto``) names, per kind (query, passage), a runner:
``torch``, ``torch-bf16`` (torch in bf16, a choice ``auto`` may record), ``onnx`` or ``onnx-int8``.
Both tables below are data: adding a backend is a row in each, not a branch in :func:`build_runners`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from koe5.env import hub_copy
from koe5.errors import ModelError
from koe5.runtime.base import Runner
from koe5.runtime.onnx_runner import ONNX_FILES, OnnxRunner, onnx_dir
from koe5.runtime.pooling import pooling_mode
from koe5.runtime.torch_runner import TorchRunner, load_sentence_transformer

KINDS = ("query", "passage")
#: What ``auto`` may choose for a kind besides the backends: the torch backend in bf16, a candidate
#: on CPUs with bf16 hardware (:func:`koe5.runtime.hardware.cpu_has_native_bf16`), gated like the others.
TORCH_BF16 = "torch-bf16"
#: The runners that run in PyTorch, and the precision each asks for (``None``: the caller's).
TORCH_RUNNERS = {"torch": None, TORCH_BF16: "bf16"}
#: Where ``koe5 export`` records the choice of ``auto`` (inside the folder's ``onnx/``).
CHOICE_FILE = "koe5_backends.json"


def auto_choice(folder: Path) -> dict[str, str]:
    """Per kind, the backend that ``auto`` uses: recorded at export time, else torch."""
    path = onnx_dir(folder) / CHOICE_FILE
    if path.is_file():
        choice = json.loads(path.read_text(encoding="utf-8")).get("auto", {})
        return {kind: choice.get(kind, "torch") for kind in KINDS}
    return dict.fromkeys(KINDS, "torch")


def _everywhere(runner: str) -> Callable[[Path], dict[str, str]]:
    return lambda folder: dict.fromkeys(KINDS, runner)


@dataclass(frozen=True)
class Backend:
    """A backend: which runner serves each kind (read from the model folder), and whether it needs
    a local folder with an ONNX export."""

    runners: Callable[[Path], dict[str, str]]
    needs_folder: bool


#: The backends ``koe5.load`` accepts.
TABLE: dict[str, Backend] = {
    "torch": Backend(_everywhere("torch"), needs_folder=False),
    "onnx": Backend(_everywhere("onnx"), needs_folder=True),
    "onnx-int8": Backend(_everywhere("onnx-int8"), needs_folder=True),
    "auto": Backend(auto_choice, needs_folder=True),
}
BACKENDS = tuple(TABLE)


@dataclass
class Loaded:
    """What :func:`build_runners` made: a runner per kind, the torch model (if any) and the tokenizer."""

    runners: dict[str, Runner]
    model: object | None
    tokenizer: object


def check_backend(backend: str) -> Backend:
    """The table's row for ``backend``; an unknown name is a :class:`ModelError` listing the known ones."""
    if backend not in TABLE:
        raise ModelError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    return TABLE[backend]


def exported_copy(location: str, backend: str) -> tuple[str, str]:
    """Where a backend other than torch reads a hub model (embedding model or reranker): the copy
    ``koe5 export HUB_ID`` saved and exported in koe5's cache (offline). ``auto`` is torch for a hub
    model with no copy (no gate has recorded a choice for it); ``onnx`` without one stays as asked and
    fails naming the export."""
    if backend == "torch" or Path(location).is_dir():
        return location, backend
    copy = hub_copy(location)
    if copy.is_dir():
        return str(copy), backend
    return location, "torch" if backend == "auto" else backend


def build_runners(
    model: str, location: str, backend: str, device: str | None, precision: str = "auto"
) -> Loaded:
    """The runners of ``backend`` for a resolved model (``model`` as the user named it, for messages)."""
    row = check_backend(backend)
    folder = Path(location)
    if row.needs_folder and not folder.is_dir():
        raise ModelError(
            f"backend {backend!r} needs an ONNX export of {model}; run `koe5 export {model} --onnx` "
            "(a hub model is saved in koe5's cache and exported there)"
        )
    kinds = row.runners(folder)
    in_torch = {name for name in kinds.values() if name in TORCH_RUNNERS}
    st = load_sentence_transformer(location, device) if in_torch else None
    if st is not None:
        tokenizer = st.tokenizer
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    made: dict[str, Runner] = {}
    for name in sorted(in_torch):  # "torch" first: it keeps the loaded model in its precision
        if name == "torch":
            made[name] = TorchRunner(st, precision)
        else:  # auto chose bf16 for a kind: its own bf16 copy if fp32 serves the other kind
            copy_or_model = copy.deepcopy(st) if "torch" in in_torch else st
            made[name] = TorchRunner(copy_or_model, TORCH_RUNNERS[name])
            made[name].name = name
    pooling = None
    runners: dict[str, Runner] = {}
    for kind, name in kinds.items():
        if name not in made:
            pooling = pooling or pooling_mode(folder)
            made[name] = OnnxRunner(onnx_dir(folder) / ONNX_FILES[name], pooling, name)
        runners[kind] = made[name]
    return Loaded(runners, st, tokenizer)
