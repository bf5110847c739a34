"""`koe5 train`, `mine`, `build-data`, `merge`: fine-tuning with the KoE5 recipe (see koe5.train)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from koe5.cli.options import app, comma_list, fail, failing, option, replace_parameter, say, show_progress
from koe5.train.config import TrainConfig

#: The TrainConfig fields that are flags of `koe5 train`, in --help order (--data and --output come first,
#: then --config). A flag is the field's name (``--max-steps``) unless named in _FLAGS; its help text is
#: the field's ``metadata["help"]``.
_SETTINGS = (
    "recipe",
    "model",
    "loss",
    "guide",
    "batch_size",
    "mini_batch",
    "lr",
    "epochs",
    "max_steps",
    "warmup",
    "max_length",
    "seed",
    "precision",
    "gradient_checkpointing",
    "eval_tasks",
    "eval_holdout",
    "eval_data",
    "eval_steps",
    "save_steps",
    "merge_base",
    "query_column",
    "positive_column",
    "negative_columns",
    "group_column",
    "query_prefix",
    "passage_prefix",
)
_FLAGS = {
    "data": ("--data", "-d"),
    "output": ("--output", "-o"),
    "model": ("--model", "-m"),
    "batch_size": ("--batch-size", "-b"),
    "gradient_checkpointing": ("--gradient-checkpointing/--no-gradient-checkpointing",),
    "query_column": ("--query-col",),
    "positive_column": ("--positive-col",),
    "negative_columns": ("--negative-cols",),
    "group_column": ("--group-col",),
}
_METAVARS = {"merge_base": "ALPHA"}
_HELP = {f.name: f.metadata.get("help") for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)
_COMMA_SEPARATED = ("eval_tasks", "negative_columns")  # list settings given as "a,b" (--data repeats)


def _setting(name: str) -> inspect.Parameter:
    """The flag of a TrainConfig field: None unless given, so that the recipe and --config decide."""
    kind = str if name in _COMMA_SEPARATED else _TYPES[name]
    flags = _FLAGS.get(name, ("--" + name.replace("_", "-"),))
    return option(name, kind | None, None, *flags, help=_HELP[name], metavar=_METAVARS.get(name))


TRAIN_OPTIONS = [
    *map(_setting, ("data", "output")),
    option("config", Path | None, None, "--config", "-c", help="TOML or YAML file of settings."),
    *map(_setting, _SETTINGS),
    option("resume", bool, False, "--resume", help="Continue from the last complete checkpoint."),
    option("overwrite", bool, False, "--overwrite", help="Delete an earlier run in --output."),
]


@app.command()
@replace_parameter("flags", TRAIN_OPTIONS)
def train(flags: dict[str, Any] | None = None) -> None:
    """Fine-tune an embedding model (defaults: the KoE5 recipe: CachedMNRL, scale 20, batch 512, lr 1e-5).

    Precedence: --recipe, then --config, then flags.
    Several GPUs or nodes: torchrun --nproc_per_node N $(which koe5) train ...
    """
    from koe5.train import load_config_file
    from koe5.train import train as run

    flags = dict(flags or {})
    config, recipe = flags.pop("config"), flags.pop("recipe")
    resume, overwrite = flags.pop("resume"), flags.pop("overwrite")
    flags["data"] = flags["data"] or None
    flags.update({name: comma_list(flags[name]) for name in _COMMA_SEPARATED})
    with failing():
        values = load_config_file(config) if config else {}
        name = recipe or values.pop("recipe", None) or "koe5"
        values.pop("recipe", None)
        values.update({k: v for k, v in flags.items() if v is not None})
        cfg = TrainConfig.from_recipe(name, **values)
        result = run(cfg, resume=resume, overwrite=overwrite, show_progress=show_progress())
    final = result.metrics.get("final", {})
    if final:
        say(
            "final: "
            + ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in final.items() if "ndcg" in k)
        )
    say(f"{result.steps} steps; model in {result.model_path}; log in {result.log_path}")


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

    with failing():
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
            show_progress=show_progress(),
        )
        write_rows(output, out)
    say(report.summary())
    say(f"wrote {output}")


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

    with failing():
        mix = {name: 1.0 for name in SOURCES}
        if weights:
            mix = {}
            for item in comma_list(weights) or []:
                name, _, value = item.partition("=")
                try:
                    mix[name.strip()] = float(value)
                except ValueError:
                    fail(f"--weights takes source=number pairs, got {item!r}")
        from koe5.tasks import BUNDLED

        exclude = evaluation_texts([*BUNDLED, *(comma_list(exclude_tasks) or [])]) if exclude_tasks else None
        rows, report = build_rows(source_dir, mix, seed=seed, exclude=exclude)
        write_rows(output, rows)
        atomic_write_bytes(output.parent / "SOURCES.md", sources_markdown(report, mix).encode("utf-8"))
    for line in report.lines():
        say(line)
    say(f"wrote {len(rows)} rows to {output} (sources and licences in {output.parent / 'SOURCES.md'})")


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

    with failing(ValueError):
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
    say(f"wrote {output}: {1 - alpha:g}·{base} + {alpha:g}·{tuned}")


@app.command("train-reranker")
def train_reranker(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Run folder (default: koe5's cache, runs/<recipe>)."),
    ] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="A named recipe (see docs/rerank.md).")] = (
        "koe5-reranker-small"
    ),
    base: Annotated[
        str | None, typer.Option("--base", help="Encoder to start from (default: the recipe's).")
    ] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="bce or lambda (default: the recipe's).")] = None,
    queries: Annotated[int | None, typer.Option("--queries", help="Training queries.")] = None,
    negatives: Annotated[int | None, typer.Option("--negatives", help="Hard negatives per query.")] = None,
    per_group: Annotated[
        int | None, typer.Option("--per-group", help="Queries of one group at most (default: the recipe's).")
    ] = None,
    mining: Annotated[
        str | None, typer.Option("--mining", help="bm25, dense or bm25+dense (default: the recipe's).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate (default: the recipe's).")
    ] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Stop after N steps (-1: the epochs).")] = -1,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    source_dir: Annotated[
        Path | None, typer.Option("--source-dir", help="The Korean training material (as build-data).")
    ] = None,
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="Make it the default reranker when done.")
    ] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier run in --output.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train koe5's own Korean reranker (a cross-encoder from the default model), installed as `default`."""
    from koe5.env import cache_dir
    from koe5.train.reranker import RECIPES
    from koe5.train.reranker import train_reranker as run

    if recipe not in RECIPES:
        fail(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    changes = {"base": base, "loss": loss, "queries": queries, "negatives": negatives, "seed": seed}
    changes |= {"per_group": per_group, "mining": mining, "lr": lr}
    with failing():
        chosen = dataclasses.replace(RECIPES[recipe], **{k: v for k, v in changes.items() if v is not None})
        out = output or cache_dir() / "runs" / chosen.name
        say(f"training {chosen.name} into {out}")
        result = run(
            chosen,
            out,
            source_dir=source_dir,
            resume=resume,
            overwrite=overwrite,
            install=install,
            max_steps=max_steps,
            show_progress=show_progress(),
        )
    summary = json.loads((result.output / "eval.json").read_text(encoding="utf-8"))
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    base_ndcg, final = summary.get("base", {}).get("ndcg@10"), summary["final"].get("ndcg@10")
    say(f"dev NDCG@10 of reranking the hybrid's top 20: {base_ndcg} before, {final} after")
    say(f"{result.steps} steps in {result.seconds:.0f} s; model in {result.model_path}")
