"""Scores → a ranking: best first, ties broken by the lower index, cut to ``top_k``.

A pure function over numpy scores, so a caller that scored once (a server that also reports how many
pairs were truncated) ranks without the model.

Example::

    import numpy as np
    from koe5.rerank.ranking import ranked

    ranked(np.array([0.2, 0.9, 0.2]), ["a", "b", "c"], top_k=2)
    # [Ranked(index=1, score=0.9, text='b'), Ranked(index=0, score=0.2, text='a')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from koe5.rerank.inputs import check_top_k


@dataclass(frozen=True)
class Ranked:
    """One candidate in a ranking: its position in the input, its score and its text."""

    index: int
    score: float
    text: str

    def to_dict(self) -> dict:
        return {"index": self.index, "score": self.score, "text": self.text}


def ranked(scores: np.ndarray, texts: Sequence[str], top_k: int | None = None) -> list[Ranked]:
    """The candidates sorted by score, best first; equal scores keep input order (lower index first)."""
    if len(scores) != len(texts):
        raise ValueError(f"{len(scores)} scores for {len(texts)} texts")
    k = check_top_k(top_k, len(texts))
    # a stable sort of the negated scores keeps equal scores in index order
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return [Ranked(int(i), float(scores[i]), texts[i]) for i in order]
