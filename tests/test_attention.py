"""koe5's AVX-512 attention kernel (koe5/attention.py): PyTorch's attention to float rounding."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from koe5 import attention

needs_kernel = pytest.mark.skipif(
    attention.kernel() is None, reason=f"koe5's attention kernel is not used here ({attention.status})"
)


def _runs(shape: list[tuple[int, int]]) -> torch.Tensor:
    rows, token = [], 0
    for count, length in shape:
        rows.append((token, count, length))
        token += count * length
    return torch.tensor(rows, dtype=torch.int64).view(-1, 3)


def _reference(
    fused: torch.Tensor, runs: torch.Tensor, heads: int, d: int, dtype=torch.float64
) -> torch.Tensor:
    """PyTorch's attention per run, in float64 (or ``dtype``)."""
    fused = fused.to(dtype)
    out = fused.new_empty(fused.shape[0], heads * d)
    attention.pytorch_attention(fused, out, runs.tolist(), heads, d)
    return out


@needs_kernel
@pytest.mark.parametrize("d", [32, 64, 128])
def test_matches_pytorch_attention(d):
    # lengths around the kernel's blocks of 16 keys, 32 keys and 8 query rows, one input alone (its
    # rows split among threads), and a token past the last run that must stay untouched
    runs = _runs([(2, 1), (1, 5), (3, 16), (1, 17), (2, 33), (1, 100), (2, 130), (1, 300)])
    heads = 3
    tokens = int((runs[-1, 0] + runs[-1, 1] * runs[-1, 2]).item())
    torch.manual_seed(d)
    fused = torch.randn(tokens + 1, 3 * heads * d)
    fused[:, : heads * d] *= 3 / d**0.5  # scores of the size trained models give (|s| up to ~15)
    context = torch.full((tokens + 1, heads * d), 7.0)
    assert attention.attend(fused, context, runs, heads, d)
    want = _reference(fused[:tokens], runs, heads, d)
    torch.testing.assert_close(context[:tokens].double(), want, atol=1e-5, rtol=0)
    assert (context[tokens] == 7.0).all()
    # as close to float64 as PyTorch's own fp32 kernel (both ~3-8e-6 here: the rounding of fp32 inputs)
    ours = (context[:tokens].double() - want).abs().max()
    theirs = (_reference(fused[:tokens], runs, heads, d, torch.float32).double() - want).abs().max()
    assert ours < 1.5 * theirs


@needs_kernel
def test_a_single_head_is_split_among_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # 1 (input, head) pair, 4 threads: rows split
    runs, heads, d = _runs([(1, 77)]), 1, 32
    fused = torch.randn(77, 3 * heads * d)
    context = torch.empty(77, heads * d)
    assert attention.attend(fused, context, runs, heads, d)
    torch.testing.assert_close(context.double(), _reference(fused, runs, heads, d), atol=1e-5, rtol=0)


@needs_kernel
def test_refuses_what_it_cannot_do():
    heads, d = 2, 32
    fused, context = torch.randn(10, 3 * heads * d), torch.empty(10, heads * d)
    assert not attention.attend(fused, context, _runs([(2, 6)]), heads, d)  # runs past the last token
    assert not attention.attend(fused, context, _runs([(1, 0)]), heads, d)  # an empty input
    assert not attention.attend(fused[:, :48], context[:, :16], _runs([(1, 10)]), 1, 16)  # head size 16
    assert not attention.attend(fused.double(), context.double(), _runs([(1, 10)]), heads, d)
    assert not attention.attend(fused, context, _runs([(1, 10)]).int(), heads, d)
    assert attention.attend(fused, context, _runs([(1, 10)]), heads, d)


def test_switched_off_by_the_environment():
    code = "import koe5.attention as a; a.kernel(); print(a.status)"
    env = {**os.environ, attention.ENV: "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "off"


@needs_kernel
def test_the_unpadded_encoder_uses_it(tiny_model_dir, sample_texts, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from koe5.unpadded import UnpaddedEncoder

    st = SentenceTransformer(str(tiny_model_dir), device="cpu")
    encoder = UnpaddedEncoder.build(st)
    assert encoder is not None and encoder.attention_kernel
    features = st.tokenize(["query: 서울", "query: 한국", *("passage: " + t for t in sample_texts[:4])])
    ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy()
    calls = []
    attend = attention.attend
    monkeypatch.setattr(attention, "attend", lambda *a: calls.append(1) or attend(*a))
    with_kernel = encoder(ids, mask)
    assert len(calls) == st[0].auto_model.config.num_hidden_layers  # one call a layer
    encoder.attention_kernel = False
    torch.testing.assert_close(with_kernel, encoder(ids, mask), atol=2e-6, rtol=0)


def test_never_a_second_openmp_runtime(monkeypatch):
    """The kernel is used only where it shares PyTorch's OpenMP threads."""
    if (
        attention.built_library("_attention_cpu") is None
        or "avx512f" not in attention.cpu_vendor_and_flags()[1]
    ):
        pytest.skip("the kernel is not built or this CPU has no AVX-512")
    monkeypatch.delenv(attention.ENV, raising=False)
    torch_gomp, system_gomp = "torch/lib/libgomp.so.1", "/usr/lib/libgomp.so.1"
    cases = [
        ([[]], "other OpenMP"),  # PyTorch runs on no GNU OpenMP here: the kernel is not even loaded
        ([[torch_gomp], [torch_gomp, system_gomp]], "other OpenMP"),  # loading it brought a second one
        ([[torch_gomp], [torch_gomp]], "active"),  # it shares PyTorch's
    ]
    for maps, want in cases:
        monkeypatch.setattr(attention, "status", None)
        monkeypatch.setattr(attention, "_kernel", None)
        monkeypatch.setattr(attention, "_openmp_libraries", iter(maps).__next__)
        got = attention.kernel()
        assert attention.status == want
        assert (got is not None) == (want == "active")
