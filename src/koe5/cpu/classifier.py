"""fp32 CPU inference of BERT and XLM-R sequence-classification models (cross-encoders) on real tokens.

A reranker's pairs vary in length as much as a corpus's passages do, so the unpadded encoder of
:mod:`koe5.cpu.unpadded` (oneDNN linears, koe5's attention kernel, no padding) serves them as well;
this module adds the two heads rerankers use on its output: BERT's pooler (dense + tanh on ``[CLS]``)
and linear classifier, and XLM-R's classification head (dense + tanh + projection on ``<s>``). Logits
equal transformers' padded forward within float rounding (tests/test_rerank_fast.py).
"""

from __future__ import annotations

import numpy as np
import torch

from koe5.cpu.unpadded import UnpaddedEncoder, covered


class UnpaddedClassifier:
    """Logits ``(n, labels)`` of a ``BertForSequenceClassification`` or
    ``XLMRobertaForSequenceClassification`` for a batch of tokenised pairs. Build with :meth:`build`,
    which returns ``None`` for a model this path does not cover (the caller then runs transformers)."""

    def __init__(self, model) -> None:
        self.kind = model.config.model_type
        encoder = model.bert if self.kind == "bert" else model.roberta
        self.encoder = UnpaddedEncoder(encoder, "cls")
        if self.kind == "bert":
            self.dense = encoder.pooler.dense
            self.out = model.classifier
        else:
            self.dense = model.classifier.dense
            self.out = model.classifier.out_proj

    @classmethod
    def build(cls, model) -> UnpaddedClassifier | None:
        name = type(model).__name__
        try:
            if name == "BertForSequenceClassification":
                encoder, head = model.bert, (model.bert.pooler, model.classifier)
            elif name == "XLMRobertaForSequenceClassification":
                encoder, head = model.roberta, (model.classifier.dense, model.classifier.out_proj)
            else:
                return None
            if any(h is None for h in head) or not covered(encoder):
                return None
            if (
                name == "BertForSequenceClassification"
                and type(model.bert.pooler.activation).__name__ != "Tanh"
            ):
                return None
            return cls(model)
        except Exception:  # anything unexpected: transformers' forward, which always works
            return None

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None
    ) -> torch.Tensor:
        """Logits of right-padded int64 arrays ``(n, width)``; ``token_type_ids`` for BERT pairs."""
        with torch.inference_mode():
            first = self.encoder.first_tokens(input_ids, attention_mask, token_type_ids)
            return self.out(torch.tanh(self.dense(first)))
