"""How inputs are grouped into forward passes.

Padding is the main avoidable CPU cost: inputs are sorted by token length so that each batch holds
inputs of similar length, longest first (an out-of-memory error then shows up on the first batch,
not after minutes of work).
"""

from __future__ import annotations

import numpy as np


def length_sorted_batches(lengths: np.ndarray | list[int], batch_size: int) -> list[np.ndarray]:
    """Split input indices into batches of ``batch_size``, sorted by length, longest first.

    >>> [b.tolist() for b in length_sorted_batches([3, 9, 1, 5], 2)]
    [[1, 3], [0, 2]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
