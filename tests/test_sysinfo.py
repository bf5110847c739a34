"""koe5.sysinfo: what ``koe5 env`` reports, checked against the modules it reports on."""

import json

import torch

import koe5
from koe5 import sysinfo
from koe5.cpu import attention, mkl, onednn
from koe5.cpu.features import cpu_vendor_and_flags
from koe5.runtime.hardware import cpu_has_native_bf16


def test_describe_agrees_with_the_modules(monkeypatch, tmp_path):
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("KOE5_API_KEY", "hidden")
    report = sysinfo.describe()
    json.dumps(report)  # plain JSON-ready values
    assert report["koe5"] == koe5.__version__
    vendor, flags = cpu_vendor_and_flags()
    assert report["cpu"]["vendor"] == (vendor or None)
    assert set(report["cpu"]["instruction_sets"]) <= flags
    assert report["cpu"]["threads"] == torch.get_num_threads()
    assert report["cpu"]["native_bf16"] == cpu_has_native_bf16()
    assert report["speedups"] == {
        "mkl_shim": mkl.status,
        "onednn_linears": onednn.available(),
        "attention_kernel": attention.status,
        "attention_code_path": attention.variant,
    }
    assert attention.status is not None, "describe loads the kernel so that its status is known"
    assert report["cache"] == str(tmp_path / "empty-cache")
    assert report["default_model"] == {"folder": None, "auto": None}  # nothing converted there
    assert report["environment"]["KOE5_CACHE"] == str(tmp_path / "empty-cache")
    assert report["environment"]["KOE5_API_KEY"] == "***"


def test_describe_names_the_converted_default_model(default_model_dir):
    report = sysinfo.describe()
    assert report["default_model"]["folder"] == str(default_model_dir)
    assert report["default_model"]["auto"] == {"query": "torch", "passage": "torch"}  # nothing exported
