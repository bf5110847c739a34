"""One training run: data → sentence-transformers' trainer and loss → checkpoints → the final model.

Layout of ``config.output``::

    train_config.toml     the effective configuration (``koe5 train --config`` reads it back)
    log.jsonl             loss, learning rate and evaluation metrics, one JSON object a line
    checkpoints/          checkpoint-<step>/ (weights, optimizer, scheduler, RNG states)
    model/                the final sentence-transformers folder (written whole or not at all)
    model-tuned/          with merge_base: the fine-tuned weights before averaging with the base
    eval.json             metrics of the base (step 0), of the tuned and of the final model

Example::

    from koe5.train import TrainConfig, train
    result = train(TrainConfig.from_recipe("koe5", data=["triplets.jsonl"], output="runs/ko"))
    result.model_path           # runs/ko/model: koe5.load(...) / SentenceTransformer(...) load it
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from koe5 import env
from koe5.errors import InputError
from koe5.files import atomic_dir, atomic_write_bytes

# On CPUs with bf16 hardware, bf16 autocast trains the default model faster than fp32, with koe5's MKL
# shim too (benchmarks/finetune_korean.py; figures in docs/performance.md).
from koe5.runtime.hardware import cpu_has_native_bf16
from koe5.train.callbacks import JsonlLog, write_log_record
from koe5.train.checkpoints import checkpoint_step, last_checkpoint
from koe5.train.config import TrainConfig, to_toml, tomllib_loads
from koe5.train.evaluation import RetrievalEvaluator, heldout_task
from koe5.train.losses import build_loss
from koe5.train.sampler import GroupBatchSampler, row_keys
from koe5.train.triplets import Triplets, load_triplets

log = logging.getLogger("koe5")

CONFIG_NAME = "train_config.toml"
#: Settings that change what a resumed run computes; the others (logging, evaluation) may differ.
_RESUME_FIXED = (
    "data", "model", "loss", "guide", "scale", "gist_temperature", "gist_margin", "batch_size", "lr",
    "epochs", "max_steps", "warmup", "weight_decay", "scheduler", "optimizer", "seed", "max_length",
    "query_prefix", "passage_prefix", "query_column", "positive_column", "negative_columns",
    "group_column", "data_split", "eval_holdout",
)  # fmt: skip


@dataclass
class TrainResult:
    """What a run produced: the final model folder, its metrics and the number of optimizer steps."""

    output: Path
    model_path: Path
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed_from: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.output / "log.jsonl"


def _world() -> tuple[int, int]:
    """(rank, world size) as torchrun / accelerate launch set them (before any process group exists)."""
    return env.integer(env.RANK, 0), env.integer(env.WORLD_SIZE, 1)


def split_heldout(rows: Triplets, amount: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices (train, held-out). Whole groups are held out, so no paraphrase of a held-out query
    is trained on. ``amount`` < 1 is a fraction of the rows, otherwise a number of rows."""
    n = len(rows)
    if amount <= 0:
        return list(range(n)), []
    target = round(amount * n) if amount < 1 else int(amount)
    if target >= n:
        raise InputError(f"eval_holdout={amount} would hold out all {n} training rows")
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(rows.groups or [str(i) for i in range(n)]):
        groups.setdefault(g, []).append(i)
    names = list(groups)
    random.Random(seed).shuffle(names)
    held: list[int] = []
    for name in names:
        if len(held) >= target:
            break
        held.extend(groups[name])
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held)


def _precision(config: TrainConfig) -> dict[str, bool]:
    import torch

    choice = config.precision
    if choice == "auto":
        if torch.cuda.is_available():
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            choice = "bf16" if cpu_has_native_bf16() else "fp32"
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def _check_resume(saved_path: Path, config: TrainConfig) -> None:
    if not saved_path.is_file():
        return
    saved = tomllib_loads(saved_path.read_text(encoding="utf-8"))
    changed = [
        key
        for key in _RESUME_FIXED
        if saved.get(key)
        != (None if getattr(config, key) is None else json.loads(json.dumps(getattr(config, key))))
    ]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} → {getattr(config, k)!r}" for k in changed)
        raise InputError(
            f"--resume: the run in {saved_path.parent} was started with other settings ({details}); "
            "resume with the same settings (koe5 train --config "
            f"{saved_path}) or start over with --overwrite"
        )


def _prepare_output(
    out: Path, config: TrainConfig, *, resume: bool, overwrite: bool, rank: int
) -> Path | None:
    """Check the output folder and return the checkpoint to resume from (``None``: start fresh)."""
    checkpoints = out / "checkpoints"
    if resume:
        checkpoint = last_checkpoint(checkpoints)
        if checkpoint is None:
            log.warning("koe5: --resume: no complete checkpoint in %s; starting from step 0", checkpoints)
        else:
            _check_resume(out / CONFIG_NAME, config)
        return checkpoint
    leftovers = [p for p in (checkpoints, out / "model", out / "log.jsonl") if p.exists()]
    if leftovers and not overwrite:
        raise InputError(
            f"{out} holds an earlier run ({', '.join(p.name for p in leftovers)}): pass --resume to "
            "continue it or --overwrite to start over"
        )
    if leftovers and rank == 0:
        for path in leftovers:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return None


def _training_data(config: TrainConfig) -> tuple[Any, list[str] | None, dict[str, Any]]:
    """The training rows, their groups, and the retrieval splits to evaluate on (held-out, dev)."""
    rows = load_triplets(
        config.data,
        query_column=config.query_column,
        positive_column=config.positive_column,
        negative_columns=config.negative_columns,
        group_column=config.group_column,
        split=config.data_split,
    )
    train_idx, held_idx = split_heldout(rows, config.eval_holdout, config.seed)
    splits = {}
    if held_idx:
        splits["heldout"] = heldout_task(rows.dataset.select(held_idx).to_dict(), "held-out training rows")
    if config.eval_data:
        extra = load_triplets(config.eval_data, group_column=None)
        splits["dev"] = heldout_task(extra.dataset.to_dict(), str(config.eval_data))
    dataset = rows.dataset.select(train_idx) if held_idx else rows.dataset
    groups = [rows.groups[i] for i in train_idx] if rows.groups and held_idx else rows.groups
    if config.batch_size > len(dataset):
        raise InputError(
            f"batch_size {config.batch_size} is larger than the {len(dataset)} training rows "
            f"({rows.origin}{', after the held-out split' if held_idx else ''}); lower --batch-size"
        )
    if groups is not None and len(set(groups)) < config.batch_size:
        raise InputError(
            f"batch_size {config.batch_size} needs at least as many distinct groups, but the training rows "
            f"have {len(set(groups))} (rows of a group never share a batch); lower --batch-size"
        )
    return dataset, groups, splits


def load_model(location: str, device: str | None = None):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(location, device=device)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Any] | tuple[Any, ...] = (),
    show_progress: bool = False,
) -> TrainResult:
    """Train ``config.model`` on ``config.data`` as ``config`` says, and save the final model.

    ``resume`` continues from the last complete checkpoint in ``<output>/checkpoints`` with the same
    data order (the same batches, the same RNG states); ``overwrite`` deletes an earlier run first.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects. Works unchanged under torchrun /
    accelerate launch (DDP): ``config.batch_size`` is then split over the devices and, with
    ``gather_across_devices``, every device's rows are negatives for every query.
    """
    config = _absolute(config.validate())
    from sentence_transformers import SentenceTransformerTrainer

    from koe5.registry import resolve

    rank, world_size = _world()
    out = Path(config.output).expanduser()
    if config.batch_size % world_size:
        raise InputError(f"batch_size {config.batch_size} does not split evenly over {world_size} devices")
    checkpoint = _prepare_output(out, config, resume=resume, overwrite=overwrite, rank=rank)

    spec, location = resolve(
        config.model, query_prefix=config.query_prefix, passage_prefix=config.passage_prefix
    )
    dataset, groups, splits = _training_data(config)
    model, column_prompts, full_length = _prompted_model(location, spec, config, dataset.column_names)
    guide = load_model(resolve(config.guide)[1]) if config.loss == "gist" else None
    loss = build_loss(model, config, guide=guide, world_size=world_size)

    evaluator = None
    if splits or config.eval_tasks:
        evaluator = RetrievalEvaluator(splits, tasks=config.eval_tasks, spec=spec, max_length=full_length)
    keys = row_keys([dataset[name] for name in dataset.column_names], groups)
    args = _training_arguments(
        config, out, column_prompts, keys, world_size, evaluator is not None, show_progress
    )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            atomic_write_bytes(out / CONFIG_NAME, to_toml(config).encode("utf-8"))
    jsonl = JsonlLog(out / "log.jsonl", resume_step=checkpoint_step(checkpoint) if checkpoint else None)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[jsonl, *callbacks],
    )
    if not show_progress:  # the JSONL log has every record; the console stays quiet
        import datasets
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        datasets.disable_progress_bars()
    metrics: dict[str, Any] = {}
    if evaluator is not None and config.eval_at_start and checkpoint is None:
        metrics["base"] = _metrics(trainer.evaluate())
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    # Saving and the final evaluation happen on rank 0 alone and need no collective: leave the group
    # first, so the other processes do not wait on a barrier bounded by ddp_timeout meanwhile.
    _leave_process_group()
    steps = trainer.state.global_step
    model = trainer.model
    model.max_seq_length = full_length  # the saved model reads full-length texts again
    model_path = out / "model"
    if rank != 0:
        return TrainResult(out, model_path, steps, metrics, checkpoint)

    metrics.update(_save_final(model, config, location, evaluator, jsonl.last_eval, steps))
    _write_summary(out, config, steps, metrics, model_path)
    return TrainResult(out, model_path, steps, metrics, checkpoint)


def _write_summary(out: Path, config: TrainConfig, steps: int, metrics: dict, model_path: Path) -> None:
    """``eval.json`` and the ``final`` record of ``log.jsonl``."""
    summary = {"steps": steps, "merge_base": config.merge_base, "model": str(model_path), **metrics}
    atomic_write_bytes(out / "eval.json", json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8"))
    write_log_record(out / "log.jsonl", {"step": steps, "event": "final", **metrics.get("final", {})})


def _prompted_model(location: str, spec, config: TrainConfig, columns: list[str]):
    """The model to train (its prompts set from ``spec``, its length limit from ``config``), the prompt
    of each data column (the query column gets the query prefix, every other column the passage
    prefix) and the model's own length limit, which the saved model gets back."""
    model = load_model(location)
    full_length = model.max_seq_length
    if config.max_length:
        model.max_seq_length = config.max_length
    prompts = {"query": spec.query_prefix, "passage": spec.passage_prefix, "document": spec.passage_prefix}
    model.prompts = {k: v for k, v in prompts.items() if v}
    column_prompts = {name: spec.passage_prefix for name in columns}
    column_prompts["query"] = spec.query_prefix
    return model, {k: v for k, v in column_prompts.items() if v}, full_length


def _training_arguments(
    config: TrainConfig,
    out: Path,
    column_prompts: dict[str, str],
    keys,
    world_size: int,
    evaluating: bool,
    show_progress: bool,
):
    """sentence-transformers' training arguments for ``config``."""
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments

    precision = _precision(config)
    return SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size // world_size,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.scheduler,
        optim=config.optimizer,
        seed=config.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=config.eval_steps or config.save_steps,
        prompts=column_prompts or None,
        batch_sampler=partial(GroupBatchSampler, keys=keys, world_size=world_size),
        dataloader_drop_last=world_size > 1,
        # without a GPU: accelerate's MULTI_CPU mode (several processes, with gloo) and bf16 autocast
        # on the CPU both need use_cpu
        use_cpu=not torch.cuda.is_available() and (world_size > 1 or precision["bf16"]),
        ddp_backend=None if torch.cuda.is_available() or world_size == 1 else "gloo",
        report_to=["tensorboard"] if _has_tensorboard() else "none",
        disable_tqdm=not show_progress,
        **precision,
        # transformers 5 renamed it; passing it only when on keeps older versions working, without warnings
        **({"gradient_checkpointing": True} if config.gradient_checkpointing else {}),
    )


def _leave_process_group() -> None:
    """Under DDP, every process meets the others once training is done, then the group is torn down. A
    process that simply exits while the others still hold the group can abort in gloo's threads
    ("terminate called without an active exception"), which torchrun reports as a failed run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _save_final(
    model: Any, config: TrainConfig, location: str, evaluator: Any, last_eval: Any, steps: int
) -> dict[str, Any]:
    """Write ``model/`` (and ``model-tuned/`` when merging), ``eval.json`` and the log's last line."""
    out = Path(config.output)
    config_text = to_toml(config).encode("utf-8")
    metrics: dict[str, Any] = {}
    tuned: dict[str, Any] = {}
    if evaluator is not None:  # the trainer's evaluation of the last step, when it made one, is reused
        tuned = _metrics(last_eval[1] if last_eval and last_eval[0] == steps else evaluator(model))
    if config.merge_base is None:
        _save_model(model, out / "model", config_text)
        if tuned:
            metrics["final"] = tuned
    else:
        from koe5.train.merge import merge_with_base

        _save_model(model, out / "model-tuned", config_text)
        merge_with_base(model, load_model(location, device=str(model.device)), config.merge_base)
        _save_model(model, out / "model", config_text)
        if tuned:
            metrics["tuned"], metrics["final"] = tuned, _metrics(evaluator(model))
    return metrics


def _absolute(config: TrainConfig) -> TrainConfig:
    """Local paths made absolute, so the saved config works from any folder (hub ids stay as they are)."""

    def fix(value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return str(path.resolve()) if path.exists() else value

    return config.replace(
        data=[fix(d) for d in config.data],
        output=str(Path(config.output).expanduser().resolve()),
        model=config.model if config.model == "default" else fix(config.model),
        guide=fix(config.guide),
        eval_data=fix(config.eval_data),
    )


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Retrieval metrics as the trainer logs them (``eval_`` prefix), without its timing entries."""
    named = {k if k.startswith("eval_") else f"eval_{k}": v for k, v in metrics.items()}
    return {
        k: v
        for k, v in named.items()
        if k != "epoch" and not k.endswith(("_runtime", "_per_second", "_time"))
    }


def _has_tensorboard() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("tensorboard") is not None
        or importlib.util.find_spec("tensorboardX") is not None
    )


def _save_model(model: Any, folder: Path, config_text: bytes) -> None:
    """Write a complete sentence-transformers folder, or nothing (a kill leaves only a temp folder)."""
    with atomic_dir(folder, replace=True) as tmp:
        model.save(str(tmp))
        (tmp / "koe5_train_config.toml").write_bytes(config_text)
