"""Retrieval metrics with the semantics of MTEB 1.20.1's ``RetrievalEvaluator``, computed without pytrec_eval.

MTEB scores a run with pytrec_eval (trec_eval's ``ndcg_cut``, ``map_cut``, ``recall``, ``P``) and its own
MRR. :func:`evaluate_run` reproduces both, so koe5's result files match MTEB's to the last digit while
pytrec_eval stays a test-only dependency. :func:`run_from_scores` turns a query × document score matrix
into the ``{query_id: {doc_id: score}}`` run that :func:`evaluate_run` takes.

>>> qrels = {"q1": {"d1": 1}, "q2": {"d3": 2, "d4": 1}}
>>> run = {"q1": {"d1": 0.9, "d2": 0.5}, "q2": {"d4": 0.8, "d3": 0.7}}
>>> m = evaluate_run(qrels, run, ks=(1, 10))
>>> m["recall_at_1"], m["precision_at_1"], m["mrr_at_10"]
(0.75, 1.0, 1.0)

What is computed, and why exactly so (sources: mteb 1.20.1 wheel, ``evaluation/evaluators/
RetrievalEvaluator.py`` ``evaluate`` and ``utils.py`` ``mrr``; trec_eval ``form_res_rels.c``,
``m_ndcg_cut.c``; pytrec-eval-terrier 0.5.11, checked against it in ``tests/test_metrics.py``):

- Ranking (all measures but MRR): trec_eval re-sorts every query by score descending, the scores
  compared as C ``float`` (float32: 0.1 and 0.1 + 1e-9 tie), ties broken by document id *descending*
  (``strcmp(ptr2->docno, ptr1->docno)``). The rank a run may carry is ignored.
- A document is relevant when its grade is >= 1 (trec_eval's default ``relevance_level``); grades <= 0
  and unjudged documents are not relevant and gain nothing.
- ``recall_at_k`` = relevant in top k / relevant judged; ``precision_at_k`` = relevant in top k / k,
  even when the ranking is shorter than k; ``map_at_k`` = sum of precision at each relevant rank <= k,
  over all relevant judged (not min(k, relevant)); ``ndcg_at_k`` = DCG with linear gain = grade and
  discount log2(rank + 1), over the ideal DCG of the query's own grades. A query with no relevant
  document scores 0 on all four.
- Which queries count for these four: those in the run that have at least one judgement in qrels
  (pytrec_eval skips run queries absent from qrels; pytrec-eval-terrier 0.5.11 also drops qrels entries
  with no judgement, while MTEB's MRR still counts them).
  A query with an empty ranking counts, with zeros; so does a query judged only with grade 0. Queries
  judged but absent from the run do not count: MTEB's retriever always returns every query.
- ``mrr_at_k`` is MTEB's own: the run's documents sorted by raw score with Python's stable sort (ties
  keep the run's insertion order, *not* trec_eval's), 1/rank of the first document with grade > 0 in
  the top k, averaged over every run query present in qrels (MTEB raises KeyError on the others; koe5
  skips them).
- MTEB rounds the means of ndcg/map/recall/precision to 5 decimals and leaves MRR unrounded; so does
  ``round_to=5``. ``f1_at_k`` = 2PR/(P+R) from the reported P@k and R@k (koe5's addition, the measure
  the KURE leaderboard shows), rounded like them. ``main_score`` is ``ndcg_at_10``, MTEB's main score
  for every Korean retrieval task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from koe5.errors import InputError

#: The cut-offs MTEB 1.20.1 reports for retrieval tasks.
MTEB_KS = (1, 3, 5, 10, 20, 100, 1000)

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


def _trec_order(doc_scores: Mapping[str, float], depth: int) -> list[str]:
    """The top ``depth`` document ids as trec_eval ranks them (float32 score desc, then id desc)."""
    if not doc_scores:
        return []
    ids = list(doc_scores)
    scores = np.fromiter(doc_scores.values(), dtype=np.float64, count=len(ids))
    if np.isnan(scores).any():
        raise InputError("a run score is NaN; rank it (e.g. as -1, as MTEB does) before evaluating")
    # trec_eval keeps scores as C floats: values that differ only beyond float32 precision tie.
    keyed = sorted(zip(scores.astype(np.float32).tolist(), ids, strict=True), reverse=True)
    return [doc for _, doc in keyed[:depth]]


def _mteb_order(doc_scores: Mapping[str, float], depth: int) -> list[str]:
    """The top ``depth`` ids as MTEB's MRR ranks them: stable sort on the raw score, descending."""
    ranked = sorted(doc_scores.items(), key=lambda item: item[1], reverse=True)
    return [doc for doc, _ in ranked[:depth]]


def _query_measures(grades: Mapping[str, int], ranking: list[str], ks: Sequence[int]) -> np.ndarray:
    """Rows (ndcg, map, recall, precision), one per k, for one query, as trec_eval computes them."""
    positive = sorted((g for g in grades.values() if g >= 1), reverse=True)
    num_rel = len(positive)
    # Running totals after each rank; a cut-off past the end of the ranking takes the last ones.
    rel_ret, ap_sum, dcg = [0], [0.0], [0.0]
    for i, doc in enumerate(ranking):
        g = grades.get(doc, 0)
        hit = g >= 1
        rel_ret.append(rel_ret[-1] + hit)
        ap_sum.append(ap_sum[-1] + (rel_ret[-1] / (i + 1) if hit else 0.0))
        dcg.append(dcg[-1] + (g / math.log2(i + 2) if g > 0 else 0.0))
    ideal = [0.0]
    for i, g in enumerate(positive[: max(ks)]):
        ideal.append(ideal[-1] + g / math.log2(i + 2))
    out = np.zeros((len(ks), 4))
    for j, k in enumerate(ks):
        n = min(k, len(ranking))
        idcg = ideal[min(k, len(ideal) - 1)]
        out[j, 0] = dcg[n] / idcg if idcg > 0 else dcg[n]
        if num_rel:
            out[j, 1] = ap_sum[n] / num_rel
            out[j, 2] = rel_ret[n] / num_rel
        out[j, 3] = rel_ret[n] / k
    return out


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def evaluate_run(
    qrels: Qrels,
    run: Run,
    ks: Iterable[int] = MTEB_KS,
    *,
    round_to: int | None = 5,
) -> dict[str, float]:
    """MTEB's retrieval scores of ``run`` against ``qrels``, keyed as in MTEB's result files.

    Returns ``ndcg_at_k``, ``map_at_k``, ``recall_at_k``, ``precision_at_k``, ``mrr_at_k`` and
    ``f1_at_k`` for every k, and ``main_score`` (= ``ndcg_at_10``) when 10 is among ``ks``. With
    ``round_to=None`` nothing is rounded. See the module docstring for the exact semantics.

    >>> evaluate_run({"q": {"a": 2, "b": 1}}, {"q": {"b": 0.9, "a": 0.1}}, ks=(1,))["ndcg_at_1"]
    0.5
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise InputError(f"cut-offs must be positive integers, got {ks}")
    depth = max(ks)

    sums = np.zeros((len(ks), 4))
    n_trec = 0
    rr = [0.0] * len(ks)
    n_mrr = 0
    for qid, doc_scores in run.items():
        grades = qrels.get(qid)
        if grades is None:
            continue
        n_mrr += 1
        relevant = {doc for doc, g in grades.items() if g > 0}
        for rank, doc in enumerate(_mteb_order(doc_scores, depth), start=1):
            if doc in relevant:
                for j, k in enumerate(ks):
                    if rank <= k:
                        rr[j] += 1.0 / rank
                break
        if not grades:
            continue
        n_trec += 1
        sums += _query_measures(grades, _trec_order(doc_scores, depth), ks)
    if n_trec == 0:
        raise InputError("no query of the run has relevance judgements in qrels (check the query ids)")

    means = sums / n_trec

    def rounded(x: float) -> float:
        return round(float(x), round_to) if round_to is not None else float(x)

    out: dict[str, float] = {}
    for col, name in enumerate(("ndcg", "map", "recall", "precision")):
        for j, k in enumerate(ks):
            out[f"{name}_at_{k}"] = rounded(means[j, col])
    for j, k in enumerate(ks):
        out[f"mrr_at_{k}"] = rr[j] / n_mrr  # MTEB 1.20.1 leaves MRR unrounded
    for k in ks:
        out[f"f1_at_{k}"] = rounded(_f1(out[f"precision_at_{k}"], out[f"recall_at_{k}"]))
    if "ndcg_at_10" in out:
        out["main_score"] = out["ndcg_at_10"]
    return out


def query_ndcg(qrels: Qrels, run: Run, k: int = 10) -> dict[str, float]:
    """Unrounded NDCG@k of each query :func:`evaluate_run` counts (in the run and judged), ranked as it
    ranks them: their mean is its ``ndcg_at_k``. For what a mean hides: paired comparisons of two runs
    and intervals over the queries.

    >>> query_ndcg({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": {"a": 0.9}, "q2": {"a": 0.9, "b": 0.1}})
    {'q1': 1.0, 'q2': 0.6309297535714575}
    """
    if k < 1:
        raise InputError(f"k must be positive, got {k}")
    return {
        qid: float(_query_measures(qrels[qid], _trec_order(doc_scores, k), (k,))[0, 0])
        for qid, doc_scores in run.items()
        if qrels.get(qid)
    }


def run_from_scores(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    scores: np.ndarray,
    k: int,
    *,
    block_rows: int = 64,
) -> dict[str, dict[str, float]]:
    """The top ``k`` documents of each row of ``scores`` (queries × documents) as a run.

    The k-th best score of each row is found with ``np.partition`` and every document scoring at least
    that much is kept, so documents tied at the cut are all kept rather than picked arbitrarily (the
    metrics cut at k themselves, breaking the tie trec_eval's way). Each
    query's documents are inserted best first, ties in trec_eval's order, so MTEB's MRR (which keeps
    insertion order among ties) and trec_eval agree. Rows are processed ``block_rows`` at a time;
    for a matrix too large to hold, call this once per block of rows and merge the dicts.

    >>> run_from_scores(["q"], ["a", "b", "c"], np.array([[0.1, 0.9, 0.5]]), k=2)
    {'q': {'b': 0.9, 'c': 0.5}}
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape != (len(query_ids), len(doc_ids)):
        raise InputError(
            f"scores must be a {len(query_ids)} x {len(doc_ids)} matrix (queries x documents), "
            f"got shape {scores.shape}"
        )
    if k < 1:
        raise InputError(f"k must be positive, got {k}")
    n_docs = scores.shape[1]
    doc_ids = list(doc_ids)
    run: dict[str, dict[str, float]] = {}
    for start in range(0, len(query_ids), block_rows):
        block = scores[start : start + block_rows]
        if np.isnan(block).any():
            raise InputError(f"scores contain NaN (rows {start} to {start + len(block) - 1})")
        if k < n_docs:
            kth = np.partition(block, n_docs - k, axis=1)[:, n_docs - k]
            keep = block >= kth[:, None]
        else:
            keep = np.ones(block.shape, dtype=bool)
        for row, qid in enumerate(query_ids[start : start + block_rows]):
            cols = np.flatnonzero(keep[row])
            vals = block[row, cols]
            ids = [doc_ids[c] for c in cols]
            keys = zip(vals.astype(np.float32).tolist(), ids, vals.tolist(), strict=True)
            order = sorted(keys, reverse=True)
            run[qid] = {doc: score for _, doc, score in order}
    return run
