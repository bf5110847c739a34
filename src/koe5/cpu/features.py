"""What the CPU offers koe5's fast path, read without importing PyTorch: the vendor and instruction-set
flags of ``/proc/cpuinfo``, and which of koe5's optional C libraries the install built."""

from __future__ import annotations

import importlib.machinery
import platform
import sys
from pathlib import Path


def built_library(stem: str) -> Path | None:
    """One of koe5's optional C libraries (``_mkl_cpu``, ``_attention_cpu``), if the install built it."""
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def cpu_vendor_and_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """The first processor's ``vendor_id`` and ``flags`` in ``/proc/cpuinfo`` (empty off Linux x86-64)."""
    if cpuinfo is None:
        if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
            return "", set()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "", set()
    vendor = flags = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = value
        if vendor and flags:
            break
    return vendor, set(flags.split())


def cpu_model() -> str:
    """The processor's name (``model name`` in ``/proc/cpuinfo``), else what ``platform`` knows: the
    machine beside a measured figure (``platform.processor()`` is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
