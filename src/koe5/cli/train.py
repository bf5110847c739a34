"""`koe5 train`, `mine`, `build-data`, `merge`: fine-tuning with the KoE5 recipe (see koe5.train)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from koe5.cli._common import _fail, _progress, _state, app
from koe5.errors import Koe5Error


def _say(message: str) -> None:
    if not _state["quiet"]:
        typer.echo(message, err=True)


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


@app.command()
def train(
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            help="Training rows: JSONL, CSV/TSV, Parquet, a saved dataset or a hub id (repeatable).",
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Run folder (model/, checkpoints/, log.jsonl).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML or YAML file of settings.")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="koe5 (default), kure-v1 or koe5-small.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Start from: 'default', a folder, a hub id.")
    ] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="cached-mnrl (default), mnrl or gist.")] = None,
    guide: Annotated[
        str | None, typer.Option("--guide", help="Guide model of the gist loss (KURE-v1).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-b", help="Global batch (in-batch negatives).")
    ] = None,
    mini_batch: Annotated[
        int | None, typer.Option("--mini-batch", help="GradCache mini-batch: bounds memory.")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Optimizer steps (overrides --epochs).")
    ] = None,
    warmup: Annotated[float | None, typer.Option("--warmup", help="Warm-up fraction of the steps.")] = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", help="Truncate training texts to N tokens.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="auto, fp32, bf16, fp16.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    eval_tasks: Annotated[
        str | None, typer.Option("--eval-tasks", help="Benchmark tasks to evaluate (comma-separated).")
    ] = None,
    eval_holdout: Annotated[
        float | None,
        typer.Option("--eval-holdout", help="Hold out this fraction (< 1) or number of rows, by group."),
    ] = None,
    eval_data: Annotated[
        str | None, typer.Option("--eval-data", help="A dev file of rows to evaluate on.")
    ] = None,
    eval_steps: Annotated[int | None, typer.Option("--eval-steps")] = None,
    save_steps: Annotated[int | None, typer.Option("--save-steps", help="Checkpoint every N steps.")] = None,
    merge_base: Annotated[
        float | None,
        typer.Option("--merge-base", metavar="ALPHA", help="Final = (1-ALPHA)·base + ALPHA·tuned."),
    ] = None,
    query_col: Annotated[str | None, typer.Option("--query-col")] = None,
    positive_col: Annotated[str | None, typer.Option("--positive-col")] = None,
    negative_cols: Annotated[str | None, typer.Option("--negative-cols", help="Comma-separated.")] = None,
    group_col: Annotated[
        str | None, typer.Option("--group-col", help="Rows of a group never share a batch.")
    ] = None,
    query_prefix: Annotated[str | None, typer.Option("--query-prefix")] = None,
    passage_prefix: Annotated[str | None, typer.Option("--passage-prefix")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last complete checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete an earlier run in --output.")
    ] = False,
) -> None:
    """Fine-tune an embedding model (defaults: the KoE5 recipe: CachedMNRL, scale 20, batch 512, lr 1e-5).

    Precedence: --recipe, then --config, then flags.
    Several GPUs or nodes: torchrun --nproc_per_node N $(which koe5) train ...
    """
    from koe5.train import TrainConfig, load_config_file
    from koe5.train import train as run

    flags: dict[str, Any] = {
        "data": data or None,
        "output": output,
        "model": model,
        "loss": loss,
        "guide": guide,
        "batch_size": batch_size,
        "mini_batch": mini_batch,
        "lr": lr,
        "epochs": epochs,
        "max_steps": max_steps,
        "warmup": warmup,
        "max_length": max_length,
        "seed": seed,
        "precision": precision,
        "gradient_checkpointing": gradient_checkpointing,
        "eval_tasks": _csv(eval_tasks),
        "eval_holdout": eval_holdout,
        "eval_data": eval_data,
        "eval_steps": eval_steps,
        "save_steps": save_steps,
        "merge_base": merge_base,
        "query_column": query_col,
        "positive_column": positive_col,
        "negative_columns": _csv(negative_cols),
        "group_column": group_col,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
    }
    try:
        values = load_config_file(config) if config else {}
        name = recipe or values.pop("recipe", None) or "koe5"
        values.pop("recipe", None)
        values.update({k: v for k, v in flags.items() if v is not None})
        cfg = TrainConfig.from_recipe(name, **values)
        result = run(cfg, resume=resume, overwrite=overwrite, show_progress=_progress())
    except Koe5Error as exc:
        _fail(exc)
    final = result.metrics.get("final", {})
    if final:
        _say(
            "final: "
            + ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in final.items() if "ndcg" in k)
        )
    _say(f"{result.steps} steps; model in {result.model_path}; log in {result.log_path}")


@app.command()
def mine(
    pairs: Annotated[
        str, typer.Argument(help="(query, positive) rows: JSONL, CSV/TSV, Parquet or a dataset.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Triplets: .jsonl, .csv, .tsv or .parquet.")],
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="Extra candidate texts: JSONL ({'text'}) or one per line.")
    ] = None,
    method: Annotated[str, typer.Option("--method", help="dense or bm25 (Kiwi morphemes).")] = "dense",
    model: Annotated[
        str, typer.Option("--model", "-m", help="Dense model ('default', folder, hub id).")
    ] = "default",
    num_negatives: Annotated[int, typer.Option("--num-negatives", "-n")] = 1,
    range_min: Annotated[int, typer.Option("--range-min", help="Skip this many top-ranked candidates.")] = 0,
    range_max: Annotated[int, typer.Option("--range-max", help="Take candidates up to this rank.")] = 50,
    margin: Annotated[
        float,
        typer.Option(
            "--margin", help="False-negative guard: drop candidates this close to the positive's score."
        ),
    ] = 0.05,
    absolute: Annotated[
        bool,
        typer.Option(
            "--absolute-margin", help="The margin is absolute, not a fraction of the positive's score."
        ),
    ] = False,
    sampling: Annotated[str, typer.Option("--sampling", help="random or top.")] = "random",
    fmt: Annotated[
        str, typer.Option("--format", help="triplet (a row per negative) or n-tuple.")
    ] = "triplet",
    remine: Annotated[bool, typer.Option("--remine", help="Also mine rows that bring a negative.")] = False,
    query_col: Annotated[str | None, typer.Option("--query-col")] = None,
    positive_col: Annotated[str | None, typer.Option("--positive-col")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """Add hard negatives to (query, positive) pairs, with a guard against false negatives."""
    from koe5.train.mine import mine_hard_negatives
    from koe5.train.triplets import read_pairs, write_rows

    try:
        rows = read_pairs(pairs, query_column=query_col, positive_column=positive_col)
        texts: list[str] = []
        if corpus is not None:
            from koe5.textio import read_texts

            texts = read_texts(corpus).texts
        encoder = None
        if method == "dense":
            from koe5.encoder import load

            encoder = load(model)
        out, report = mine_hard_negatives(
            rows,
            corpus=texts,
            method=method,
            encoder=encoder,
            num_negatives=num_negatives,
            range_min=range_min,
            range_max=range_max,
            margin=margin,
            relative_margin=not absolute,
            sampling=sampling,
            keep_given=not remine,
            output_format=fmt,
            seed=seed,
            show_progress=_progress(),
        )
        write_rows(output, out)
    except Koe5Error as exc:
        _fail(exc)
    _say(report.summary())
    _say(f"wrote {output}")


@app.command("build-data")
def build_data(
    output: Annotated[Path, typer.Option("--output", "-o", help="Rows: .jsonl, .csv, .tsv or .parquet.")],
    source_dir: Annotated[
        Path | None,
        typer.Option(
            "--source-dir",
            help="The Korean training material (default: $KOE5_TRAIN_DATA, else "
            "../shared/data/train beside the repository).",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="source=weight,... (0.5 keeps half, 2 repeats; default: every source 1)."
        ),
    ] = None,
    exclude_tasks: Annotated[
        str | None,
        typer.Option(
            "--exclude-tasks",
            help="Evaluation tasks whose texts are kept out (default: the bundled "
            "suite; hub tasks such as Ko-StrategyQA need the hub).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """Build (query, positive[, negative], group, source) rows from the Korean training material.

    Rows overlapping the bundled evaluation tasks are dropped. SOURCES.md (origins, licences, counts) is
    written beside the output. Add negatives with `koe5 mine`.
    """
    from koe5.files import atomic_write_bytes
    from koe5.train.sources import SOURCES, build_rows, evaluation_texts, sources_markdown
    from koe5.train.triplets import write_rows

    try:
        mix = {name: 1.0 for name in SOURCES}
        if weights:
            mix = {}
            for item in _csv(weights) or []:
                name, _, value = item.partition("=")
                try:
                    mix[name.strip()] = float(value)
                except ValueError:
                    _fail(ValueError(f"--weights takes source=number pairs, got {item!r}"))
        from koe5.tasks import BUNDLED

        exclude = evaluation_texts([*BUNDLED, *(_csv(exclude_tasks) or [])]) if exclude_tasks else None
        rows, report = build_rows(source_dir, mix, seed=seed, exclude=exclude)
        write_rows(output, rows)
        atomic_write_bytes(output.parent / "SOURCES.md", sources_markdown(report, mix).encode("utf-8"))
    except Koe5Error as exc:
        _fail(exc)
    for line in report.lines():
        _say(line)
    _say(f"wrote {len(rows)} rows to {output} (sources and licences in {output.parent / 'SOURCES.md'})")


@app.command()
def merge(
    base: Annotated[str, typer.Argument(help="The starting model ('default', folder, hub id).")],
    tuned: Annotated[str, typer.Argument(help="The fine-tuned model folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the merged model.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Tuned share: (1-alpha)·base + alpha·tuned.")] = 0.5,
) -> None:
    """Average a fine-tuned model's weights with its base (WiSE-FT), e.g. to choose alpha on a dev split."""
    from koe5.files import atomic_dir
    from koe5.registry import resolve
    from koe5.train.merge import merge_with_base
    from koe5.train.run import load_model

    try:
        if not 0 <= alpha <= 1:
            raise ValueError(f"--alpha must be in [0, 1], got {alpha}")
        merged = load_model(resolve(tuned)[1], device="cpu")
        merge_with_base(merged, load_model(resolve(base)[1], device="cpu"), alpha)
        with atomic_dir(output, replace=True) as tmp:
            merged.save(str(tmp))
            (tmp / "koe5_merge.json").write_text(
                json.dumps({"base": base, "tuned": tuned, "alpha": alpha}, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
    except (Koe5Error, ValueError) as exc:
        _fail(exc)
    _say(f"wrote {output}: {1 - alpha:g}·{base} + {alpha:g}·{tuned}")
