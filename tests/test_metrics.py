"""koe5.evaluation.metrics against pytrec_eval (the oracle MTEB uses) and against hand-checked cases."""

from __future__ import annotations

import random

import numpy as np
import pytest

from koe5.errors import InputError
from koe5.evaluation.metrics import MTEB_KS, evaluate_run, query_ndcg, run_from_scores

pytrec_eval = pytest.importorskip("pytrec_eval")

KS = (1, 2, 3, 5, 10, 20)
MEASURES = {f"{m}.{','.join(map(str, KS))}" for m in ("ndcg_cut", "map_cut", "recall", "P")}
NAMES = {"ndcg_cut": "ndcg", "map_cut": "map", "recall": "recall", "P": "precision"}


def oracle(qrels, run, ks=KS):
    """MTEB 1.20.1's averaging on top of pytrec_eval: plain mean over the queries pytrec_eval returns."""
    measures = {f"{m}.{','.join(map(str, ks))}" for m in NAMES}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    out = {}
    for trec, name in NAMES.items():
        for k in ks:
            out[f"{name}_at_{k}"] = sum(q[f"{trec}_{k}"] for q in per_query.values()) / len(per_query)
    return out


def random_case(rng: random.Random, n_queries: int = 30, n_docs: int = 40):
    docs = [f"d{i}" for i in rng.sample(range(1000), n_docs)]  # ids whose string order differs from numeric
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 8))
        # graded relevance with zero judgements; grade -1 only beside a non-negative one (trec_eval
        # crashes on a query judged only negatively)
        grades = {d: rng.choice([0, 0, 1, 1, 2, 3, -1]) for d in judged}
        grades[judged[0]] = max(grades[judged[0]], 0)
        qrels[qid] = grades
        shape = rng.random()
        if shape < 0.08:
            run[qid] = {}  # a query that retrieved nothing
            continue
        depth = rng.randint(1, 25)  # often shorter than the largest k
        # coarse scores so that ties are frequent; some differ only beyond float32 precision
        retrieved = rng.sample(docs, depth)
        run[qid] = {d: round(rng.random(), 1) + (1e-10 if rng.random() < 0.1 else 0.0) for d in retrieved}
    run["not-judged"] = {docs[0]: 1.0}  # pytrec_eval and MTEB ignore run queries absent from qrels
    qrels["not-run"] = {docs[1]: 1}  # ...and judged queries absent from the run
    return qrels, run


@pytest.mark.parametrize("seed", range(12))
def test_unrounded_metrics_equal_pytrec_eval(seed):
    qrels, run = random_case(random.Random(seed))
    ours = evaluate_run(qrels, run, KS, round_to=None)
    theirs = oracle(qrels, run)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("seed", range(4))
def test_query_ndcg_equals_pytrec_eval_per_query_and_averages_to_evaluate_run(seed):
    qrels, run = random_case(random.Random(seed))
    ours = query_ndcg(qrels, run, k=10)
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    assert set(ours) == set(theirs)  # judged queries of the run: not "not-judged", not "not-run"
    for qid, measures in theirs.items():
        assert ours[qid] == pytest.approx(measures["ndcg_cut_10"], abs=1e-9), qid
    mean = sum(ours.values()) / len(ours)
    assert mean == pytest.approx(evaluate_run(qrels, run, (10,), round_to=None)["ndcg_at_10"], abs=1e-12)
    with pytest.raises(InputError, match="k must be positive"):
        query_ndcg(qrels, run, k=0)


def test_queries_judged_only_with_zero_count_as_zero():
    qrels = {"a": {"x": 1}, "b": {"y": 0}}
    run = {"a": {"x": 1.0}, "b": {"y": 1.0}}
    ours = evaluate_run(qrels, run, (1,), round_to=None)
    assert ours["ndcg_at_1"] == pytest.approx(oracle(qrels, run, (1,))["ndcg_at_1"]) == 0.5
    assert ours["mrr_at_1"] == 0.5


def test_ties_are_broken_by_document_id_descending_as_trec_eval_does():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 0.5, "b": 0.5}}  # "b" > "a", so b is ranked first
    assert evaluate_run(qrels, run, (1,))["precision_at_1"] == 0.0
    assert oracle(qrels, run, (1,))["precision_at_1"] == 0.0
    # scores equal in float32 are ties too
    run = {"q": {"a": 0.1 + 1e-9, "b": 0.1}}
    assert evaluate_run(qrels, run, (1,))["precision_at_1"] == 0.0
    assert oracle(qrels, run, (1,))["precision_at_1"] == 0.0


def test_k_larger_than_the_ranking_divides_precision_by_k():
    out = evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}}, (1, 1000))
    assert out["precision_at_1000"] == 0.001
    assert out["recall_at_1000"] == out["ndcg_at_1000"] == out["map_at_1000"] == 1.0


def test_mrr_hand_checked():
    qrels = {"q1": {"d2": 1}, "q2": {"d9": 1}, "q3": {"d1": 0, "d3": 2}}
    run = {
        "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1},  # first relevant at rank 2
        "q2": {"d1": 0.9},  # never found
        # ties keep the run's order for MTEB's MRR: d1 (grade 0) first, d3 at rank 2, d4 last
        "q3": {"d1": 0.5, "d3": 0.5, "d4": 0.1},
    }
    out = evaluate_run(qrels, run, (1, 2, 3))
    assert out["mrr_at_1"] == 0.0
    assert out["mrr_at_2"] == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert out["mrr_at_3"] == out["mrr_at_2"]


def test_rounding_follows_mteb():
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}, "q3": {"a": 1}}
    run = {"q1": {"a": 1.0}, "q2": {"b": 1.0, "a": 0.5}, "q3": {"b": 1.0, "c": 0.9, "a": 0.5}}
    out = evaluate_run(qrels, run, (3,))
    assert out["precision_at_3"] == 0.33333  # rounded to 5 decimals as in MTEB's files
    assert out["mrr_at_3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=0)  # MRR is not rounded
    assert out["mrr_at_3"] != round(out["mrr_at_3"], 5)
    raw = evaluate_run(qrels, run, (3,), round_to=None)
    assert raw["precision_at_3"] == pytest.approx(1 / 3, abs=1e-15)


def test_f1_comes_from_the_averaged_precision_and_recall():
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}}
    run = {"q1": {"a": 1.0, "x": 0.5}, "q2": {"c": 1.0, "z": 0.5}}
    out = evaluate_run(qrels, run, (2,), round_to=None)
    p, r = out["precision_at_2"], out["recall_at_2"]
    assert (p, r) == (0.5, 0.75)
    assert out["f1_at_2"] == pytest.approx(2 * p * r / (p + r)) == pytest.approx(0.6)
    # not the mean of the per-query F1s (q1: 1/2, q2: 2/3)
    assert out["f1_at_2"] != pytest.approx((1 / 2 + 2 / 3) / 2)
    nothing = evaluate_run({"q": {"a": 1}}, {"q": {"b": 1.0}}, (1,))
    assert nothing["f1_at_1"] == 0.0


def test_keys_are_mteb_names_and_main_score_is_ndcg_at_10():
    out = evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}})
    for name in ("ndcg", "map", "recall", "precision", "mrr", "f1"):
        assert all(f"{name}_at_{k}" in out for k in MTEB_KS)
    assert out["main_score"] == out["ndcg_at_10"]


def test_no_evaluable_query_is_an_error():
    with pytest.raises(InputError, match="no query"):
        evaluate_run({"q": {"a": 1}}, {"other": {"a": 1.0}})
    with pytest.raises(InputError, match="NaN"):
        evaluate_run({"q": {"a": 1}}, {"q": {"a": float("nan")}})


def test_run_from_scores_keeps_top_k_best_first():
    rng = np.random.default_rng(0)
    scores = rng.random((7, 50)).astype(np.float32)
    qids = [f"q{i}" for i in range(7)]
    dids = [f"d{j}" for j in range(50)]
    run = run_from_scores(qids, dids, scores, k=5, block_rows=3)
    assert list(run) == qids
    for i, qid in enumerate(qids):
        best = np.argsort(-scores[i])[:5]
        assert list(run[qid]) == [dids[j] for j in best]
        assert list(run[qid].values()) == pytest.approx(scores[i, best].tolist())


def test_run_from_scores_keeps_every_document_tied_at_the_cut():
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
    run = run_from_scores(["q"], ["a", "b", "c", "d", "e"], scores, k=2)
    assert list(run["q"]) == ["a", "d", "c", "b"]  # ties in trec_eval's order (id descending)
    assert run_from_scores(["q"], ["a", "b"], np.array([[0.2, 0.3]]), k=10) == {"q": {"b": 0.3, "a": 0.2}}


def test_run_from_scores_then_evaluate_matches_pytrec_eval():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((20, 60)), 2)  # ties
    qids = [f"q{i}" for i in range(20)]
    dids = [f"doc{j}" for j in range(60)]
    qrels = {q: {dids[j]: int(rng.integers(0, 3)) for j in rng.choice(60, 4, replace=False)} for q in qids}
    run = run_from_scores(qids, dids, scores, k=10)
    ours = evaluate_run(qrels, run, (1, 3, 5, 10), round_to=None)
    theirs = oracle(qrels, run, (1, 3, 5, 10))
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_run_from_scores_checks_its_input():
    with pytest.raises(InputError, match="matrix"):
        run_from_scores(["q"], ["a", "b"], np.zeros((2, 2)), k=1)
    with pytest.raises(InputError, match="k must be"):
        run_from_scores(["q"], ["a"], np.zeros((1, 1)), k=0)


def test_a_query_with_no_judgement_counts_for_mrr_only_as_in_mteb():
    qrels = {"a": {"x": 1}, "b": {}}
    run = {"a": {"x": 1.0}, "b": {"x": 1.0}}
    out = evaluate_run(qrels, run, (1,))
    assert out["ndcg_at_1"] == oracle(qrels, run, (1,))["ndcg_at_1"] == 1.0  # pytrec_eval drops "b"
    assert out["mrr_at_1"] == 0.5  # MTEB's MRR averages over every run query found in qrels
