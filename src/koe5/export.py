"""Moved to :mod:`koe5.runtime.export`; this module re-exports it for one release."""

import warnings

from koe5.runtime.export import GATE, GATE_TASKS, choose_backends, export_onnx, local_folder, speed_samples

__all__ = ["GATE", "GATE_TASKS", "choose_backends", "export_onnx", "local_folder", "speed_samples"]

warnings.warn("koe5.export moved to koe5.runtime.export", DeprecationWarning, stacklevel=2)
