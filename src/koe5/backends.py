"""Moved to :mod:`koe5.runtime`; this module re-exports its names for one release."""

import warnings

from koe5.runtime.base import DTYPES, PRECISIONS, Runner
from koe5.runtime.hardware import THREADS_ENV, cpu_has_native_bf16, cpu_threads
from koe5.runtime.onnx_runner import ONNX_FILES, OnnxRunner, onnx_dir
from koe5.runtime.pooling import pooling_mode, pooling_name
from koe5.runtime.select import BACKENDS, CHOICE_FILE, TORCH_BF16, auto_choice
from koe5.runtime.torch_runner import TorchRunner

__all__ = [
    "BACKENDS",
    "CHOICE_FILE",
    "DTYPES",
    "ONNX_FILES",
    "PRECISIONS",
    "THREADS_ENV",
    "TORCH_BF16",
    "OnnxRunner",
    "Runner",
    "TorchRunner",
    "auto_choice",
    "cpu_has_native_bf16",
    "cpu_threads",
    "onnx_dir",
    "pooling_mode",
    "pooling_name",
    "start",
]


def start(runner, input_ids, attention_mask):
    """Begin a batch on ``runner``; returns a function that waits for its vectors."""
    return runner.start(input_ids, attention_mask)


warnings.warn("koe5.backends moved to koe5.runtime", DeprecationWarning, stacklevel=2)
