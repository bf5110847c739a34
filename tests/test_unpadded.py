"""The unpadded CPU encoder (koe5/unpadded.py): the padded model's vectors, for the models it covers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from koe5.cpu import onednn
from koe5.cpu.unpadded import UnpaddedEncoder

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch build has no oneDNN")


@pytest.fixture(scope="module")
def st(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def _texts(sample_texts):
    # unsorted lengths, a one-word input, and neighbours of equal length that differ: were a run of
    # equal lengths attended as one sequence, or its inputs swapped, their vectors would change
    texts = ["passage: " + t for t in sample_texts[:5]]
    return [texts[0], "query: 서울", "query: 한국", "query: 수도", *texts[1:], "query: 한국의 수도는?"]


def _compare(st, texts):
    features = st.tokenize(texts)
    with torch.inference_mode():
        want = st(dict(features))["sentence_embedding"]
    want = torch.nn.functional.normalize(want, dim=-1)
    unpadded = UnpaddedEncoder.build(st)
    assert unpadded is not None
    lengths = features["attention_mask"].sum(1).numpy()
    assert max(count for _, count, _ in UnpaddedEncoder.runs(lengths)) >= 2  # a run of different texts
    got = unpadded(features["input_ids"].numpy(), features["attention_mask"].numpy())
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)


def test_same_vectors_as_the_padded_model(st, sample_texts):
    _compare(st, _texts(sample_texts))


def test_cls_pooling(st, sample_texts):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    cls = SentenceTransformer(modules=[st[0], Pooling(384, pooling_mode="cls")], device="cpu")
    assert UnpaddedEncoder.build(cls).pooling == "cls"
    _compare(cls, _texts(sample_texts))


def test_xlm_roberta_positions(tmp_path, st, sample_texts):
    """XLM-R numbers positions from padding_idx + 1: a random small XLM-R checks the offset."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(st.tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=514,
        pad_token_id=st.tokenizer.pad_token_id,
    )
    XLMRobertaModel(config).eval().save_pretrained(tmp_path)
    st.tokenizer.save_pretrained(tmp_path)
    xlmr = SentenceTransformer(modules=[Transformer(str(tmp_path)), Pooling(64, "mean")], device="cpu")
    assert UnpaddedEncoder.build(xlmr).padding_idx == config.pad_token_id
    # a literal "<pad>" inside a text is the padding id: transformers does not count it as a position
    _compare(xlmr, [*_texts(sample_texts), "query: 서울 <pad> 한국"])


def test_models_it_does_not_cover_keep_the_padded_path(st):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    assert UnpaddedEncoder.build(SentenceTransformer(modules=[st[0], Pooling(384, "max")])) is None
    layer = st[0].auto_model.encoder.layer[0].attention.self
    plain = layer.query
    layer.query = torch.nn.Sequential(plain)  # e.g. an adapter around the layer: not plain Linear
    try:
        assert UnpaddedEncoder.build(st) is None
    finally:
        layer.query = plain
    config = st[0].auto_model.config
    for attribute, value in (("hidden_act", "gelu_new"), ("position_embedding_type", "relative_key")):
        missing = not hasattr(config, attribute)  # transformers 5 has no position_embedding_type
        old = getattr(config, attribute, None)
        setattr(config, attribute, value)
        try:
            assert UnpaddedEncoder.build(st) is None, attribute
        finally:
            if missing:
                delattr(config, attribute)
            else:
                setattr(config, attribute, old)
    assert UnpaddedEncoder.build(st) is not None


def test_runs_of_equal_length():
    assert UnpaddedEncoder.runs(np.array([5, 5, 3, 5])) == [(0, 2, 5), (10, 1, 3), (13, 1, 5)]
    assert UnpaddedEncoder.runs(np.array([], dtype=np.int64)) == []


def test_an_input_without_tokens_is_an_error(st):
    unpadded = UnpaddedEncoder.build(st)
    ids = np.array([[0, 5, 2], [1, 1, 1]])
    with pytest.raises(ValueError, match="no tokens"):
        unpadded(ids, np.array([[1, 1, 1], [0, 0, 0]]))
