"""koe5's AVX-512 / AVX2 attention kernel (koe5/attention.py): PyTorch's attention to float rounding."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from koe5.cpu import attention

needs_kernel = pytest.mark.skipif(
    attention.kernel() is None, reason=f"koe5's attention kernel is not used here ({attention.status})"
)
#: every code path of the kernel this CPU runs (on an AVX-512 machine both: AVX2 is tested there too)
code_paths = pytest.mark.parametrize("code_path", attention.cpu_variants() or ["none"])


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
@code_paths
@pytest.mark.parametrize("d", [32, 64, 128])
def test_matches_pytorch_attention(d, code_path):
    # lengths around the kernel's blocks of 16 keys, 32 keys and 8 query rows, one input alone (its
    # rows split among threads), and a token past the last run that must stay untouched
    runs = _runs([(2, 1), (1, 5), (3, 16), (1, 17), (2, 33), (1, 100), (2, 130), (1, 300)])
    heads = 3
    tokens = int((runs[-1, 0] + runs[-1, 1] * runs[-1, 2]).item())
    torch.manual_seed(d)
    fused = torch.randn(tokens + 1, 3 * heads * d)
    fused[:, : heads * d] *= 3 / d**0.5  # scores of the size trained models give (|s| up to ~15)
    context = torch.full((tokens + 1, heads * d), 7.0)
    assert attention.attend(fused, context, runs, heads, d, code_path)
    want = _reference(fused[:tokens], runs, heads, d)
    torch.testing.assert_close(context[:tokens].double(), want, atol=1e-5, rtol=0)
    assert (context[tokens] == 7.0).all()
    # the same order of error against float64 as PyTorch's own fp32 kernel (here both ~3-8e-6: the
    # rounding of fp32 inputs; over random shapes koe5's was at most ~4x PyTorch's, below 3e-6)
    ours = (context[:tokens].double() - want).abs().max()
    theirs = (_reference(fused[:tokens], runs, heads, d, torch.float32).double() - want).abs().max()
    assert ours < 6 * theirs


@needs_kernel
@code_paths
def test_a_single_head_is_split_among_threads(monkeypatch, code_path):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # 1 (input, head) pair, 4 threads: rows split
    runs, heads, d = _runs([(1, 77)]), 1, 32
    fused = torch.randn(77, 3 * heads * d)
    context = torch.empty(77, heads * d)
    assert attention.attend(fused, context, runs, heads, d, code_path)
    torch.testing.assert_close(context.double(), _reference(fused, runs, heads, d), atol=1e-5, rtol=0)


@needs_kernel
@code_paths
@pytest.mark.parametrize("part", [0, 1, 2])  # Q, K, V
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_give_what_pytorch_gives(part, value, code_path):
    # a model that overflows must not get plausible vectors out of one code path: NaN where PyTorch
    # has NaN (a query's row; every row for a key; a value's column), inf where it has inf
    runs, heads, d = _runs([(1, 21)]), 2, 32
    fused = torch.randn(21, 3 * heads * d, generator=torch.Generator().manual_seed(0))
    fused[5, part * heads * d + 3] = value
    context = torch.empty(21, heads * d)
    assert attention.attend(fused, context, runs, heads, d, code_path)
    want = _reference(fused, runs, heads, d)
    assert torch.equal(context.isnan(), want.isnan())
    torch.testing.assert_close(context.double(), want, atol=1e-5, rtol=0, equal_nan=True)


@needs_kernel
def test_refuses_what_it_cannot_do():
    heads, d = 2, 32
    fused, context = torch.randn(10, 3 * heads * d), torch.empty(10, heads * d)
    assert not attention.attend(fused, context, _runs([(2, 6)]), heads, d)  # runs past the last token
    assert not attention.attend(fused, context, _runs([(1, 0)]), heads, d)  # an empty input
    assert not attention.attend(fused[:, :48], context[:, :16], _runs([(1, 10)]), 1, 16)  # head size 16
    assert not attention.attend(fused.double(), context.double(), _runs([(1, 10)]), heads, d)
    assert not attention.attend(fused, context, _runs([(1, 10)]).int(), heads, d)
    assert not attention.attend(fused, context, _runs([(1, 10)]), heads, d, "sse2")  # no such code path
    assert attention.attend(fused, context, _runs([(1, 10)]), heads, d)


@needs_kernel
def test_refuses_a_code_path_the_cpu_lacks(monkeypatch):
    fused, context = torch.randn(10, 96), torch.empty(10, 32)
    monkeypatch.setattr(attention, "_runnable", ["avx2"])  # as on a CPU without AVX-512
    assert not attention.attend(fused, context, _runs([(1, 10)]), 1, 32, "avx512")
    assert attention.attend(fused, context, _runs([(1, 10)]), 1, 32, "avx2")


def test_code_paths_follow_the_cpu():
    assert attention.cpu_variants({"avx512f", "avx2", "fma"}) == ["avx512", "avx2"]
    assert attention.cpu_variants({"avx2", "fma"}) == ["avx2"]
    assert attention.cpu_variants({"avx2"}) == []  # AVX2 without FMA (a few early VIA/Intel parts)
    assert attention.cpu_variants(set()) == []


@needs_kernel
def test_refuses_what_it_would_read_or_write_wrongly():
    heads, d = 1, 32
    h = heads * d
    fused, context = torch.randn(10, 3 * h), torch.empty(10, h)
    # a 1-D fused (shape[0] == shape[-1] == 3·h, stride 1): rows 1 float apart, reads past the end
    assert not attention.attend(torch.randn(3 * h), torch.empty(3 * h, h), _runs([(1, 3 * h)]), heads, d)
    # context rows overlapping (threads would race on them) or sharing fused's memory
    assert not attention.attend(fused, torch.empty(1, h).expand(10, h), _runs([(1, 10)]), heads, d)
    assert not attention.attend(fused, fused[:, 2 * h :], _runs([(1, 10)]), heads, d)
    # runs overlapping, or starting before the first token
    assert not attention.attend(fused, context, torch.tensor([[0, 1, 10], [2, 1, 5]]), heads, d)
    assert not attention.attend(fused, context, torch.tensor([[-2, 1, 5]]), heads, d)
    assert attention.attend(fused, context, torch.tensor([[5, 1, 5], [0, 1, 5]]), heads, d)


@needs_kernel
def test_refuses_what_would_crash():
    """In a child process: before these checks, runs wrapping int64, the C function given such a
    length and meta tensors were segmentation faults."""
    code = """if True:
        import torch
        from koe5.cpu import attention
        fused, context = torch.randn(10, 96), torch.empty(10, 32)
        # int64 products that wrap past the bound (2 x 2**62 = 2**63 -> negative)
        assert not attention.attend(fused, context, torch.tensor([[0, 2, 2**62]]), 1, 32)
        assert not attention.attend(fused, context, torch.tensor([[0, 2**32, 2**32]]), 1, 32)
        # the C function itself: a buffer size that wraps in int64
        runs = torch.tensor([[0, 1, 2**62]])
        pointers = fused.data_ptr(), context.data_ptr(), runs.data_ptr()
        assert attention.kernel()(*pointers, 1, 1, 32, 96, 32, 1, 1) == -1
        assert attention.kernel()(*pointers, 1, 1, 32, 96, 32, 1, 0) == -1
        # no CPU memory behind the pointers
        meta = fused.to("meta"), context.to("meta")
        assert not attention.attend(*meta, torch.tensor([[0, 1, 10]]), 1, 32)
        print("ok")
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


@pytest.mark.parametrize("setting", ["0", "avx2", "avx1024"])
def test_chosen_by_the_environment(setting):
    code = "import koe5.cpu.attention as a; a.kernel(); print(a.status, a.variant)"
    env = {**os.environ, attention.ENV: setting}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if setting == "0":
        assert out.stdout.split() == ["off", "None"]
    elif attention.kernel() is None:
        return
    elif setting == "avx2" and "avx2" in attention.cpu_variants():
        assert out.stdout.split() == ["active", "avx2"]
    elif setting == "avx1024":  # no such code path: the fastest one, and a warning that says so
        assert out.stdout.split() == ["active", attention.cpu_variants()[0]]
        assert "KOE5_ATTENTION=avx1024 is not a code path this CPU runs" in out.stderr


@needs_kernel
def test_the_unpadded_encoder_uses_it(tiny_model_dir, sample_texts, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from koe5.cpu.unpadded import UnpaddedEncoder

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
    if attention.built_library("_attention_cpu") is None or not attention.cpu_variants():
        pytest.skip("the kernel is not built or this CPU has neither AVX-512 nor AVX2")
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
        monkeypatch.setattr(attention, "variant", None)  # kernel() sets these too: restored after
        monkeypatch.setattr(attention, "_runnable", [])
        monkeypatch.setattr(attention, "_openmp_libraries", iter(maps).__next__)
        got = attention.kernel()
        assert attention.status == want
        assert (got is not None) == (want == "active")
        assert attention.variant == (attention.cpu_variants()[0] if want == "active" else None)


@needs_kernel
def test_threads_may_call_it_at_once():
    """ctypes releases the GIL: two Python threads (the server's batcher and a caller) run the kernel
    at the same time, each in its own OpenMP team, on their own buffers."""
    from concurrent.futures import ThreadPoolExecutor

    heads, d = 4, 32
    runs = _runs([(3, 40), (2, 97)])
    tokens = 3 * 40 + 2 * 97
    inputs = [
        torch.randn(tokens, 3 * heads * d, generator=torch.Generator().manual_seed(i)) for i in range(6)
    ]

    def run(fused):
        context = torch.empty(tokens, heads * d)
        for _ in range(5):
            assert attention.attend(fused, context, runs, heads, d)
        return context

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, inputs))
    for fused, got in zip(inputs, results, strict=True):
        torch.testing.assert_close(got.double(), _reference(fused, runs, heads, d), atol=1e-5, rtol=0)
