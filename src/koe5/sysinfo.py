"""What koe5 finds on this machine: versions, devices, threads and which of its speed-ups are in use.

``koe5 env`` prints it (``--json`` for bug reports and scripts); ``GET /info`` of ``koe5 serve`` carries
the speed-up parts. Nothing here loads a model or downloads anything.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    """The report, as plain JSON-ready values."""
    import torch

    from koe5 import env
    from koe5._version import __version__
    from koe5.cpu import attention, mkl, onednn
    from koe5.cpu.features import cpu_vendor_and_flags
    from koe5.env import cache_dir
    from koe5.registry import default_model_dir
    from koe5.runtime.hardware import cpu_has_native_bf16, cpu_threads
    from koe5.runtime.select import auto_choice

    vendor, flags = cpu_vendor_and_flags()
    cuda = torch.cuda.is_available()
    model = default_model_dir()
    attention.kernel()  # loads it (once) so that its status is known
    return {
        "koe5": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("torch", "transformers", "sentence-transformers", "onnxruntime", "numpy")
        },
        "cpu": {
            "vendor": vendor or None,
            "instruction_sets": sorted(
                f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags
            ),
            "threads": cpu_threads(),
            "native_bf16": cpu_has_native_bf16(),
        },
        "cuda": {
            "available": cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda
            else [],
        },
        "speedups": {
            "mkl_shim": mkl.status,
            "onednn_linears": onednn.available(),
            "attention_kernel": attention.status,
            "attention_code_path": attention.variant,
        },
        "environment": env.settings(),
        "cache": str(cache_dir()),
        "default_model": {
            "folder": str(model) if model.exists() else None,
            "auto": auto_choice(model) if model.exists() else None,
        },
    }
