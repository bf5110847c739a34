"""The torch backend's precision, its fp16 overflow guard, fast tokenising and the GPU pipeline."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import torch

import koe5
from koe5 import encoder as encoder_module
from koe5.errors import ModelError
from koe5.runtime.torch_runner import TorchRunner


def _fresh_st(folder):
    from koe5.runtime.torch_runner import load_sentence_transformer

    return load_sentence_transformer(str(folder), "cpu")


def test_fast_tokenize_equals_the_hugging_face_call(tiny, sample_texts):
    texts = ["passage: " + t for t in sample_texts] + ["", "query: x", "서울 " * 600]
    plain = tiny.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    assert tiny.tokenize(texts) == plain


def test_tokenize_falls_back_while_the_tokenizer_truncates(tiny_model_dir):
    enc = koe5.load(str(tiny_model_dir), device="cpu")
    enc.tokenizer.backend_tokenizer.enable_truncation(max_length=5)
    try:
        # the fast path would cut at 5; the Hugging Face call resets truncation as asked
        assert len(enc.tokenize(["서울 " * 50])[0]) > 5
    finally:
        enc.tokenizer.backend_tokenizer.no_truncation()


def test_half_precision_folder_runs_in_fp32_on_cpu(tiny_model_dir, tmp_path, sample_texts):
    st = _fresh_st(tiny_model_dir)
    st.half().save(str(tmp_path / "half"))
    enc = koe5.load(str(tmp_path / "half"), device="cpu")
    assert next(enc.model.parameters()).dtype == torch.float32
    assert enc.runners["passage"].unpadded is not None  # the oneDNN fast path, fp32 only
    reference = koe5.load(str(tiny_model_dir), device="cpu").encode_passages(sample_texts)
    np.testing.assert_allclose(enc.encode_passages(sample_texts), reference, atol=2e-3)


def test_unknown_precision(tiny_model_dir):
    with pytest.raises(ModelError, match="unknown precision 'fp8'"):
        koe5.load(str(tiny_model_dir), device="cpu", precision="fp8")


@pytest.fixture()
def overflowing_st(tiny_model_dir):
    """A model whose last hidden states exceed fp16's range (65,504) but not bf16's."""
    st = _fresh_st(tiny_model_dir)
    with torch.no_grad():
        st[0].auto_model.encoder.layer[-1].output.LayerNorm.weight.mul_(1e5)
    return st


def test_explicit_fp16_overflow_is_an_error(overflowing_st):
    runner = TorchRunner(overflowing_st, "fp16")
    ids, mask = np.array([[0, 5, 6, 2]]), np.ones((1, 4), dtype=np.int64)
    with pytest.raises(ModelError, match=r"fp16 overflowed.*precision='bf16'"):
        runner(ids, mask)


def test_auto_fp16_overflow_switches_to_bf16(overflowing_st, caplog):
    runner = TorchRunner(overflowing_st, "fp16")
    runner.precision = "auto"  # what `auto` is on CUDA; fp16 runs on this CPU too
    ids, mask = np.array([[0, 5, 6, 2], [0, 7, 2, 1]]), np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    with caplog.at_level(logging.WARNING, logger="koe5"):
        out = runner(ids, mask)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    assert runner.dtype == torch.bfloat16 and next(overflowing_st.parameters()).dtype == torch.bfloat16
    assert "switching to bf16" in caplog.text


class _AsyncRunner:
    """Stands in for the CUDA runner: results arrive only when asked for; records the order."""

    pipelined = True

    def __init__(self, inner):
        self.inner, self.events, self.threads = inner, [], set()

    def start(self, input_ids, attention_mask):
        n = sum(1 for e in self.events if e[0] == "start")
        self.events.append(("start", n))
        result = self.inner(input_ids, attention_mask)

        def finish():
            self.events.append(("finish", n))
            return result

        return finish


def _spy_tokenize(encoder, monkeypatch) -> list[tuple[str, int]]:
    """Record ``(thread name, number of texts)`` of each tokenising step of ``encoder``."""
    calls, tokenize = [], encoder.tokenize

    def spy(batch):
        calls.append((threading.current_thread().name, len(batch)))
        return tokenize(batch)

    monkeypatch.setattr(encoder, "tokenize", spy)
    return calls


def test_pipeline_overlaps_batches_and_keeps_order(tiny, sample_texts, monkeypatch):
    monkeypatch.setattr(encoder_module, "PIPELINE_CHUNK", 8)
    texts = [t[: 8 + i] for i, t in enumerate(sample_texts * 3)]  # 45 texts, repeats cut apart
    expected = tiny.encode_passages(texts, batch_size=2)
    fake = _AsyncRunner(tiny.runners["passage"])
    calls = _spy_tokenize(tiny, monkeypatch)
    monkeypatch.setitem(tiny.runners, "passage", fake)
    out = tiny.encode_passages(texts, batch_size=2)
    np.testing.assert_allclose(out, expected, atol=1e-5)  # each row where its text was
    assert [n for _, n in calls] == [8, 8, 8, 8, 8, 5]
    assert all(name.startswith("koe5-tokenize") for name, _ in calls)
    starts = [n for e, n in fake.events if e == "start"]
    assert len(starts) == 5 * 4 + 3  # batches of at most 2 within each chunk
    # each batch is started before the previous one is collected
    for n in starts[1:]:
        assert fake.events.index(("start", n)) < fake.events.index(("finish", n - 1))


def test_cpu_tokenises_in_one_chunk(tiny, sample_texts, monkeypatch):
    monkeypatch.setattr(encoder_module, "PIPELINE_CHUNK", 2)
    calls = _spy_tokenize(tiny, monkeypatch)
    assert not getattr(tiny.runners["passage"], "pipelined", False)
    tiny.encode_passages(sample_texts * 3, batch_size=2)
    assert calls == [(threading.current_thread().name, 45)]


def test_precision_is_part_of_the_cache_fingerprint(tiny, tiny_model_dir):
    from koe5.embcache import model_fingerprint

    assert tiny.precision == "fp32"
    half = koe5.load(str(tiny_model_dir), device="cpu", precision="bf16")
    assert half.precision == "bf16"
    assert model_fingerprint(half) != model_fingerprint(tiny)
    again = koe5.load(str(tiny_model_dir), device="cpu", precision="fp32")
    assert model_fingerprint(again) == model_fingerprint(tiny)


def test_cli_precision(tiny, tiny_model_dir):
    from typer.testing import CliRunner

    from koe5.cli import app

    runner = CliRunner()
    args = ["encode", "-", "--kind", "query", "--model", str(tiny_model_dir)]
    bf16 = runner.invoke(app, [*args, "--precision", "bf16"], input="서울\n")
    assert bf16.exit_code == 0, bf16.output
    row = next(json.loads(line) for line in bf16.stdout.splitlines() if line.startswith("{"))
    fp32 = tiny.encode_queries(["서울"])[0]
    assert not np.allclose(row["embedding"], fp32, atol=1e-6)  # bf16 really ran
    np.testing.assert_allclose(row["embedding"], fp32, atol=2e-2)
    bad = runner.invoke(app, [*args, "--precision", "fp8"], input="서울\n")
    assert bad.exit_code == 2 and "unknown precision 'fp8'" in bad.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pipeline_matches_cpu(tiny_model_dir, sample_texts, monkeypatch):
    monkeypatch.setattr(encoder_module, "PIPELINE_CHUNK", 4)  # several chunks: the pipeline runs
    texts = sample_texts * 3
    cpu = koe5.load(str(tiny_model_dir), device="cpu").encode_passages(texts)
    for precision, tolerance in (("auto", 2e-3), ("fp32", 1e-4)):
        gpu = koe5.load(str(tiny_model_dir), device="cuda", precision=precision)
        assert gpu.runners["passage"].pipelined
        assert gpu.precision == ("fp16" if precision == "auto" else "fp32")
        np.testing.assert_allclose(gpu.encode_passages(texts, batch_size=2), cpu, atol=tolerance)


def test_koe5_threads_sets_both_backends_threads(tiny_model_dir, monkeypatch):
    from koe5.runtime.hardware import cpu_threads

    before = torch.get_num_threads()
    assert cpu_threads() == before  # unset: PyTorch's own count
    monkeypatch.setenv("KOE5_THREADS", "1")
    try:
        koe5.load(str(tiny_model_dir), device="cpu")
        assert torch.get_num_threads() == 1 and cpu_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("KOE5_THREADS", "two")
    with pytest.raises(ModelError, match="KOE5_THREADS must be a positive integer, got 'two'"):
        koe5.load(str(tiny_model_dir), device="cpu")
