"""Evaluation: run retrievers on benchmark tasks and score them as MTEB and the KoE5/KURE card do.

Modules, in the order results flow: :mod:`~koe5.evaluation.retrievers` (dense, BM25, hybrid, index, reranked),
:mod:`~koe5.evaluation.runner` (evaluate tasks, write MTEB result files), :mod:`~koe5.evaluation.metrics`
(Recall, Precision, NDCG, MAP, MRR, F1 with pytrec_eval's semantics), :mod:`~koe5.evaluation.results`
(MTEB result files), :mod:`~koe5.evaluation.leaderboard` (the KoE5/KURE tables) and
:mod:`~koe5.evaluation.report` (the ``koe5 bench`` document).

Example::

    import koe5
    from koe5.evaluation import DenseRetriever, evaluate_tasks

    results = evaluate_tasks(DenseRetriever(koe5.load()), ["PublicHealthQA"])
"""

from koe5.evaluation.retrievers import (
    BM25Retriever,
    DenseRetriever,
    FunctionRetriever,
    HybridRetriever,
    IndexRetriever,
    RerankRetriever,
    Retriever,
    Run,
)
from koe5.evaluation.runner import evaluate_split, evaluate_task, evaluate_tasks, model_label

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "FunctionRetriever",
    "HybridRetriever",
    "IndexRetriever",
    "RerankRetriever",
    "Retriever",
    "Run",
    "evaluate_split",
    "evaluate_task",
    "evaluate_tasks",
    "model_label",
]
