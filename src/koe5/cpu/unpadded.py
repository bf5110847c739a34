"""fp32 CPU inference of BERT-family encoders on the real tokens only, without padding.

Why by hand: a padded batch spends its matrix work on padding too (11-14 % of the tokens of koe5's
64-passage speed benchmark even with length-sorted batches), and transformers hands attention a
(batch, 1, n, n) mask that makes PyTorch's CPU attention kernel slower still. transformers has no
unpadded CPU path (its variable-length attention is flash-attn, CUDA only), and sentence-transformers
always pads. So for the architectures E5 models use (``BertModel``, ``XLMRobertaModel``; absolute
positions, post-LayerNorm, exact GELU), pooled by mean or CLS, koe5 runs the encoder itself:

* the tokens of all inputs in one ``(tokens, hidden)`` matrix: every linear layer (through oneDNN,
  see :mod:`koe5.cpu.onednn`; Q, K and V fused into one product, 1/√d folded into Q's weights, residual
  sums fused into the products before each LayerNorm) and every LayerNorm sees real tokens only;
* attention with no mask over runs of inputs of the same length (batches come sorted by length, so
  equal lengths are neighbours): koe5's kernel (:mod:`koe5.cpu.attention`, AVX-512 or AVX2), one call a layer,
  reading the fused Q/K/V output and writing the context rows; elsewhere one call of PyTorch's
  ``scaled_dot_product_attention`` per run on strided views of the fused output.

``benchmarks/cpu_speed.py`` measures it against the padded path with the same packed linears
(docs/performance.md); vectors equal that path's within 2e-6. Inputs are right-padded (as koe5 pads them).
Anything else (other architectures, pooling modes, ``include_prompt=False``, adapters around the
linear layers, half precision) keeps the padded path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from koe5.cpu import attention
from koe5.cpu.onednn import PackedLinear
from koe5.runtime.pooling import pooling_name

_POOLING = ("mean", "cls")


def _pooling_mode(pooling) -> str | None:
    # a Pooling module keeps its config as attributes: ``pooling_mode``, or one flag per mode before 5.2
    mode = pooling_name({**vars(pooling), "pooling_mode": getattr(pooling, "pooling_mode", None)})
    return mode if mode in _POOLING else None


def _layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


class UnpaddedEncoder:
    """Embeddings of ``(input_ids, attention_mask)`` batches, computed on the unpadded tokens.

    Build with :meth:`build`, which returns ``None`` for a model this path does not cover. Shares every
    tensor with the model except the packed linear weights; the model itself is not changed.
    """

    def __init__(self, bert, pooling: str) -> None:
        config = bert.config
        self.hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.head_dim = self.hidden // self.heads
        self.pooling = pooling
        #: koe5's attention kernel serves this head size here (:mod:`koe5.cpu.attention`)
        self.attention_kernel = attention.available(self.head_dim)
        emb = bert.embeddings
        self.word = emb.word_embeddings.weight
        self.positions = emb.position_embeddings.weight
        self.token_types = emb.token_type_embeddings.weight
        self.token_type = self.token_types[0]
        self.embedding_norm = emb.LayerNorm
        #: XLM-R numbers positions from its padding index + 1, counting only tokens that are not the
        #: padding id (as transformers does, also for a literal "<pad>" inside a text); BERT from 0.
        self.padding_idx = emb.word_embeddings.padding_idx if config.model_type == "xlm-roberta" else None
        scale = self.head_dim**-0.5
        self.layers = []
        for layer in bert.encoder.layer:
            att = layer.attention.self
            qkv = torch.nn.Linear(self.hidden, 3 * self.hidden)
            with torch.no_grad():
                qkv.weight.copy_(torch.cat([att.query.weight * scale, att.key.weight, att.value.weight]))
                qkv.bias.copy_(torch.cat([att.query.bias * scale, att.key.bias, att.value.bias]))
            self.layers.append(
                (
                    PackedLinear(qkv),
                    PackedLinear(layer.attention.output.dense),
                    layer.attention.output.LayerNorm,
                    PackedLinear(layer.intermediate.dense, "gelu"),
                    PackedLinear(layer.output.dense),
                    layer.output.LayerNorm,
                )
            )

    @classmethod
    def build(cls, model) -> UnpaddedEncoder | None:
        """For a sentence-transformers model of Transformer → Pooling (mean/CLS) [→ Normalize] over a
        fp32 BERT or XLM-R encoder; ``None`` otherwise."""
        try:
            return cls._build(model)
        except Exception:  # anything unexpected in the model: the padded path, which always works
            return None

    @classmethod
    def _build(cls, model) -> UnpaddedEncoder | None:
        modules = list(model)
        if not 2 <= len(modules) <= 3 or type(modules[0]).__name__ != "Transformer":
            return None
        if type(modules[1]).__name__ != "Pooling" or not getattr(modules[1], "include_prompt", True):
            return None
        if len(modules) == 3 and type(modules[2]).__name__ != "Normalize":
            return None
        pooling = _pooling_mode(modules[1])
        bert = getattr(modules[0], "auto_model", None)
        if pooling is None or not covered(bert):
            return None
        return cls(bert, pooling)

    @staticmethod
    def runs(lengths: np.ndarray) -> list[tuple[int, int, int]]:
        """``(first token, inputs, length)`` for each run of neighbouring inputs of equal length.

        >>> UnpaddedEncoder.runs(np.array([5, 5, 3, 5]))
        [(0, 2, 5), (10, 1, 3), (13, 1, 5)]
        """
        runs, token, i = [], 0, 0
        while i < len(lengths):
            j = i
            while j < len(lengths) and lengths[j] == lengths[i]:
                j += 1
            runs.append((token, j - i, int(lengths[i])))
            token += (j - i) * int(lengths[i])
            i = j
        return runs

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> torch.Tensor:
        """Unit-length embeddings ``(n, hidden)`` of a batch of int64 arrays ``(n, width)``."""
        with torch.inference_mode():
            x, runs = self.hidden_states(input_ids, attention_mask)
            pooled = x.new_empty(len(input_ids), self.hidden)
            row = 0
            for start, count, length in runs:
                seqs = x[start : start + count * length].view(count, length, self.hidden)
                pooled[row : row + count] = seqs.mean(1) if self.pooling == "mean" else seqs[:, 0]
                row += count
            return F.normalize(pooled, dim=-1)

    def first_tokens(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None
    ) -> torch.Tensor:
        """The last layer's state of each input's first token (``[CLS]`` / ``<s>``), ``(n, hidden)``:
        what a sequence-classification head reads."""
        with torch.inference_mode():
            x, _ = self.hidden_states(input_ids, attention_mask, token_type_ids)
            lengths = attention_mask.astype(bool).sum(1)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            return x[torch.from_numpy(starts)]

    def hidden_states(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None
    ) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
        """The last layer's ``(tokens, hidden)`` states of the real tokens, input after input, and the
        runs of equal lengths (:meth:`runs`). ``token_type_ids``: the segments of a pair (BERT), else 0."""
        keep = attention_mask.astype(bool)
        lengths = keep.sum(1)
        if (lengths == 0).any():
            raise ValueError("an input has no tokens (all-zero attention mask)")
        runs = self.runs(lengths)
        heads, d = self.heads, self.head_dim
        run_table = torch.tensor(runs, dtype=torch.int64).view(-1, 3)
        # row-major boolean indexing: the tokens of input 0, then input 1, ...
        tokens = torch.from_numpy(input_ids[keep])
        if self.padding_idx is None:
            positions = np.cumsum(keep, axis=1) - 1
        else:
            counted = keep & (input_ids != self.padding_idx)
            positions = np.cumsum(counted, axis=1) * counted + self.padding_idx
        positions = torch.from_numpy(positions[keep])
        if token_type_ids is None:
            types = self.token_type
        else:
            types = self.token_types[torch.from_numpy(np.ascontiguousarray(token_type_ids[keep]))]
        x = self.word[tokens] + types + self.positions[positions]
        x = _layer_norm(x, self.embedding_norm)
        for qkv, out, norm1, up, down, norm2 in self.layers:
            fused = qkv(x)
            context = torch.empty_like(x)
            if not (self.attention_kernel and attention.attend(fused, context, run_table, heads, d)):
                attention.pytorch_attention(fused, context, runs, heads, d)
            x = _layer_norm(out.add(context, x), norm1)  # residual sums done by oneDNN
            x = _layer_norm(down.add(up(x), x), norm2)
        return x, runs


def covered(bert) -> bool:
    """Whether this path computes ``bert`` (a transformers encoder) exactly: fp32 BERT or XLM-R on the
    CPU, absolute positions, exact GELU, plain linear layers."""
    config = getattr(bert, "config", None)
    if config is None:
        return False
    return not (
        type(bert).__name__ not in ("BertModel", "XLMRobertaModel")
        or config.model_type not in ("bert", "xlm-roberta")
        or getattr(config, "pruned_heads", None)
        or (config.model_type == "xlm-roberta" and bert.embeddings.word_embeddings.padding_idx is None)
        or getattr(config, "position_embedding_type", None) not in (None, "absolute")
        or getattr(config, "is_decoder", False)
        or config.hidden_act != "gelu"
        or config.hidden_size % config.num_attention_heads
        or any(p.dtype != torch.float32 or p.device.type != "cpu" for p in bert.parameters())
        # exactly torch's Linear everywhere: adapters (LoRA) or quantised layers keep the padded path
        or any(
            type(m) is not torch.nn.Linear
            for layer in bert.encoder.layer
            for m in (
                layer.attention.self.query,
                layer.attention.self.key,
                layer.attention.self.value,
                layer.attention.output.dense,
                layer.intermediate.dense,
                layer.output.dense,
            )
        )
    )
