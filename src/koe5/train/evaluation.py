"""Retrieval metrics during and after training, computed by koe5's benchmark code (:mod:`koe5.evaluation`).

A held-out part of the training rows becomes a small retrieval task (its queries against its
positives and negatives); benchmark tasks (``PublicHealthQA``, …) are loaded once and scored as
``koe5 bench`` scores them. The evaluator plugs into sentence-transformers' trainer. Example (``rows``:
training columns, ``model``: a ``SentenceTransformer``, ``spec``: its :class:`koe5.registry.ModelSpec`)::

    evaluate = RetrievalEvaluator({"heldout": heldout_task(rows)}, tasks=["PublicHealthQA"], spec=spec)
    evaluate(model)["heldout_ndcg_at_10"]      # 0.61234
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sentence_transformers.base.evaluation import BaseEvaluator

from koe5.registry import ModelSpec
from koe5.tasks import RetrievalData, get_task
from koe5.tasks.data import assemble

#: The metrics kept per task and split (the rest of MTEB's set is cheap to get with ``koe5 bench``).
KEPT = ("ndcg_at_1", "ndcg_at_10", "recall_at_10", "mrr_at_10")


def heldout_task(columns: Mapping[str, Sequence[str]], origin: str = "held-out rows") -> RetrievalData:
    """Training rows as a retrieval task: each distinct query against every distinct text among the
    rows' positives and negatives; a query's positives are relevant."""
    doc_ids: dict[str, str] = {}
    query_ids: dict[str, str] = {}
    qrels: list[tuple[str, str, int]] = []
    names = [c for c in columns if c != "query"]
    for i, query in enumerate(columns["query"]):
        qid = query_ids.setdefault(query, f"q{len(query_ids)}")
        for name in names:
            text = columns[name][i]
            did = doc_ids.setdefault(text, f"d{len(doc_ids)}")
            if name == "positive":
                qrels.append((qid, did, 1))
    corpus = {did: {"text": text} for text, did in doc_ids.items()}
    queries = {qid: text for text, qid in query_ids.items()}
    # a text that is one query's positive and another's negative stays relevant only where it is positive
    return assemble(corpus, queries, qrels, origin=origin)


class RetrievalEvaluator(BaseEvaluator):
    """NDCG@10 and friends of the model being trained on held-out splits and benchmark tasks.

    Keys: ``<split or task>_<metric>`` (``heldout_ndcg_at_10``, ``PublicHealthQA_ndcg_at_10``) and
    ``mean_ndcg_at_10`` (the primary metric: the mean over all splits and tasks). Texts are encoded
    at ``max_length`` tokens (the model's own limit, not a shorter training limit).
    """

    def __init__(
        self,
        splits: Mapping[str, RetrievalData],
        *,
        tasks: Sequence[str] = (),
        spec: ModelSpec,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.data: dict[str, RetrievalData] = dict(splits)
        for name in tasks:
            task = get_task(name)
            for split in task.splits:
                key = name if len(task.splits) == 1 else f"{name}.{split}"
                self.data[key] = task.load(split)
        self.spec = spec
        self.max_length = max_length
        self.batch_size = batch_size
        self.primary_metric = "mean_ndcg_at_10"
        self.seconds = 0.0

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: float = -1, steps: int = -1
    ) -> dict[str, float]:
        from koe5.evaluation import DenseRetriever, evaluate_split

        started = time.perf_counter()
        was_training, length = model.training, model.max_seq_length
        model.eval()
        if self.max_length:
            model.max_seq_length = self.max_length
        try:
            retriever = DenseRetriever(_ModelEncoder(model, self.spec, self.batch_size), name="training")
            metrics: dict[str, float] = {}
            for key, data in self.data.items():
                scores = evaluate_split(retriever, data, ks=(1, 10))
                metrics.update({f"{key}_{m}": float(scores[m]) for m in KEPT if m in scores})
        finally:
            model.train(was_training)
            model.max_seq_length = length
        ndcg = [v for k, v in metrics.items() if k.endswith("_ndcg_at_10")]
        metrics["mean_ndcg_at_10"] = round(sum(ndcg) / len(ndcg), 5) if ndcg else 0.0
        self.seconds = time.perf_counter() - started
        return metrics


class _ModelEncoder:
    """The model being trained as the encoder ``DenseRetriever`` needs: koe5's prefixes, unit vectors."""

    def __init__(self, model: Any, spec: ModelSpec, batch_size: int) -> None:
        self.model, self.spec, self.batch_size = model, spec, batch_size
        self.name = "training"

    def encode(self, texts: Sequence[str], kind: str | None = None, **kwargs: Any) -> Any:
        prefix = {"query": self.spec.query_prefix, "passage": self.spec.passage_prefix}.get(kind or "", "")
        return self.model.encode(
            [prefix + t for t in texts],
            batch_size=kwargs.get("batch_size") or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
