"""Hybrid ranking: fuse a dense and a BM25 ranking into one.

Three ways, each with a weight ``w`` for the dense side (``1 - w`` for BM25):

- ``"rrf"``, reciprocal-rank fusion: ``w / (rrf_k + dense rank) + (1 - w) / (rrf_k + BM25 rank)``,
  ranks from 1, a side where the candidate is missing adds nothing. Uses ranks only, so the two
  score scales never meet.
- ``"minmax"``: each side's scores are min-max scaled to [0, 1] over its own candidates, then
  ``w * dense + (1 - w) * bm25``.
- ``"dbsf"``, distribution-based score fusion: each side's scores are scaled by their own
  distribution, ``(s - (mean - 3 sd)) / (6 sd)`` over its candidates, so one outlying best match
  stands out instead of defining the top of the scale as in min-max; then combined as min-max is.

In ``minmax`` and ``dbsf``, a candidate one side did not return gets that side's lowest scaled score
(it ranked below all of them).

``adaptive=(low, high)`` gives each query its own dense weight instead of ``w``: ``high`` when BM25's
best match covers none of the query's IDF mass, ``low`` when it covers all of it, linear between.
The coverage, ``best BM25 score / sum of the IDF of the query's distinct known terms`` (capped at
1), is about the share of the query BM25's best document contains: a query whose words the
collection answers word for word leans on BM25, a paraphrase leans on the model. It is passed to
:meth:`Fusion.fuse`; without it the fixed ``weight`` is used.

``confidence=(slope, bias, coverage_weight)`` together with ``adaptive`` sets the weight from how
sure each side is instead: a side's *peak* is how far its best score stands above its top ``depth``
scores, in their own standard deviations (a z-score; a flat list that cannot tell its candidates
apart has a low peak). The dense weight is ``low + (high - low) * sigmoid(slope * (dense peak - BM25
peak) + bias - coverage_weight * coverage)``: the side with the sharper peak leads, and a query whose
words BM25 covers leans on BM25. Long pages that mix topics make the model's list flat and BM25's
sharp, which a coverage alone does not see.

Each side contributes its top ``depth`` candidates. How :data:`DEFAULT_FUSION` was chosen, on dev
tasks built from the training material and never on the bundled benchmark, is in docs/search.md.

Example::

    from koe5.search.hybrid import Fusion

    Fusion("rrf", weight=0.5).fuse({"a": 0.9, "b": 0.8}, {"b": 12.0, "c": 3.0})
    # {'b': 0.01626..., 'a': 0.00819..., 'c': 0.00806...}
    Fusion("minmax", weight=0.4).fuse({"a": 0.9, "b": 0.8}, {"b": 12.0, "c": 3.0})
    # {'b': 0.6, 'a': 0.4, 'c': 0.0}
    Fusion("minmax", adaptive=(0.2, 0.8)).fuse({"a": 0.9, "b": 0.8}, {"b": 12.0, "c": 3.0}, coverage=0.5)
    # dense weight 0.5 for this query: {'a': 0.5, 'b': 0.5, 'c': 0.0}
    Fusion("dbsf", adaptive=(0.2, 0.8), confidence=(0.5, 0.0, 2.0)).label   # koe5's default
    # 'dbsf-adaptive-0.2-0.8-confidence-0.5-0-2'
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np

from koe5.errors import InputError

K = TypeVar("K", bound=Hashable)

METHODS = ("rrf", "minmax", "dbsf")


@dataclass(frozen=True)
class Fusion:
    """How to combine a dense and a BM25 ranking (see the module docstring)."""

    method: str = "minmax"
    weight: float = 0.4
    rrf_k: int = 60
    depth: int = 100
    #: (low, high): the dense weight per query from BM25's coverage of the query, or None: ``weight``
    adaptive: tuple[float, float] | None = None
    #: (slope, bias, coverage_weight): with ``adaptive``, the weight from each side's peak (see above)
    confidence: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown fusion method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0.0 <= self.weight <= 1.0:
            raise InputError(f"fusion weight must be between 0 and 1, got {self.weight}")
        if self.rrf_k < 0 or self.depth < 1:
            raise InputError(f"need rrf_k >= 0 and depth >= 1 (got {self.rrf_k}, {self.depth})")
        if self.adaptive is not None:
            low, high = self.adaptive  # a manifest gives a list
            if not 0.0 <= low <= high <= 1.0:
                raise InputError(f"adaptive weights need 0 <= low <= high <= 1, got {low}, {high}")
            object.__setattr__(self, "adaptive", (float(low), float(high)))
        if self.confidence is not None:
            if self.adaptive is None:
                raise InputError("a confidence fusion needs adaptive=(low, high), the range of its weight")
            slope, bias, coverage_weight = self.confidence
            object.__setattr__(self, "confidence", (float(slope), float(bias), float(coverage_weight)))

    def to_dict(self) -> dict:
        """The settings as JSON has them (a manifest compares them after a round trip)."""
        out = asdict(self)
        if self.adaptive is not None:
            out["adaptive"] = list(self.adaptive)
        if self.confidence is not None:
            out["confidence"] = list(self.confidence)
        return out

    @property
    def label(self) -> str:
        """A short name of the setting, e.g. ``minmax-0.4``, ``dbsf-adaptive-0.1-0.8`` or
        ``dbsf-adaptive-0.2-0.8-confidence-0.5-0-2``."""
        if self.adaptive is None:
            return f"{self.method}-{self.weight:g}"
        label = f"{self.method}-adaptive-{self.adaptive[0]:g}-{self.adaptive[1]:g}"
        if self.confidence is not None:
            label += "-confidence-" + "-".join(f"{v:g}" for v in self.confidence)
        return label

    def dense_weight(self, coverage: float | None, peaks: tuple[float, float] | None = None) -> float:
        """The dense side's weight for a query whose BM25 coverage is ``coverage`` (0 to 1) and whose
        dense and BM25 lists have the ``peaks`` (:func:`peak`) given; a confidence fusion reads a
        missing coverage as 0 and needs the peaks (without them it is an :class:`InputError`, not the
        coverage ramp of its range, which would be another fusion)."""
        if self.adaptive is None:
            return self.weight
        low, high = self.adaptive
        covered = min(max(coverage or 0.0, 0.0), 1.0)
        if self.confidence is not None:
            if peaks is None:
                raise InputError(
                    f"{self.label} weighs each query by the peaks of its two lists: pass peaks=(dense, bm25)"
                )
            slope, bias, coverage_weight = self.confidence
            x = slope * (peaks[0] - peaks[1]) + bias - coverage_weight * covered
            return low + (high - low) / (1.0 + math.exp(-min(max(x, -50.0), 50.0)))
        if coverage is None:
            return self.weight
        return high - (high - low) * covered

    def fuse(
        self, dense: Mapping[K, float], sparse: Mapping[K, float], *, coverage: float | None = None
    ) -> dict[K, float]:
        """Fused scores of the union of both sides' top ``depth`` candidates, best first.

        ``coverage``: the query's BM25 coverage (:func:`coverage`), used by ``adaptive``.
        Ties keep dense order first, then BM25 order, so the result is deterministic.
        """
        dense_top = _top(dense, self.depth)
        sparse_top = _top(sparse, self.depth)
        peaks = None
        if self.confidence is not None:
            peaks = (peak([dense[k] for k in dense_top]), peak([sparse[k] for k in sparse_top]))
        w = self.dense_weight(coverage, peaks)
        fused: dict[K, float] = {}
        if self.method == "rrf":
            for rank, key in enumerate(dense_top, 1):
                fused[key] = w / (self.rrf_k + rank)
            for rank, key in enumerate(sparse_top, 1):
                fused[key] = fused.get(key, 0.0) + (1 - w) / (self.rrf_k + rank)
        else:
            scale = _minmax if self.method == "minmax" else _distribution
            a, b = scale(dense, dense_top), scale(sparse, sparse_top)
            low_a, low_b = min(a.values(), default=0.0), min(b.values(), default=0.0)
            for key in dict.fromkeys(dense_top + sparse_top):
                fused[key] = w * a.get(key, low_a) + (1 - w) * b.get(key, low_b)
        return dict(sorted(fused.items(), key=lambda item: -item[1]))


def coverage(best_bm25: float | None, idf_total: float) -> float | None:
    """BM25's coverage of a query: its best score over the IDF sum of the query's distinct known
    terms, capped at 1 (with tf 1 at average length, a term adds its IDF to the score). ``None`` when
    BM25 found nothing to compare."""
    if best_bm25 is None or idf_total <= 0:
        return None
    return min(1.0, float(best_bm25) / idf_total)


def peak(scores: list[float]) -> float:
    """How far the best of ``scores`` stands above them all, in their standard deviations; 0 for
    fewer than three scores or a flat list (nothing stands out)."""
    if len(scores) < 3:
        return 0.0
    values = np.asarray(scores, dtype=np.float64)
    sd = float(values.std())
    return 0.0 if sd == 0.0 else float((values.max() - values.mean()) / sd)


def _top(scores: Mapping[K, float], depth: int) -> list[K]:
    return sorted(scores, key=lambda key: -scores[key])[:depth]


def _minmax(scores: Mapping[K, float], keys: list[K]) -> dict[K, float]:
    if not keys:
        return {}
    values = [float(scores[k]) for k in keys]
    high, low = max(values), min(values)
    if high == low:  # one candidate, or all tied: all equally good
        return dict.fromkeys(keys, 1.0)
    return {k: (v - low) / (high - low) for k, v in zip(keys, values, strict=True)}


def _distribution(scores: Mapping[K, float], keys: list[K]) -> dict[K, float]:
    if not keys:
        return {}
    values = [float(scores[k]) for k in keys]
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    if sd == 0:  # one candidate, or all tied
        return dict.fromkeys(keys, 1.0)
    return {k: (v - mean + 3 * sd) / (6 * sd) for k, v in zip(keys, values, strict=True)}


#: The default fusion of ``Index.search(mode="hybrid")``, ``HybridRetriever`` and new indexes.
#: Chosen by ``benchmarks/hybrid_fusion.py`` on dev tasks from the training material (docs/search.md).
DEFAULT_FUSION = Fusion("dbsf", weight=0.4, depth=100, adaptive=(0.2, 0.8), confidence=(0.5, 0.0, 2.0))
