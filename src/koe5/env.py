"""Every environment variable koe5 reads, in one place: its name, what it does, and its reader.

Other modules never read ``os.environ`` themselves; they call a reader here, so ``koe5 env`` can list
what is set and a newcomer finds every switch in one file (as infinity keeps its ``env.py``).
Readers look the variable up on every call: a test or a caller may change it between calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variable:
    """One environment variable that changes what koe5 does."""

    name: str
    effect: str
    #: who sets it: ``user`` (koe5's own settings) or the tool whose convention koe5 follows
    owner: str = "user"


CACHE = Variable("KOE5_CACHE", "where koe5 keeps converted models and embeddings (default ~/.cache/koe5)")
XDG_CACHE = Variable("XDG_CACHE_HOME", "the cache's parent when KOE5_CACHE is unset", owner="XDG")
THREADS = Variable("KOE5_THREADS", "threads for CPU inference (default: PyTorch's own count)")
MKL_AVX512 = Variable("KOE5_MKL_AVX512", "0 keeps MKL on its AVX2 path on AMD processors")
ONEDNN = Variable("KOE5_ONEDNN", "0 keeps PyTorch's own CPU linear layers")
ATTENTION = Variable("KOE5_ATTENTION", "0 keeps PyTorch's attention; avx2 forces the AVX2 kernel")
API_KEY = Variable("KOE5_API_KEY", "bearer token that koe5 serve requires (unset: no key)")
TRAIN_DATA = Variable("KOE5_TRAIN_DATA", "folder of the Korean training material (koe5 build-data)")
RANK = Variable("RANK", "this process's rank in distributed training", owner="torchrun")
WORLD_SIZE = Variable("WORLD_SIZE", "processes in distributed training", owner="torchrun")
LD_PRELOAD = Variable("LD_PRELOAD", "libraries loaded first; koe5 notices its MKL shim there", owner="ld.so")

VARIABLES = (CACHE, XDG_CACHE, THREADS, MKL_AVX512, ONEDNN, ATTENTION, API_KEY, TRAIN_DATA, RANK, WORLD_SIZE,
             LD_PRELOAD)  # fmt: skip


def get(var: Variable) -> str | None:
    """The variable's value with surrounding whitespace removed; ``None`` when unset or blank."""
    value = os.environ.get(var.name, "").strip()
    return value or None


def raw(var: Variable) -> str | None:
    """The value exactly as set (a secret with stray spaces must be refused, not quietly trimmed);
    ``None`` when unset or empty."""
    return os.environ.get(var.name) or None


def switched_off(var: Variable) -> bool:
    """Whether ``var`` turns a koe5 speed-up off (0, false, no, off); unset means on."""
    return (get(var) or "1").lower() in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """The cache root: ``$KOE5_CACHE``, else ``$XDG_CACHE_HOME/koe5``, else ``~/.cache/koe5``."""
    if os.environ.get(CACHE.name):
        return Path(os.environ[CACHE.name]).expanduser()
    base = os.environ.get(XDG_CACHE.name) or Path.home() / ".cache"
    return Path(base) / "koe5"


def hub_copy(hub_id: str) -> Path:
    """Where koe5 keeps its own saved copy of a hub model: ``koe5 export HUB_ID`` saves the model there
    and exports it beside its weights; the ONNX backends of the same hub id then load that copy."""
    return cache_dir() / "models" / hub_id.replace("/", "--")


def path(var: Variable) -> Path | None:
    """A folder or file named by ``var`` (``~`` expanded), or ``None``."""
    value = os.environ.get(var.name)
    return Path(value).expanduser() if value else None


def integer(var: Variable, default: int) -> int:
    """An integer setting such as ``RANK``; ``default`` when unset."""
    return int(os.environ.get(var.name, str(default)))


def preloaded() -> list[str]:
    """The entries of ``LD_PRELOAD``, split at colons and spaces as the dynamic linker splits them."""
    return os.environ.get(LD_PRELOAD.name, "").replace(":", " ").split()


def settings() -> dict[str, str]:
    """The koe5 variables that are set now (``koe5 env`` shows them); the API key is masked."""
    found = {}
    for var in VARIABLES:
        value = os.environ.get(var.name)
        if value is not None:
            found[var.name] = "***" if var is API_KEY and value else value
    return found
