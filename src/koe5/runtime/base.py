"""What every backend is: a :class:`Runner` from padded token ids to normalised vectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: koe5's precision names -> PyTorch's dtype names (also text-embeddings-inference's ``model_dtype``).
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@runtime_checkable
class Runner(Protocol):
    """Turns ``input_ids`` and ``attention_mask`` (int64 numpy arrays ``(n, width)``, right-padded)
    into float32 L2-normalised vectors ``(n, dim)``.

    ``name`` is the backend's name (``torch``, ``torch-bf16``, ``onnx``, ``onnx-int8``);
    ``precision_name`` the torch backend's precision (``None`` for others); ``pipelined`` says that
    :meth:`start` returns before the work is done (CUDA), so the caller may prepare the next batch.
    """

    name: str
    precision_name: str | None
    pipelined: bool

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Callable[[], np.ndarray]:
        """Begin a batch; returns a function that waits for its vectors."""
        ...


class SynchronousRunner:
    """Base of the runners that compute in the call: :meth:`start` does the work at once."""

    name = "runner"
    precision_name: str | None = None
    pipelined = False

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Callable[[], np.ndarray]:
        result = self(input_ids, attention_mask)
        return lambda: result
