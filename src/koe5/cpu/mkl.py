"""MKL at full width on AMD processors with AVX-512.

PyTorch's fp32 CPU matrix products outside koe5's packed linears (attention's blocks inside
``scaled_dot_product_attention``, every linear layer in training, plain sentence-transformers) run on
Intel MKL, and MKL picks its code path by CPU vendor: on AMD chips it takes AVX2 even where the chip
has AVX-512 (Zen 4, Zen 5), about half of such a chip's fp32 matrix rate (docs/performance.md gives
the measured rates, ``benchmarks/mkl_shim.py`` measures them).

MKL asks one function, ``mkl_serv_intel_cpu_true``, whether the CPU is Intel's. koe5 builds a
one-line C definition of it that says yes (``_mkl_cpu.c``) and loads it into the process's global
symbol scope before PyTorch is imported; libtorch_cpu then resolves the function to it, and MKL
dispatches on the instruction sets the CPU reports, as it does on Intel chips. No code is patched; it
is the dynamic linker's ordinary interposition, the same as ``LD_PRELOAD``.

It takes effect only if it happens before PyTorch is first imported: ``import koe5`` does it (the
``koe5`` command always), so import koe5 before torch, or set ``LD_PRELOAD`` to :func:`shim_path`.
It is done only on Linux, x86-64, AMD, with AVX-512; ``KOE5_MKL_AVX512=0`` turns it off. Without a C
compiler at install time the shim is not built and nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

from koe5 import env
from koe5.cpu.features import built_library, cpu_vendor_and_flags

ENV = env.MKL_AVX512.name
_SYMBOL = "mkl_serv_intel_cpu_true"

log = logging.getLogger("koe5")

#: What :func:`enable` found: ``active``, ``off`` (by ``KOE5_MKL_AVX512``), ``not needed`` (not an AMD
#: CPU with AVX-512 on Linux), ``not built`` (no shim: installed without a C compiler) or ``too late``
#: (PyTorch was imported first). ``None`` before :func:`enable` runs.
status: str | None = None


def shim_path() -> Path | None:
    """The built shim library, if the install compiled it."""
    return built_library("_mkl_cpu")


def cpu_wants_shim(cpuinfo: str | None = None) -> bool:
    """Linux on an x86-64 AMD CPU that reports AVX-512: where MKL leaves AVX-512 unused."""
    vendor, flags = cpu_vendor_and_flags(cpuinfo)
    return vendor == "AuthenticAMD" and "avx512f" in flags


def _preloaded() -> bool:
    """The shim is in ``LD_PRELOAD`` (which the dynamic linker splits at colons and spaces)."""
    return any(Path(p).name.startswith("_mkl_cpu") for p in env.preloaded())


def enable() -> str:
    """Load the shim if this machine wants it and PyTorch is not loaded yet; returns :data:`status`.

    Runs once per process (``import koe5`` calls it); later calls return the first answer.
    """
    global status
    if status is not None:
        return status
    if _preloaded():  # loaded by the dynamic linker, whatever the settings say
        status = "active"
    elif env.switched_off(env.MKL_AVX512):
        status = "off"
    elif not cpu_wants_shim():
        status = "not needed"
    elif (path := shim_path()) is None:
        status = "not built"
    elif "torch" in sys.modules:
        status = "too late"
        log.info(
            "koe5: PyTorch was imported before koe5, so MKL keeps its AVX2 path on this AMD CPU; import "
            "koe5 first (or LD_PRELOAD=%s) for about twice the fp32 matrix rate",
            path,
        )
    else:
        try:
            library = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            getattr(library, _SYMBOL)
            status = "active"
        except (OSError, AttributeError) as exc:  # a broken build must never stop koe5 from importing
            log.info("koe5: MKL shim %s not loaded: %s", path, exc)
            status = "not built"
    return status
