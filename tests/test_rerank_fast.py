"""koe5's unpadded fp32 CPU path for cross-encoders: the same logits as transformers' padded forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from koe5.cpu.classifier import UnpaddedClassifier

QUERY = "한국의 수도는 어디인가요?"
TEXTS = ["서울은 대한민국의 수도이다.", "부산은 항구 도시이다. 바다가 아름답다. 해운대가 유명하다.", "짧다"]


def _padded_logits(model, features) -> np.ndarray:
    with torch.inference_mode():
        tensors = {k: torch.from_numpy(v) for k, v in features.items()}
        return model(**tensors).logits.numpy()


def test_the_reranker_uses_the_fast_path_and_scores_as_transformers(tiny_reranker_dir):
    from koe5.rerank import Reranker

    reranker = Reranker.load(str(tiny_reranker_dir), device="cpu")
    assert isinstance(reranker.fast, UnpaddedClassifier)
    fast = reranker.score(QUERY, TEXTS, raw=True)
    reranker.fast = None  # transformers' padded forward
    slow = reranker.score(QUERY, TEXTS, raw=True)
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    assert len(set(np.round(fast, 4))) == 3  # the head sees each pair differently


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta"])
def test_bert_and_xlmr_heads_equal_the_padded_forward(kind, tiny_model_dir):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    # a random model of bge-reranker-v2-m3's family (XLM-R) or of the default model's (BERT), small
    config = AutoConfig.for_model(
        kind, vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=130, num_labels=1, pad_token_id=1,
        type_vocab_size=2 if kind == "bert" else 1,
    )  # fmt: skip
    model = AutoModelForSequenceClassification.from_config(config).eval()
    for p in model.parameters():  # transformers 5 leaves some new layers at zero: make every one count
        torch.nn.init.normal_(p, std=0.2)
    fast = UnpaddedClassifier.build(model)
    assert fast is not None
    features = dict(tokenizer([QUERY] * 3, TEXTS, padding=True, return_tensors="np"))
    if kind == "bert":  # segments of a pair: the passage's tokens are type 1
        types = np.zeros_like(features["input_ids"])
        for i, ids in enumerate(features["input_ids"]):
            second = np.flatnonzero(ids == tokenizer.sep_token_id)
            types[i, second[0] + 1 : second[-1] + 1] = 1
        features["token_type_ids"] = types
    expected = _padded_logits(model, features)
    got = fast(features["input_ids"], features["attention_mask"], features.get("token_type_ids")).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_models_it_does_not_cover_keep_transformers(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    assert UnpaddedClassifier.build(model.to(torch.bfloat16)) is None
    assert UnpaddedClassifier.build(torch.nn.Linear(2, 2)) is None
