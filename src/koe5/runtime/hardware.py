"""Hardware facts the runners need from PyTorch: threads for CPU inference, bf16 matrix hardware.

(The CPU's flags, read without PyTorch, are in :mod:`koe5.cpu.features`.)
"""

from __future__ import annotations

from koe5 import env
from koe5.errors import ModelError

THREADS_ENV = env.THREADS.name


def cpu_threads() -> int:
    """Threads for CPU inference, the same for both backends: ``KOE5_THREADS`` if set (koe5 then sets
    PyTorch's too), else PyTorch's own intra-op count (the cores it found) — ``os.cpu_count()`` would
    count SMT siblings and the host's CPUs outside this process's affinity."""
    import torch

    value = env.get(env.THREADS)
    if value is None:
        return torch.get_num_threads()
    if not value.isdigit() or int(value) < 1:
        raise ModelError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    if torch.get_num_threads() != int(value):
        torch.set_num_threads(int(value))
    return int(value)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 matrix work in hardware (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than fp32."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # private, hence guarded
        check = getattr(getattr(torch, "cpu", None), probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # pragma: no cover - a probe that fails means "not known to have it"
            continue
    return False
