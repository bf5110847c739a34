"""Hard negatives for (query, positive) pairs, from a dense model or from Korean BM25.

For each query the corpus (given texts plus every positive) is ranked; the query's own positives are
never candidates; the first ``range_min`` ranks are skipped (too close to be safely negative), then
candidates come from ranks up to ``range_max`` (the positives of rows in the query's ``group`` are
never candidates either), and any whose score is within ``margin`` of the
positive's is dropped — the false-negative guard: ``score < positive - margin`` (absolute) or
``score < positive · (1 - margin)`` (relative). ``num_negatives`` are taken, the best-ranked
(``sampling="top"``) or a seeded random choice (``"random"``).

>>> rows, report = mine_hard_negatives(pairs, method="bm25", range_min=2, range_max=20)  # doctest: +SKIP
>>> report.histogram                                                                # doctest: +SKIP
{1: 1480, 0: 20}
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from koe5.errors import InputError

METHODS = ("dense", "bm25")


@dataclass
class MineReport:
    """How many queries got how many negatives (``histogram``), and why candidates were dropped."""

    queries: int = 0
    rows_out: int = 0
    kept_given: int = 0
    dropped_by_margin: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def summary(self) -> str:
        counts = ", ".join(f"{n} with {k}" for k, n in sorted(self.histogram.items(), reverse=True))
        return (
            f"{self.queries} queries mined: {counts}; {self.dropped_by_margin} candidates dropped by the "
            f"margin guard; {self.kept_given} rows kept their own negative; {self.rows_out} rows written"
        )


def _dense_scores(
    encoder: Any, queries: list[str], corpus: list[str], batch_size: int | None, show_progress: bool
):
    q = encoder.encode_queries(queries, batch_size=batch_size, show_progress=show_progress)
    d = encoder.encode_passages(corpus, batch_size=batch_size, show_progress=show_progress)

    def scores(start: int, stop: int) -> np.ndarray:
        return q[start:stop] @ d.T

    return scores


def _bm25_scores(corpus: list[str], queries: list[str], analyzer: Any = None):
    from koe5.search.bm25 import KoreanBM25

    bm25 = KoreanBM25(analyzer)
    bm25.index(corpus)

    def scores(start: int, stop: int) -> np.ndarray:
        return np.stack([bm25.scores(query) for query in queries[start:stop]]).astype(np.float32)

    return scores


def _keep(score: float, positive: float, margin: float, relative: bool) -> bool:
    if relative:
        return score < positive - abs(positive) * margin
    return score < positive - margin


def mine_hard_negatives(
    rows: Sequence[Mapping[str, str]],
    *,
    corpus: Sequence[str] = (),
    method: str = "dense",
    encoder: Any = None,
    analyzer: Any = None,
    num_negatives: int = 1,
    range_min: int = 0,
    range_max: int = 50,
    margin: float = 0.05,
    relative_margin: bool = True,
    sampling: str = "random",
    keep_given: bool = True,
    output_format: str = "triplet",
    seed: int = 42,
    batch_size: int | None = None,
    show_progress: bool = False,
    group_texts: Mapping[str, Iterable[str]] | None = None,
) -> tuple[list[dict[str, str]], MineReport]:
    """Rows with hard negatives, in ko-triplet columns (``query``, ``document``, ``hard_negative``).

    ``rows`` have ``query`` and ``positive`` (other keys, e.g. ``group`` and ``source``, are carried
    over). A row that already has a ``negative`` keeps it when ``keep_given``. ``output_format``:
    ``"triplet"`` — one row per negative; ``"n-tuple"`` — ``hard_negative_1..n`` in one row, only for
    queries that got all ``num_negatives``. ``encoder`` (a :class:`koe5.Encoder`) is needed for
    ``method="dense"``; ``analyzer`` optionally replaces BM25's default Kiwi analyzer.
    ``group_texts`` (group → texts) guards more of a group than its rows' positives: where ``rows`` are
    a sample of the material, the answers of the group's other rows, which are in the corpus.
    """
    _check_arguments(rows, method, encoder, range_min, range_max, num_negatives, sampling, output_format)
    corpus_list, positives, guards = _corpus_and_guards(rows, corpus, group_texts or {})
    # n-tuples need the same number of negatives in every row: a given one counts only when n = 1
    keep = keep_given and (output_format == "triplet" or num_negatives == 1)
    todo = [i for i, r in enumerate(rows) if not (keep and r.get("negative"))]
    queries = list(dict.fromkeys(rows[i]["query"] for i in todo))

    report = MineReport(queries=len(queries), kept_given=len(rows) - len(todo))
    picked: dict[str, list[int]] = {}
    if queries:
        if method == "dense":
            scores_of = _dense_scores(encoder, queries, corpus_list, batch_size, show_progress)
        else:
            scores_of = _bm25_scores(corpus_list, queries, analyzer)
        window = _Window(range_min, range_max, margin, relative_margin, method == "bm25")
        rng = random.Random(seed)
        block = 256
        for start in range(0, len(queries), block):
            scores = scores_of(start, min(start + block, len(queries)))
            for offset, row_scores in enumerate(scores):
                query = queries[start + offset]
                allowed = window.candidates(
                    row_scores, query, corpus_list, positives[query], guards[query], report
                )
                if sampling == "random" and len(allowed) > num_negatives:
                    allowed = sorted(rng.sample(allowed, num_negatives), key=allowed.index)
                picked[query] = allowed[:num_negatives]
    histogram = Counter(len(picked[q]) for q in queries)
    report.histogram = dict(sorted(histogram.items(), reverse=True))
    out = _output_rows(rows, set(todo), picked, corpus_list, output_format, num_negatives)
    report.rows_out = len(out)
    return out, report


def _check_arguments(
    rows, method, encoder, range_min, range_max, num_negatives, sampling, output_format
) -> None:
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "dense" and encoder is None:
        raise InputError("dense mining needs an encoder (koe5.load(...))")
    if not 0 <= range_min < range_max:
        raise InputError(f"need 0 <= range_min < range_max, got {range_min} and {range_max}")
    if num_negatives < 1:
        raise InputError(f"num_negatives must be at least 1, got {num_negatives}")
    if sampling not in ("top", "random"):
        raise InputError(f"sampling must be 'top' or 'random', not {sampling!r}")
    if output_format not in ("triplet", "n-tuple"):
        raise InputError(f"output_format must be 'triplet' or 'n-tuple', not {output_format!r}")
    for i, row in enumerate(rows):
        for key in ("query", "positive"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise InputError(f"row {i + 1}: field {key!r} is missing or empty")


def _corpus_and_guards(
    rows: Sequence[Mapping[str, str]], corpus: Sequence[str], group_texts: Mapping[str, Iterable[str]]
) -> tuple[list[str], dict[str, set[int]], dict[str, set[int]]]:
    """The deduplicated corpus (the given texts plus every positive), and per query the corpus rows of
    its positives and of its group's positives (paraphrases of one programme, one StrategyQA term:
    likely false negatives too), which are never its negatives."""
    texts: dict[str, int] = {}
    for text in [*corpus, *(r["positive"] for r in rows)]:
        texts.setdefault(text, len(texts))
    by_group: dict[str, set[int]] = {}
    for r in rows:
        if r.get("group"):
            by_group.setdefault(r["group"], set()).add(texts[r["positive"]])
    for group, members in group_texts.items():
        by_group.setdefault(group, set()).update(texts[t] for t in members if t in texts)
    positives: dict[str, set[int]] = {}
    guards: dict[str, set[int]] = {}
    for r in rows:
        positives.setdefault(r["query"], set()).add(texts[r["positive"]])
        guards.setdefault(r["query"], set()).update(by_group.get(r.get("group") or "", ()))
    return list(texts), positives, guards


@dataclass(frozen=True)
class _Window:
    """Which ranks may give negatives, and the false-negative guard of the margin below the positive."""

    range_min: int
    range_max: int
    margin: float
    relative: bool
    lexical: bool  # BM25: a text sharing no term with the query is no hard negative

    def candidates(self, row_scores, query: str, corpus: list[str], positives, guards, report) -> list[int]:
        own = positives | guards
        depth = min(self.range_max + len(own) + 1, len(row_scores))  # room for what is skipped below
        top = np.argpartition(-row_scores, depth - 1)[:depth]
        top = top[np.argsort(-row_scores[top], kind="stable")]
        ranked = [int(j) for j in top if int(j) not in own and corpus[int(j)] != query]
        window = ranked[self.range_min : self.range_max]
        floor = min(float(row_scores[j]) for j in positives)  # the weakest positive
        allowed = [j for j in window if _keep(float(row_scores[j]), floor, self.margin, self.relative)]
        report.dropped_by_margin += len(window) - len(allowed)
        if self.lexical:
            allowed = [j for j in allowed if row_scores[j] > 0]
        return allowed


def _output_rows(rows, todo: set[int], picked, corpus: list[str], output_format: str, n: int) -> list[dict]:
    """The mined rows in ko-triplet columns: one per negative, or one n-tuple per complete query."""
    out: list[dict[str, str]] = []
    for i, row in enumerate(rows):
        extra = {k: v for k, v in row.items() if k not in ("query", "positive", "negative")}
        base = {"query": row["query"], "document": row["positive"]}
        negatives = [row["negative"]] if i not in todo else [corpus[j] for j in picked[row["query"]]]
        if output_format == "triplet":
            out.extend({**base, "hard_negative": neg, **extra} for neg in negatives)
        elif len(negatives) == n or i not in todo:
            out.append({**base, **{f"hard_negative_{k}": neg for k, neg in enumerate(negatives, 1)}, **extra})
    return out
