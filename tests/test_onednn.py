"""The packed oneDNN inference copy: same vectors, the caller's model untouched, an opt-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from koe5.cpu import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch build has no oneDNN")


@pytest.fixture(scope="module")
def st(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def _features(st, texts):
    return dict(st.tokenize(texts))


def test_packed_linear_matches_linear_and_gelu():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 96)
    x = torch.randn(3, 7, 48)
    with torch.inference_mode():
        torch.testing.assert_close(onednn.PackedLinear(linear)(x), linear(x), atol=1e-5, rtol=1e-5)
        fused = onednn.PackedLinear(linear, "gelu")(x)
        torch.testing.assert_close(fused, torch.nn.functional.gelu(linear(x)), atol=1e-5, rtol=1e-5)
        flat, residual = x.reshape(21, 48), torch.randn(21, 96)
        summed = onednn.PackedLinear(linear).add(flat, residual)
        torch.testing.assert_close(summed, linear(flat) + residual, atol=1e-5, rtol=1e-5)


def test_packed_copy_gives_the_same_vectors(st, sample_texts):
    packed = onednn.packed_copy(st)
    texts = ["passage: " + t for t in sample_texts[:6]] + ["query: 짧은 질문"]  # padded batch
    features = _features(st, texts)
    with torch.inference_mode():
        want = st(dict(features))["sentence_embedding"]
        got = packed(dict(features))["sentence_embedding"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_original_model_is_left_as_it_was(st):
    before = {k: v.clone() for k, v in st.state_dict().items()}
    packed = onednn.packed_copy(st)
    layer, packed_layer = st[0].auto_model.encoder.layer[0], packed[0].auto_model.encoder.layer[0]
    assert isinstance(layer.intermediate.dense, torch.nn.Linear)
    assert not isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    assert isinstance(packed_layer.intermediate.dense, onednn.PackedLinear)
    assert packed_layer.intermediate.dense.activation == "gelu"  # exact GELU fused
    assert packed_layer.output.dense.activation == "none"
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())
    after = st.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    # tensors are shared, not copied: the embedding matrix is the same storage
    emb, packed_emb = st[0].auto_model.embeddings, packed[0].auto_model.embeddings
    assert emb.word_embeddings.weight.data_ptr() == packed_emb.word_embeddings.weight.data_ptr()
    assert packed.tokenizer is st.tokenizer


def test_encoder_uses_the_packed_path_and_can_opt_out(tiny_model_dir, monkeypatch, sample_texts):
    import koe5

    enc = koe5.load(str(tiny_model_dir), device="cpu")
    runner = enc.runners["passage"]
    assert runner.unpadded is not None  # BERT with mean pooling: the unpadded encoder, linears packed
    got = enc.encode(sample_texts[:4], "passage")
    want = enc.model.encode(["passage: " + t for t in sample_texts[:4]], normalize_embeddings=True)
    np.testing.assert_allclose((got * want).sum(1), 1.0, atol=1e-5)

    monkeypatch.setenv(onednn.ENV, "0")
    assert not onednn.available()
    plain = koe5.load(str(tiny_model_dir), device="cpu")
    assert plain.runners["passage"].forward_model is plain.model
    assert plain.runners["passage"].unpadded is None
