"""How inputs are grouped into forward passes.

Padding is the main avoidable CPU cost, so inputs are sorted by token length and each batch holds
inputs of similar length, longest first (an out-of-memory error then shows up on the first batch,
not after minutes of work). A batch is bounded by a token budget rather than a count: on a CPU, 32
inputs of 400 tokens make attention matrices that fall out of cache (fewer long passages per batch
run faster; docs/performance.md), while 32 short queries are better than 8. The budget counts padded
tokens, with attention's quadratic cost folded in as extra tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BatchLimits(NamedTuple):
    """How much one forward pass may hold: inputs, and padded token-equivalents (:func:`token_cost`)."""

    inputs: int
    tokens: int


#: :func:`koe5.load`'s defaults: on a CPU, small passes keep attention in cache; on a GPU, large passes
#: keep it busy.
CPU_BATCH = BatchLimits(32, 4096)
GPU_BATCH = BatchLimits(512, 65536)

#: Attention adds ~4·n·h·layers FLOPs per token to the ~24·h²·layers of the dense layers
#: (h = hidden size): for multilingual-e5-small that is one extra token's worth per 2,300 tokens of
#: sequence length. Used to charge long sequences for their n² cost.
ATTENTION_TOKENS = 2304


def token_cost(n_inputs: int, padded_length: int) -> float:
    """Cost of a batch in token-equivalents: padded tokens plus attention's quadratic share."""
    return n_inputs * padded_length * (1.0 + padded_length / ATTENTION_TOKENS)


def length_sorted_batches(
    lengths: np.ndarray | list[int], batch_size: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Split input indices into batches sorted by length, longest first.

    A batch holds at most ``batch_size`` inputs and, when ``max_tokens`` is given, at most that
    many token-equivalents (:func:`token_cost`); a single input over the budget gets a batch alone.

    >>> [b.tolist() for b in length_sorted_batches([3, 9, 1, 5], 2)]
    [[1, 3], [0, 2]]
    >>> [b.tolist() for b in length_sorted_batches([100, 100, 10, 10, 10], 8, max_tokens=120)]
    [[0], [1], [2, 3, 4]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])  # sorted: the first input sets the padded length
        n = batch_size
        if max_tokens is not None:
            per_input = token_cost(1, max(longest, 1))
            n = max(1, min(batch_size, int(max_tokens // per_input)))
        batches.append(order[start : start + n])
        start += n
    return batches
