"""`koe5 index build/add/delete/info` and `koe5 search`: search your own Korean documents."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from koe5.cli.options import (
    MODEL_DEFAULTS,
    ActorsOpt,
    AddressOpt,
    DeviceOpt,
    EngineOpt,
    GpusPerActorOpt,
    JsonOpt,
    ModelOptions,
    PrecisionOpt,
    RerankBackendOpt,
    RerankWeightOpt,
    RerankWindowOpt,
    app,
    comma_list,
    fail,
    failing,
    ray_engine,
    say,
    show_progress,
    warn,
    with_model_options,
)

index_app = typer.Typer(
    help="Build and change a search index (dense + Korean BM25) over your documents.",
    no_args_is_help=True,
)
app.add_typer(index_app, name="index")

# a str, not a Path: Path would fold the // of a postgresql:// URL
IndexArg = Annotated[str, typer.Argument(help="The index folder, or a postgresql://…?index=NAME URL.")]
# strs, not Paths: a Path would fold the // of an s3:// or gs:// URI
DocsArg = Annotated[
    list[str],
    typer.Argument(
        help="JSONL, CSV/TSV, Parquet (id, text, optional title and metadata) or a folder; several, or "
        "URIs such as s3://bucket/docs/ (read with pyarrow's filesystems)."
    ),
]
IdFieldOpt = Annotated[str, typer.Option("--id-field", help="Field or column holding the document id.")]
TextFieldOpt = Annotated[str, typer.Option("--text-field", help="Field or column holding the text.")]
TitleFieldOpt = Annotated[str, typer.Option("--title-field", help="Field or column holding the title.")]


def _source(docs: list[str], id_field: str, text_field: str, title_field: str):
    from koe5.search.documents import DocumentSource

    paths = docs[0] if len(docs) == 1 else docs
    return DocumentSource(paths, id_field=id_field, text_field=text_field, title_field=title_field)


def _report(action: str, folder: str, report: dict, index, as_json: bool) -> None:
    counts = index.manifest["counts"]
    if as_json:
        doc = {"index": str(folder), "action": action, **report, "counts": counts}
        doc["dense"] = index.manifest["dense"]["active"]
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.get("skipped", {}).items())
    say(
        f"{action} {report.get('documents', 0)} documents ({report.get('chunks', 0)} chunks) in "
        f"{report.get('seconds', 0)} s" + (f"; skipped {skipped}" if skipped else "")
    )
    typer.echo(
        f"{folder}: {counts['documents']} documents, {counts['chunks']} chunks, "
        f"dense search {index.manifest['dense']['active']}"
    )


ChunkTokensOpt = Annotated[
    int | None,
    typer.Option("--chunk-tokens", help="Tokens per chunk, prefix included (default: the model's max)."),
]
VectorsOpt = Annotated[
    str,
    typer.Option(
        "--vectors",
        help="Dense vectors in memory: float32, or compact float16, int8, int4 or binary (candidates then "
        "rescored from the float32 vectors on disk).",
    ),
]
OversampleOpt = Annotated[
    int | None,
    typer.Option("--oversample", help="Compact vectors: candidates rescored a result (default by kind)."),
]
TagsOpt = Annotated[
    str | None, typer.Option("--tags", help="Kiwi tags BM25 keeps, comma-separated (default: content words).")
]


@index_app.command("build")
@with_model_options
def build(
    docs: DocsArg,
    output: Annotated[
        str, typer.Option("--output", "-o", help="The index folder to create, or a postgresql://… URL.")
    ],
    chunk_tokens: ChunkTokensOpt = None,
    overlap: Annotated[int, typer.Option("--overlap", help="Tokens shared by consecutive chunks.")] = 64,
    ann: Annotated[
        str, typer.Option("--ann", help="Dense search: auto (exact for small collections), exact or hnsw.")
    ] = "auto",
    vectors: VectorsOpt = "float32",
    oversample: OversampleOpt = None,
    tags: TagsOpt = None,
    k1: Annotated[float, typer.Option("--k1", help="BM25 k1.")] = 1.5,
    b: Annotated[float, typer.Option("--b", help="BM25 b.")] = 0.75,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted build of the same documents.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing index (only when done).")
    ] = False,
    cache: Annotated[
        bool, typer.Option("--cache", help="Reuse and store chunk vectors in koe5's embedding cache.")
    ] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b")] = None,
    id_field: IdFieldOpt = "id",
    text_field: TextFieldOpt = "text",
    title_field: TitleFieldOpt = "title",
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = None,
    model_options: ModelOptions = MODEL_DEFAULTS,
    as_json: JsonOpt = False,
) -> None:
    """Index documents: chunk, encode, analyse with Kiwi; one folder, written atomically."""
    from koe5.search import Index, KiwiAnalyzer
    from koe5.search.korean import DEFAULT_TAGS
    from koe5.search.location import is_database

    ray = ray_engine(engine, address, actors, gpus_per_actor, batch_size)
    with failing(), contextlib.ExitStack() as stack:
        analyzer = KiwiAnalyzer(comma_list(tags) if tags else DEFAULT_TAGS)
        source = _source(docs, id_field, text_field, title_field)
        if ray is not None and not is_database(output):  # the actors start while the model loads here
            ray = stack.enter_context(ray.started(analyzer))
        enc = model_options.load()
        emb_cache = None
        if cache:
            from koe5.embcache import EmbeddingCache

            emb_cache = EmbeddingCache()
        index = Index.build(
            source,
            enc,
            output,
            chunk_tokens=chunk_tokens,
            overlap=overlap,
            ann=ann,
            vectors=vectors,
            oversample=oversample,
            analyzer=analyzer,
            k1=k1,
            b=b,
            resume=resume,
            overwrite=force,
            show_progress=show_progress(),
            cache=emb_cache,
            batch_size=batch_size,
            engine=ray,
        )
    _report("indexed", output, index.last_report, index, as_json)


@index_app.command("add")
def add(
    index_dir: IndexArg,
    docs: DocsArg,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace documents whose id is already in the index.")
    ] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b")] = None,
    vectors: Annotated[
        str | None, typer.Option("--vectors", help="The index's setting (an index keeps its build's).")
    ] = None,
    id_field: IdFieldOpt = "id",
    text_field: TextFieldOpt = "text",
    title_field: TitleFieldOpt = "title",
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Add documents to an index (only the new ones are encoded and analysed)."""
    from koe5.search import open_index
    from koe5.search.compact import check_same, vectors_of

    with failing():
        index = open_index(index_dir, device=device, precision=precision)
        check_same(vectors_of(index.manifest), vectors, index_dir, "rebuild it (--force) to change them")
        report = index.add(
            _source(docs, id_field, text_field, title_field),
            replace=replace,
            show_progress=show_progress(),
            batch_size=batch_size,
        )
    _report("added", index_dir, report, index, as_json)


@index_app.command("delete")
def delete(
    index_dir: IndexArg,
    ids: Annotated[list[str] | None, typer.Argument(help="Document ids to delete.")] = None,
    ids_file: Annotated[
        Path | None, typer.Option("--ids-file", help="A file of ids, one per line ('-': stdin).")
    ] = None,
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="Ignore ids that are not in the index.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete documents by id."""
    from koe5.search import Index
    from koe5.textio import read_texts

    with failing():
        wanted = list(ids or [])
        if ids_file is not None:
            wanted += [line.strip() for line in read_texts(str(ids_file), fmt="text").texts if line.strip()]
        if not wanted:
            fail("give ids to delete, as arguments or with --ids-file")
        index = Index.load(index_dir)
        deleted = index.delete(wanted, missing_ok=missing_ok)
    counts = index.manifest["counts"]
    if as_json:
        typer.echo(json.dumps({"index": str(index_dir), "deleted": deleted, "counts": counts}, indent=2))
        return
    typer.echo(f"{index_dir}: deleted {deleted} documents; {counts['documents']} left")


@index_app.command("info")
def info(index_dir: IndexArg, as_json: JsonOpt = False) -> None:
    """What an index holds: model, settings, counts."""
    from koe5.search.opening import read_info

    with failing():
        manifest = read_info(index_dir)
    if as_json:
        typer.echo(json.dumps(manifest, ensure_ascii=False, indent=2))
        return
    c, m, d = manifest["counts"], manifest["model"], manifest["dense"]
    ch, bm = manifest["chunking"], manifest["bm25"]
    fusion = manifest["fusion"]
    low_high = fusion.get("adaptive")
    weight = (
        f"dense weight {low_high[0]}-{low_high[1]} by query"
        + (" (from the lists' peaks and BM25's coverage)" if fusion.get("confidence") else "")
        if low_high
        else f"dense weight {fusion['weight']}"
    )
    typer.echo(
        f"{index_dir} (koe5 index v{manifest['version']}, updated {manifest['updated']})\n"
        f"  documents   {c['documents']}  chunks {c['chunks']}  deleted chunks {c['deleted_chunks']}\n"
        f"  model       {m['name']}  ({m['dim']} dims, fingerprint {m['fingerprint']})\n"
        f"  chunking    {ch['max_tokens']} tokens with prefix, overlap {ch['overlap']}\n"
        f"  dense       {d['active']} (ann={d['ann']}, threshold {d['threshold']}), {_vectors(manifest)}\n"
        f"  bm25        kiwi {','.join(bm['analyzer']['tags'])}  k1={bm['k1']} b={bm['b']}\n"
        f"  hybrid      {fusion['method']}, {weight}"
    )


def _vectors(manifest: dict) -> str:
    """An index's vector setting, and what its dense side holds in memory (a folder's)."""
    d, memory = manifest["dense"], manifest.get("memory")
    text = f"{d.get('vectors', 'float32')} vectors"
    if "oversample" in d:
        text += f", {d['oversample']}x k candidates rescored"
    if memory and memory["resident bytes per chunk"] is not None:
        text += f"; {memory['resident bytes per chunk']:g} bytes a chunk in memory"
    return text


def _filters(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"--filter takes key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        key = key.strip()
        if key in out:  # a repeated key means any of the values
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def _fusion(index, method: str | None, dense_weight: float | None):
    """The fusion ``--fusion``/``--dense-weight`` ask for over the index's own, or ``None``."""
    from koe5.search import Fusion

    if method is None and dense_weight is None:
        return None
    base = index.manifest["fusion"]
    per_query = dense_weight is None  # a fixed weight replaces the index's per-query one
    return Fusion(
        method or base["method"],
        base["weight"] if per_query else dense_weight,
        base["rrf_k"],
        base["depth"],
        base.get("adaptive") if per_query else None,
        base.get("confidence") if per_query else None,
    )


def _reranker(
    k: int,
    rerank: bool,
    name: str | None,
    depth: int | None,
    weight: float | None,
    how: dict,
):
    """The reranker ``--rerank``/``--reranker`` name (``None``: no reranking) and the depth to rerank;
    ``how``: the device, precision, backend and window it loads with."""
    from koe5.rerank.model import check_weight
    from koe5.search.reranking import DEFAULT_DEPTH, check_depth

    if not rerank and name is None:
        if depth is not None or weight is not None or how["backend"] != "torch" or how["window"] is not None:
            fail(
                "--rerank-depth, --rerank-weight, --rerank-window and --rerank-backend need --rerank "
                "(or --reranker MODEL)"
            )
        return None, DEFAULT_DEPTH
    depth = check_depth(k, max(DEFAULT_DEPTH, k) if depth is None else depth)  # before the model loads
    weight = None if weight is None else check_weight(weight)
    from koe5.rerank import Reranker

    reranker = Reranker.load(name or "default", weight=weight, **how)
    say(f"reranking the {depth} best with {reranker.name}")
    return reranker, depth


def _print_hits(hits: list) -> None:
    if not hits:
        typer.echo("no results")
        return
    for rank, hit in enumerate(hits, 1):
        head = f"{rank:>2}. {hit.score:.4f}  {hit.doc_id}"
        if hit.title:
            head += f"  · {hit.title}"
        if hit.retrieval_score is not None:
            head += f"  (first stage {hit.retrieval_score:.4f})"
        typer.echo(head)
        snippet = " ".join(hit.text.split())
        typer.echo("    " + (snippet[:300] + " …" if len(snippet) > 300 else snippet))
        if hit.metadata:
            typer.echo("    " + json.dumps(hit.metadata, ensure_ascii=False))


@app.command()
def search(
    index_dir: IndexArg,
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="How many documents.")] = 10,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")] = "hybrid",
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="key=value on document metadata (repeat; same key: any of)."),
    ] = None,
    fusion: Annotated[
        str | None,
        typer.Option("--fusion", help="Hybrid: minmax, dbsf or rrf (default: the index's)."),
    ] = None,
    dense_weight: Annotated[
        float | None,
        typer.Option(
            "--dense-weight",
            help="Hybrid: a fixed weight of the dense side, 0 to 1, instead of the index's "
            "(adaptive: one per query).",
        ),
    ] = None,
    rerank: Annotated[
        bool,
        typer.Option("--rerank", help="Rerank the best results with koe5's reranker (see --reranker)."),
    ] = False,
    reranker_name: Annotated[
        str | None,
        typer.Option(
            "--reranker", help="Rerank with this one: a registry name, hub id or folder (implies --rerank)."
        ),
    ] = None,
    rerank_depth: Annotated[
        int | None,
        typer.Option(
            "--rerank-depth", help="How many first-stage results to rerank, k to 1000 (default: 50, or k)."
        ),
    ] = None,
    rerank_weight: RerankWeightOpt = None,
    rerank_window: RerankWindowOpt = None,
    rerank_backend: RerankBackendOpt = "torch",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Must be the model the index was built with.")
    ] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Search an index: ranked documents with scores, the best chunk's text and metadata."""
    from koe5.search import open_index

    filters = _filters(filter_ or [])
    with failing():
        index = open_index(index_dir, model=model, device=device, precision=precision)
        loading = {"device": device, "precision": precision, "backend": rerank_backend}
        loading["window"] = rerank_window
        reranker, depth = _reranker(k, rerank, reranker_name, rerank_depth, rerank_weight, loading)
        chosen = _fusion(index, fusion, dense_weight)
        how = {"fusion": chosen, "rerank": reranker, "rerank_depth": depth}
        hits = index.search(query, k=k, mode=mode, filters=filters or None, **how)
        unknown = index.unknown_filter_keys(filters) if filters else []
    warnings = [f"no document has the metadata key {key!r}: its filter matches nothing" for key in unknown]
    if as_json:
        doc = {"query": query, "mode": mode, "k": k, "hits": [h.to_dict() for h in hits]}
        if reranker is not None:
            doc |= {"reranker": reranker.name, "rerank_depth": depth, "rerank_weight": reranker.weight}
            doc["rerank_backend"] = reranker.backend
        if warnings:
            doc["warnings"] = warnings
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    for message in warnings:
        warn(message)
    _print_hits(hits)
