"""koe5's fp32 CPU attention kernel for the unpadded encoder (AVX-512 or AVX2; ``_attention_cpu.c``).

Why by hand: after koe5's packed linears, attention was the one part of an E5 forward pass far from
the machine's matrix rate. PyTorch's CPU ``scaled_dot_product_attention`` (its flash-attention kernel)
runs each block as a small MKL GEMM plus copies; with E5's head size of 32 those GEMMs are too thin to
go fast, on short inputs most of all. oneDNN's fused attention is only reachable through PyTorch's
graph compilers. koe5's kernel computes a whole layer in one call: for each (input, head) it transposes
K into a small buffer once, then for 8 query rows at a time computes their whole score rows with the
row maximum fused in, exponentiates them once (rows are whole, so no running rescale), and accumulates
P·V with the output in registers; the work spreads over PyTorch's own OpenMP threads.
``benchmarks/attention_kernel.py`` measures it against PyTorch's on the encoder's shapes and
``benchmarks/cpu_speed.py`` the whole encoder; docs/performance.md gives the figures.

Used by :class:`koe5.cpu.unpadded.UnpaddedEncoder` for head sizes 32, 64 and 128 on x86-64 CPUs with
AVX-512, or AVX2 with FMA (the same algorithm in 8-float vectors and 16 registers; PyTorch's kernel is
closer to the machine there, so the gain is smaller), when the install compiled the kernel and PyTorch
runs on GNU OpenMP (the kernel links ``libgomp.so.1`` and must share PyTorch's thread pool, not start a
second one). ``KOE5_ATTENTION=0`` keeps PyTorch's kernel, ``=avx2`` takes the AVX2 code on an AVX-512
CPU. Results agree with PyTorch's to float rounding (exp by a degree-6 polynomial, relative error ~1e-7).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from koe5 import env
from koe5.cpu.features import built_library, cpu_vendor_and_flags

#: ``KOE5_ATTENTION``: ``0`` keeps PyTorch's attention; ``avx2`` picks the AVX2 code on an AVX-512 CPU.
ENV = env.ATTENTION.name
HEAD_DIMS = (32, 64, 128)
VARIANTS = ("avx512", "avx2")  # the kernel's code paths, fastest first
_NEEDS = {"avx512": {"avx512f"}, "avx2": {"avx2", "fma"}}  # the /proc/cpuinfo flags each one uses

log = logging.getLogger("koe5")

#: What :func:`kernel` found: ``active``, ``off`` (by ``KOE5_ATTENTION``), ``unsupported CPU`` (neither
#: AVX-512 nor AVX2 with FMA), ``not built`` (installed without a C compiler with OpenMP), ``other
#: OpenMP`` (PyTorch does not run on GNU OpenMP). ``None`` before the first call.
status: str | None = None
#: The code path in use, one of :data:`VARIANTS`, when :data:`status` is ``active``.
variant: str | None = None
_kernel = None
_runnable: list[str] = []  # cpu_variants(), read once by kernel()


def cpu_variants(flags: set[str] | None = None) -> list[str]:
    """The kernel's code paths this CPU (or these ``/proc/cpuinfo`` flags) can run, fastest first."""
    flags = cpu_vendor_and_flags()[1] if flags is None else flags
    return [v for v in VARIANTS if _NEEDS[v] <= flags]


def _openmp_libraries() -> list[str]:
    """Paths of the GNU OpenMP runtimes mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line.rsplit("/", 1)[-1]})


def kernel():
    """The kernel's C function, or ``None`` where it is not used (see :data:`status`). Loads once."""
    global status, variant, _kernel, _runnable
    if status is not None:
        return _kernel
    path = built_library("_attention_cpu")
    variants = _runnable = cpu_variants()
    if env.switched_off(env.ATTENTION):
        status = "off"
    elif not variants:
        status = "unsupported CPU"
    elif path is None:
        status = "not built"
    elif not torch.backends.openmp.is_available() or not (runtimes := _openmp_libraries()):
        status = "other OpenMP"  # loading it would start a second thread pool beside PyTorch's
    else:
        try:
            function = ctypes.CDLL(str(path)).koe5_attention
            function.restype = ctypes.c_int
            pointer, size = ctypes.c_void_p, ctypes.c_int64
            integer = ctypes.c_int
            function.argtypes = [pointer, pointer, pointer, size, size, size, size, size, integer, integer]
        except (OSError, AttributeError) as exc:  # a broken build must never stop encoding
            log.info("koe5: attention kernel %s not loaded: %s", path, exc)
            status = "not built"
        else:
            if len(_openmp_libraries()) > len(runtimes):
                # PyTorch's libgomp has another soname, so the kernel brought its own: two thread pools
                # would fight for the cores. The library stays loaded, unused; its pool never starts.
                status = "other OpenMP"
            else:
                wanted = (env.get(env.ATTENTION) or "").lower()
                variant = wanted if wanted in variants else variants[0]
                if wanted not in (variant, "", "1", "true", "yes", "on"):
                    log.warning(
                        "koe5: %s=%s is not a code path this CPU runs (%s); using %s",
                        ENV,
                        wanted,
                        ", ".join(variants),
                        variant,
                    )
                _kernel, status = function, "active"
    return _kernel


def available(head_dim: int) -> bool:
    """Whether the kernel serves this head size here."""
    return head_dim in HEAD_DIMS and kernel() is not None


def _dense_cpu(t: torch.Tensor, dtype: torch.dtype, dim: int) -> bool:
    """A plain strided CPU tensor of ``dtype`` and ``dim`` dimensions (what a raw pointer can stand for)."""
    return t.layout == torch.strided and t.device.type == "cpu" and t.dtype == dtype and t.dim() == dim


def _runs_fit(runs: list[list[int]], tokens: int) -> bool:
    """Every run non-empty, inside ``tokens`` rows and apart from the others (Python integers: no
    overflow, which a product of huge int64s would wrap past the bound and into wild pointers)."""
    end = 0
    for first, inputs, length in sorted(runs):
        if first < end or inputs < 1 or length < 1:
            return False
        end = first + inputs * length
    return end <= tokens


def attend(
    fused: torch.Tensor,
    context: torch.Tensor,
    runs: torch.Tensor,
    heads: int,
    head_dim: int,
    code_path: str | None = None,
) -> bool:
    """softmax(Q Kᵀ) V of every input into ``context``; ``False`` (context undefined) if the kernel
    cannot (no kernel, unsupported shape, failed allocation): the caller then uses PyTorch's.

    ``fused``: ``(tokens, 3·heads·head_dim)`` fp32 rows of Q (scaled by 1/√head_dim), K, V;
    ``context``: ``(tokens, heads·head_dim)``, rows apart from each other and from ``fused``; ``runs``:
    int64 ``(runs, 3)`` rows of (first token, inputs, length), the inputs of a run stored one after
    another with no padding, runs apart. Anything else returns ``False``: the C code trusts these
    bounds, and threads writing the same rows would race. ``code_path``: one of :data:`VARIANTS` this
    CPU runs (default :data:`variant`).
    """
    function = kernel()
    code_path = code_path or variant
    hidden = heads * head_dim
    if (
        function is None
        or code_path not in _runnable
        or head_dim not in HEAD_DIMS
        or not _dense_cpu(fused, torch.float32, 2)
        or not _dense_cpu(context, torch.float32, 2)
        or not _dense_cpu(runs, torch.int64, 2)
        or fused.shape[1] != 3 * hidden
        or context.shape != (fused.shape[0], hidden)
        or fused.stride(1) != 1
        or context.stride(1) != 1
        or (context.shape[0] > 1 and context.stride(0) < hidden)  # rows overlapping
        or context.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()
        or runs.shape[1] != 3
        or not runs.is_contiguous()
        or not _runs_fit(runs.tolist(), fused.shape[0])
    ):
        return False
    code = function(
        fused.data_ptr(),
        context.data_ptr(),
        runs.data_ptr(),
        runs.shape[0],
        heads,
        head_dim,
        fused.stride(0),
        context.stride(0),
        torch.get_num_threads(),
        code_path == "avx512",
    )
    return code == 0


def pytorch_attention(fused: torch.Tensor, context: torch.Tensor, runs, heads: int, head_dim: int) -> None:
    """The same with PyTorch's ``scaled_dot_product_attention``, one call per run of ``(first token,
    inputs, length)`` on strided views of ``fused`` (any dtype): what runs where the kernel does not."""
    for start, count, length in runs:
        span = slice(start, start + count * length)
        q, k, v = (t.transpose(1, 2) for t in fused[span].view(count, length, 3, heads, head_dim).unbind(2))
        att = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        context[span].view(count, length, heads, head_dim).copy_(att.transpose(1, 2))
