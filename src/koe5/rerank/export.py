"""Export a reranker to ONNX (fp32 and int8), gate each backend on quality, and record what ``auto`` uses.

The rerankers' side of :mod:`koe5.runtime.export`: ``export_reranker`` writes the classifier's logits
graph to ``<folder>/onnx/model.onnx`` and, with ``int8``, ``model_qint8.onnx`` (the same export and
quantisation as the embedding models'). ``choose_reranker_backends`` then reranks, with every
candidate backend, the same first-stage candidates on this machine:

* quality: NDCG@10 of the reranked candidates (BM25's top :data:`GATE_DEPTH` for a seeded sample of
  :data:`GATE_QUERIES` queries of each of :data:`~koe5.runtime.export.GATE_TASKS`); a backend passes
  within :data:`~koe5.runtime.export.GATE` of torch fp32, the reference. The candidates are the same
  for every backend, so the gate sees only what the backend changes in the scores;
* speed: pairs/s over those same pairs, which vary in length as real candidates do;

and writes ``onnx/koe5_backends.json``: ``auto.pairs``, the fastest backend that passed, which
``Reranker.load(folder, backend="auto")`` reads.

Example::

    from koe5.rerank.export import choose_reranker_backends, export_reranker
    folder = export_reranker("default", int8=True)
    choose_reranker_backends(folder)["auto"]     # e.g. {"pairs": "onnx-int8"}
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koe5.env import hub_copy
from koe5.rerank.backends import PAIRS
from koe5.rerank.folders import inspect_folder
from koe5.rerank.registry import resolve
from koe5.runtime.export import (
    GATE,
    GATE_TASKS,
    gate_runners,
    quiet_logger,
    record_choice,
    write_exports,
)
from koe5.runtime.select import TORCH_BF16

#: Queries sampled per gate task, and the first stage's candidates reranked for each: 1,600 pairs in
#: all, a few minutes for a small model on two cores.
GATE_QUERIES = 40
GATE_DEPTH = 20
#: The inputs a classifier may take, in the order the export gives them to its graph.
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def reranker_folder(name: str) -> Path:
    """A writable local folder for the reranker ``name``: its folder, or a saved copy of a hub reranker
    in koe5's cache (made once, checked as a reranker before its weights are read)."""
    _, location, local = resolve(name)
    if local:
        return Path(location)
    copy = hub_copy(location)
    if not copy.is_dir():
        from koe5.rerank.model import Reranker

        Reranker.load(name, device="cpu").save(copy)
    return copy


def export_reranker(name: str = "default", *, int8: bool = False, force: bool = False, log=None) -> Path:
    """Write the ONNX export(s) of the reranker ``name`` into ``<folder>/onnx``; returns the folder.

    An embedding (bi-encoder) folder is refused as :meth:`Reranker.load <koe5.rerank.Reranker.load>`
    refuses it, before anything is written."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = reranker_folder(name)
    inspect_folder(folder, name)
    accepts = AutoTokenizer.from_pretrained(str(folder)).model_input_names
    names = tuple(n for n in INPUTS if n in accepts)

    def logits():
        # eager attention exports to plain MatMul/Softmax, which ONNX Runtime's optimiser fuses
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), attn_implementation="eager")

        class Logits(torch.nn.Module):
            def __init__(self, m) -> None:
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                given = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:  # BERT's segment ids: which half of the pair a token is in
                    given["token_type_ids"] = token_type_ids
                return self.m(**given).logits

        return Logits(model.float())

    return write_exports(folder, logits, names, "logits", int8=int8, force=force, log=log)


@dataclass(frozen=True)
class GateSet:
    """One gate task's sampled queries and, per query, the first stage's candidates."""

    task: str
    data: object  # RetrievalData
    candidates: dict[str, list[str]]


def gate_sets(tasks=GATE_TASKS, queries: int = GATE_QUERIES, depth: int = GATE_DEPTH, seed: int = 0):
    """The gate's candidates: BM25's top ``depth`` for ``queries`` sampled queries of each task."""
    from koe5.evaluation import BM25Retriever
    from koe5.tasks import get_task
    from koe5.tasks.data import sample_queries

    out = []
    bm25 = BM25Retriever()
    for task in tasks:
        data = sample_queries(get_task(task).load(), queries, seed)
        run = bm25.rank(data, depth)
        found = {q: sorted(run.get(q, {}), key=run[q].__getitem__, reverse=True) for q in data.queries}
        out.append(GateSet(task, data, {q: docs for q, docs in found.items() if docs}))
    return out


def _measure(reranker, sets: list[GateSet]) -> dict:
    """NDCG@10 of ``reranker``'s order of the gate's candidates (averaged over tasks), and its speed."""
    from koe5.evaluation.metrics import evaluate_run

    first = sets[0]
    some = next(iter(first.candidates.items()))
    reranker.score(first.data.queries[some[0]], [first.data.doc_text(d) for d in some[1][:4]])  # warm-up
    ndcg, pairs, tokens, seconds = [], 0, 0, 0.0
    for gate in sets:
        run = {}
        for q, docs in gate.candidates.items():
            texts = [gate.data.doc_text(d) for d in docs]
            start = time.perf_counter()
            stats = reranker.score_with_stats(gate.data.queries[q], texts)
            seconds += time.perf_counter() - start
            pairs, tokens = pairs + len(texts), tokens + stats.tokens
            run[q] = dict(zip(docs, stats.scores.tolist(), strict=True))
        qrels = {q: gate.data.qrels[q] for q in gate.data.queries}
        ndcg.append(evaluate_run(qrels, {q: run.get(q, {}) for q in qrels}, ks=(10,))["ndcg_at_10"])
    return {
        "ndcg_at_10": round(float(np.mean(ndcg)), 5),
        "pairs_per_s": round(pairs / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def choose_reranker_backends(
    folder: str | Path,
    *,
    tasks=GATE_TASKS,
    queries: int = GATE_QUERIES,
    depth: int = GATE_DEPTH,
    backends=None,
    log=None,
) -> dict:
    """Gate and time the exported backends against torch fp32; write and return the choice file.

    Candidates: the ONNX exports found, and on CPUs with bf16 hardware torch in bf16 (``torch-bf16``).
    ``backends`` limits which are measured besides torch fp32, the reference (default: all)."""
    from koe5.rerank.model import Reranker

    say = log or (lambda msg: None)
    folder = Path(folder)
    runners = gate_runners(folder, backends, f"koe5 export {folder} --reranker --onnx")
    sets = gate_sets(tasks, queries, depth)
    report: dict = {
        "gate": GATE,
        "gate_tasks": list(tasks),
        "queries": queries,
        "depth": depth,
        "backends": {},
    }
    for runner in runners:
        say(f"measuring {runner}: NDCG@10 of reranking BM25's top {depth} on {', '.join(tasks)}")
        precision, backend = ("bf16", "torch") if runner == TORCH_BF16 else ("fp32", runner)
        reranker = Reranker.load(str(folder), device="cpu", precision=precision, backend=backend)
        with quiet_logger("koe5"):  # every backend cuts the same pairs: a warning a query is noise
            report["backends"][runner] = _measure(reranker, sets)
    return record_choice(folder, report, {PAIRS: "pairs_per_s"})
