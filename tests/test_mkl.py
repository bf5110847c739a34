"""MKL's dispatch shim for AMD processors (koe5/mkl.py): when it loads, and that MKL changes path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from koe5.cpu import mkl

AMD = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw\n"


def test_cpu_detection_from_cpuinfo():
    assert mkl.cpu_wants_shim(AMD)
    assert not mkl.cpu_wants_shim(AMD.replace("avx512f avx512bw", ""))  # Zen 2/3: AVX2 is all there is
    assert not mkl.cpu_wants_shim(AMD.replace("AuthenticAMD", "GenuineIntel"))  # MKL already uses AVX-512
    assert not mkl.cpu_wants_shim("")


@pytest.fixture()
def fresh_status(monkeypatch):
    """:func:`mkl.enable` as on a first call, on a machine that wants the shim, torch not loaded."""
    monkeypatch.setattr(mkl, "status", None)
    monkeypatch.setattr(mkl, "cpu_wants_shim", lambda: True)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(mkl.ENV, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # restored after the test


def test_status_without_a_built_shim_or_with_a_broken_one(fresh_status, monkeypatch, tmp_path):
    monkeypatch.setattr(mkl, "shim_path", lambda: None)
    assert mkl.enable() == "not built"
    broken = tmp_path / "_mkl_cpu.so"
    broken.write_text("not a library")
    monkeypatch.setattr(mkl, "status", None)
    monkeypatch.setattr(mkl, "shim_path", lambda: broken)
    assert mkl.enable() == "not built"  # import koe5 must never fail over it
    assert mkl.enable() == "not built"  # decided once per process


def test_status_when_preloaded_or_turned_off(fresh_status, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/lib/x.so /opt/koe5/_mkl_cpu.cpython-311-x86_64-linux-gnu.so")
    monkeypatch.setenv(mkl.ENV, "0")
    assert mkl.enable() == "active"  # the dynamic linker loaded it: off is no longer possible
    monkeypatch.setattr(mkl, "status", None)
    monkeypatch.delenv("LD_PRELOAD")
    assert mkl.enable() == "off"


def test_import_koe5_does_not_import_torch():
    """The shim must load before PyTorch, and ``import koe5`` loads it: nothing imported on the way
    may import torch (on any machine, not only where the shim applies)."""
    assert _in_fresh_python("import sys, koe5; print('torch' in sys.modules)") == "False"


def _in_fresh_python(code: str, **env: str) -> str:
    full = {**os.environ, **env}
    full.pop("LD_PRELOAD", None)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return out.stdout.strip()


STATUS_AND_PRODUCT = (
    "import koe5, hashlib, torch\n"
    "g = torch.Generator().manual_seed(0)\n"
    "a, b = torch.randn(300, 384, generator=g), torch.randn(384, 500, generator=g)\n"
    "c = a @ b\n"
    "torch.save(c, {path!r})\n"
    "print(koe5.cpu.mkl.status, hashlib.md5(c.numpy().tobytes()).hexdigest())\n"
)

needs_shim = pytest.mark.skipif(
    not (mkl.cpu_wants_shim() and mkl.shim_path()), reason="needs an AMD CPU with AVX-512 and the built shim"
)


def test_env_turns_it_off_and_torch_first_is_too_late(tmp_path):
    off = _in_fresh_python(STATUS_AND_PRODUCT.format(path=str(tmp_path / "a.pt")), KOE5_MKL_AVX512="0")
    assert off.split()[0] == "off"
    late = _in_fresh_python("import torch, koe5; print(koe5.cpu.mkl.status)")
    assert late in ("too late", "not needed", "not built")
    if mkl.cpu_wants_shim() and mkl.shim_path():
        assert late == "too late"


@needs_shim
def test_shim_moves_mkl_to_another_kernel_with_the_same_results(tmp_path):
    """The AVX-512 kernels sum in another order: other bits, the same product up to fp32 rounding."""
    import torch

    on = _in_fresh_python(STATUS_AND_PRODUCT.format(path=str(tmp_path / "on.pt")))
    off = _in_fresh_python(STATUS_AND_PRODUCT.format(path=str(tmp_path / "off.pt")), KOE5_MKL_AVX512="0")
    assert on.split()[0] == "active" and off.split()[0] == "off"
    assert on.split()[1] != off.split()[1]
    on_c, off_c = torch.load(tmp_path / "on.pt"), torch.load(tmp_path / "off.pt")
    # entries are sums of 384 products of magnitude ~20: fp32 rounding allows ~1e-4 either way
    torch.testing.assert_close(on_c, off_c, atol=2e-4, rtol=1e-5)
