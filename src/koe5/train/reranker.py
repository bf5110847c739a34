"""``koe5 train-reranker``: koe5's own Korean cross-encoder, from the default model and the training material.

No Korean reranker can be downloaded where koe5 must work offline, so koe5 makes one: the default
embedding model's encoder with a one-logit head (sentence-transformers' ``CrossEncoder``), trained on
(query, positive) pairs of the Korean training material (:mod:`koe5.train.sources`) with hard negatives
mined by Korean BM25 and the dense model (:mod:`koe5.train.mine`, with its false-negative guard). The
dev split (:mod:`koe5.train.devsets`) is kept out of the training rows and is what the run evaluates
on: each dev query's top 20 of the default hybrid search reranked, NDCG@10 (sentence-transformers'
``CrossEncoderRerankingEvaluator``).
The recipe is data (:data:`RECIPES`); a run is reproducible from its seed, writes checkpoints and
resumes after a kill, and its result is a plain CrossEncoder folder, installed where
``Reranker.load("default")`` finds it.

Example::

    from koe5.train.reranker import RECIPES, train_reranker

    result = train_reranker(RECIPES["koe5-reranker-small"], "runs/reranker")
    result.model_path, result.metrics["final"]
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
import resource
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.files import atomic_dir, atomic_write_bytes
from koe5.train.checkpoints import checkpoint_step, last_checkpoint

log = logging.getLogger("koe5")

LOSSES = ("bce", "lambda")
MINING = ("bm25", "dense", "bm25+dense")


@dataclass(frozen=True)
class RerankerRecipe:
    """Everything a reranker run depends on. ``weights``: training source → multiplier (as
    ``koe5 build-data --weights``); ``queries``: how many training queries, at most ``per_group`` of a
    group (paraphrases of one question; a group's answers are never its queries' negatives);
    ``negatives`` per query, mined between ranks ``range_min`` and ``range_max`` by ``mining``:
    ``bm25``, ``dense`` (the ``base`` embedding model) or ``bm25+dense`` (taken in turn from both, as
    a hybrid search's candidates mix them); ``loss``: ``bce`` (binary cross-entropy over the positive
    and each negative, the positive weighted by the number of negatives) or ``lambda`` (LambdaLoss,
    listwise over the query's list); ``batch_size``: queries per step; ``dev_queries``: the dev split
    per source (:func:`koe5.train.devsets.dev_tasks`), kept out of training, ``eval_queries`` of it
    evaluated."""

    name: str
    base: str = "default"
    weights: tuple[tuple[str, float], ...] = (
        ("strategyqa_ko", 1.0),
        ("welfare_qa", 1.0),
        ("question_pair", 1.0),
        ("parakqc", 1.0),
        ("chatbot", 0.5),
    )
    queries: int = 4000
    per_group: int = 2
    negatives: int = 3
    range_min: int = 2
    range_max: int = 30
    mining: str = "bm25+dense"
    loss: str = "bce"
    max_length: int = 256
    batch_size: int = 8
    lr: float = 6e-5
    epochs: int = 1
    warmup_ratio: float = 0.1
    eval_queries: int = 40
    dev_queries: int = 300
    save_steps: int = 100
    seed: int = 42

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.mining not in MINING:
            raise InputError(f"mining must be one of {', '.join(MINING)}, not {self.mining!r}")
        for name in ("queries", "per_group", "negatives", "max_length", "batch_size", "epochs", "save_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr <= 1e-2:  # fine-tuning an encoder takes 1e-6 to 1e-4: above 0.01 is a typo
            raise InputError(f"lr must be above 0 and at most 0.01, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["weights"] = dict(self.weights)
        return out


#: Named recipes. ``koe5-reranker-small`` fits the 45-minute budget of a 2-core CPU; ``-gpu`` is the
#: longer run for a GPU.
RECIPES = {
    "koe5-reranker-small": RerankerRecipe("koe5-reranker-small"),
    "koe5-reranker-small-gpu": RerankerRecipe(
        "koe5-reranker-small-gpu", queries=30000, negatives=7, batch_size=32, max_length=384
    ),
}


@dataclass
class RerankerResult:
    output: Path
    model_path: Path
    steps: int
    metrics: dict[str, Any]
    resumed_from: Path | None
    seconds: float
    peak_rss_mb: float


def training_rows(recipe: RerankerRecipe, source_dir: Path | str | None = None, *, encoder=None) -> list:
    """The recipe's training rows: ``{"query", "positive", "negatives": [...]}``, ``per_group`` a group
    outside the dev split, negatives mined with the false-negative guard (no answer of the query's group
    is its negative); a pure function of the recipe. ``encoder``: the ``base`` embedding model where the
    caller has it loaded (dense mining loads it otherwise)."""
    from koe5.train.devsets import dev_groups
    from koe5.train.sources import build_rows

    rows, _ = build_rows(source_dir, dict(recipe.weights), seed=recipe.seed)
    held = dev_groups(source_dir, sources=_dev_sources(recipe), queries=recipe.dev_queries, seed=recipe.seed)
    rng = random.Random(recipe.seed)
    seen: Counter[str] = Counter()
    picked = []
    for row in rows:  # already shuffled by build_rows' seed
        if row["group"] in held or seen[row["group"]] >= recipe.per_group:
            continue
        seen[row["group"]] += 1
        picked.append({"query": row["query"], "positive": row["positive"], "group": row["group"]})
        if len(picked) >= recipe.queries:
            break
    corpus = sorted({r["positive"] for r in rows if r["group"] not in held})
    # every answer of a picked query's group, not only the picked rows': the others are in the corpus
    answers: dict[str, set[str]] = {row["group"]: set() for row in picked}
    for row in rows:
        if row["group"] in answers:
            answers[row["group"]].add(row["positive"])
    out = _mine(recipe, picked, corpus, answers, encoder)
    rng.shuffle(out)
    if not out:
        raise InputError("no training row got a hard negative: is the training material there?")
    return out


def _mine(
    recipe: RerankerRecipe,
    picked: list[dict[str, Any]],
    corpus: list[str],
    answers: dict[str, set[str]],
    encoder=None,
) -> list[dict[str, Any]]:
    """``{"query", "positive", "negatives"}`` rows: each query's negatives by the recipe's mining; with
    ``bm25+dense`` one from each method in turn (a text both found counts once); a query is kept only
    where it gets ``negatives`` texts."""
    from koe5.train.mine import mine_hard_negatives

    methods = recipe.mining.split("+")
    if "dense" in methods and encoder is None:
        import koe5

        encoder = koe5.load(recipe.base)
    lists: dict[str, list[list[str]]] = {row["query"]: [] for row in picked}
    for method in methods:
        mined, _ = mine_hard_negatives(
            picked,
            corpus=corpus,
            method=method,
            encoder=encoder,
            num_negatives=recipe.negatives,
            range_min=recipe.range_min,
            range_max=recipe.range_max,
            output_format="triplet",
            seed=recipe.seed,
            group_texts=answers,
        )
        found: dict[str, list[str]] = {}
        for row in mined:  # one row per negative, in the order mined
            found.setdefault(row["query"], []).append(row["hard_negative"])
        for query, texts in found.items():
            lists[query].append(texts)
    out = []
    for row in picked:
        turns = itertools.zip_longest(*lists[row["query"]])
        merged = list(dict.fromkeys(text for turn in turns for text in turn if text is not None))
        if len(merged) >= recipe.negatives:
            negatives = merged[: recipe.negatives]
            out.append({"query": row["query"], "positive": row["positive"], "negatives": negatives})
    return out


def dev_samples(recipe: RerankerRecipe, source_dir: str | Path | None = None, *, encoder=None) -> list[dict]:
    """Reranking samples of the dev split: per dev task of passages ``eval_queries`` queries, each with
    its relevant texts and the top 20 of koe5's default hybrid search over the task's corpus (BM25 and
    the ``base`` embedding model, fused as ``koe5 search`` fuses them): what a reranker gets in a
    search. (BM25's top 20 alone once disagreed with the hybrid's on which training data was best.)
    ``encoder``: the ``base`` model where the caller has it loaded."""
    import koe5
    from koe5.embcache import EmbeddingCache
    from koe5.evaluation import BM25Retriever, DenseRetriever
    from koe5.evaluation.retrievers import HybridRetriever
    from koe5.tasks.data import select_queries
    from koe5.train.devsets import dev_tasks

    dense = DenseRetriever(encoder or koe5.load(recipe.base), cache=EmbeddingCache())
    hybrid = HybridRetriever(dense, BM25Retriever())
    samples = []
    tasks = dev_tasks(source_dir, sources=_dev_sources(recipe), queries=recipe.dev_queries, seed=recipe.seed)
    for name, task in tasks.items():
        if name.endswith("/documents"):  # long texts: minutes per evaluation on a CPU, for little news
            continue
        evaluated = select_queries(task, list(task.qrels)[: recipe.eval_queries])
        run = hybrid.rank(evaluated, min(20, len(task.corpus)))
        for q in evaluated.queries:  # the run holds each query's fused top 20, best first
            samples.append(
                {
                    "query": task.queries[q],
                    "positive": [task.doc_text(d) for d in task.qrels[q]],
                    "documents": [task.doc_text(d) for d in run.get(q, {})],
                }
            )
    return samples


def _dev_sources(recipe: RerankerRecipe) -> list[str]:
    """The dev split is drawn from the recipe's own retrieval-shaped sources."""
    from koe5.train.devsets import DEV_SOURCES

    return [name for name, weight in recipe.weights if weight > 0 and name in DEV_SOURCES]


def _dataset(recipe: RerankerRecipe, rows: list[dict[str, Any]]):
    from datasets import Dataset

    if recipe.loss == "bce":  # a query's pairs stay together: positive first, then its negatives
        pairs = [
            (r["query"], text, float(i == 0))
            for r in rows
            for i, text in enumerate([r["positive"], *r["negatives"]])
        ]
        query, passage, label = zip(*pairs, strict=True)
        return Dataset.from_dict({"query": list(query), "passage": list(passage), "label": list(label)})
    return Dataset.from_dict(
        {
            "query": [r["query"] for r in rows],
            "docs": [[r["positive"], *r["negatives"]] for r in rows],
            "labels": [[1.0] + [0.0] * len(r["negatives"]) for r in rows],
        }
    )


def _loss(recipe: RerankerRecipe, model):
    import torch
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, LambdaLoss

    if recipe.loss == "bce":
        return BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(recipe.negatives)))
    return LambdaLoss(model, mini_batch_size=recipe.batch_size)


def _base_model(recipe: RerankerRecipe):
    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    from koe5.registry import resolve

    hf_logging.disable_progress_bar()
    _, location = resolve(recipe.base)
    # the encoder's weights, a new one-logit head (its initialisation follows the seed)
    model = CrossEncoder(str(location), num_labels=1, max_length=recipe.max_length)
    _initialise_empty_pooler(model.model)
    return model


def _initialise_empty_pooler(model) -> None:
    """An embedding model folder has no trained pooler (E5 pools by mean): koe5's converted default
    stores it as zeros, which would make every pair's input to the head the same constant and keep
    the encoder from learning until the pooler grows. Initialise it as BERT initialises a new layer."""
    import torch

    pooler = getattr(getattr(model, "bert", None), "pooler", None)
    if pooler is None or bool(pooler.dense.weight.detach().abs().sum()):
        return
    with torch.no_grad():
        torch.nn.init.normal_(pooler.dense.weight, std=model.config.initializer_range)
        torch.nn.init.zeros_(pooler.dense.bias)


def train_reranker(
    recipe: RerankerRecipe,
    output: str | Path,
    *,
    source_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    install: bool = False,
    max_steps: int = -1,
    callbacks: tuple[Any, ...] = (),
    show_progress: bool = False,
) -> RerankerResult:
    """Train ``recipe`` into ``output`` (``data.jsonl``, ``checkpoints/``, ``log.jsonl``, ``model/``,
    ``eval.json``); ``resume`` continues from the last complete checkpoint with the same recipe;
    ``install`` copies the final model to where ``Reranker.load("default")`` reads it."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    from transformers import set_seed

    import koe5
    from koe5.train.callbacks import JsonlLog

    started = time.perf_counter()
    out = Path(output).expanduser()
    checkpoint = _prepare(out, recipe, resume=resume, overwrite=overwrite)
    encoder = koe5.load(recipe.base)  # loaded once: it mines a new run's negatives and ranks the dev split
    rows = _rows(out, recipe, source_dir, encoder)
    samples = dev_samples(recipe, source_dir, encoder=encoder)
    del encoder  # not needed while training
    set_seed(recipe.seed)
    model = _base_model(recipe)
    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", batch_size=32, write_csv=False)
    args = _arguments(recipe, out, max_steps, show_progress)
    jsonl = JsonlLog(out / "log.jsonl", resume_step=checkpoint_step(checkpoint) if checkpoint else None)
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(recipe, rows),
        loss=_loss(recipe, model),
        evaluator=evaluator,
        callbacks=[jsonl, *callbacks],
    )
    if not show_progress:  # log.jsonl has every record; stdout stays the command's result (--json)
        import datasets
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        datasets.disable_progress_bars()
    metrics: dict[str, Any] = {}
    if checkpoint is None:
        metrics["base"] = _dev_metrics(evaluator(model))
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics["final"] = _dev_metrics(evaluator(trainer.model))
    model_path = out / "model"
    with atomic_dir(model_path, replace=True) as tmp:
        trainer.model.save(str(tmp))
    if install:
        _install(model_path)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "recipe": recipe.to_dict(),
        "rows": len(rows),
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak),
        **metrics,
    }
    atomic_write_bytes(out / "eval.json", json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8"))
    return RerankerResult(out, model_path, trainer.state.global_step, metrics, checkpoint, seconds, peak)


def _arguments(recipe: RerankerRecipe, out: Path, max_steps: int, show_progress: bool):
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    pairs_per_query = 1 + recipe.negatives if recipe.loss == "bce" else 1  # bce: one row per pair
    return CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=recipe.batch_size * pairs_per_query,
        learning_rate=recipe.lr,
        num_train_epochs=recipe.epochs,
        max_steps=max_steps,
        warmup_ratio=recipe.warmup_ratio,
        seed=recipe.seed,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=2,
        eval_strategy="steps",
        eval_steps=recipe.save_steps,
        logging_steps=10,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=not show_progress,
    )


def _dev_metrics(result: dict[str, float]) -> dict[str, float]:
    return {k.replace("dev_", ""): round(float(v), 5) for k, v in result.items()}


def _prepare(out: Path, recipe: RerankerRecipe, *, resume: bool, overwrite: bool) -> Path | None:
    """Check the run folder against the recipe; the checkpoint to resume from (``None``: fresh)."""
    recorded = out / "recipe.json"
    if resume:
        if recorded.is_file() and _recorded_recipe(recorded) != recipe.to_dict():
            raise InputError(f"--resume: {out} was started with another recipe ({recorded}); resume with it")
        checkpoint = last_checkpoint(out / "checkpoints")
        if checkpoint is None:
            log.warning(
                "koe5: --resume: no complete checkpoint in %s; starting from step 0", out / "checkpoints"
            )
        return checkpoint
    leftovers = [p for p in (out / "checkpoints", out / "model", out / "log.jsonl") if p.exists()]
    if leftovers and not overwrite:
        names = ", ".join(p.name for p in leftovers)
        raise InputError(f"{out} holds an earlier run ({names}): pass --resume to continue it or --overwrite")
    for path in leftovers:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(recorded, json.dumps(recipe.to_dict(), indent=2, ensure_ascii=False).encode("utf-8"))
    return None


def _recorded_recipe(path: Path) -> dict[str, Any]:
    # a run folder of an older koe5 lacks the fields added since: their defaults are what it ran
    recorded = json.loads(path.read_text(encoding="utf-8"))
    return {**RerankerRecipe(recorded.get("name", "")).to_dict(), **recorded}


def _rows(out: Path, recipe: RerankerRecipe, source_dir, encoder) -> list[dict[str, Any]]:
    """The training rows, built once per run folder (mining is the slow part of a restart)."""
    path = out / "data.jsonl"
    if path.is_file():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    rows = training_rows(recipe, source_dir, encoder=encoder)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_bytes(path, text.encode("utf-8"))
    return rows


def _install(model_path: Path) -> Path:
    from koe5.rerank import default_reranker_dir

    target = default_reranker_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target, replace=True) as tmp:
        shutil.copytree(model_path, tmp, dirs_exist_ok=True)
    log.info("koe5: installed the reranker at %s (Reranker.load('default'))", target)
    return target
