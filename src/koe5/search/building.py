"""How an index is written: documents in batches, each batch a segment; a build beside the target
folder that resumes after a crash; the new generation a change commits; compaction.

The build goes into ``.<name>.partial`` beside the index folder, one segment of documents at a time,
recording each finished segment in the partial manifest (the resume point); BM25 and the HNSW graph
are built over all segments at the end, and the folder is moved into place only then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from koe5.errors import IndexFormatError, InputError
from koe5.search import compact, dense_state, indexed_model, store
from koe5.search.bm25 import KoreanBM25
from koe5.search.chunking import Chunker
from koe5.search.dense import HNSWParams, choose_kind
from koe5.search.documents import EMPTY, Document, as_documents
from koe5.search.korean import KiwiAnalyzer

log = logging.getLogger("koe5")


class SegmentWriter:
    """Turns a batch of documents into a segment: chunk, encode, analyse, write."""

    def __init__(self, encoder, chunker: Chunker, analyzer: KiwiAnalyzer, cache, batch_size, show_progress):
        self.encoder, self.chunker, self.analyzer = encoder, chunker, analyzer
        self.cache, self.batch_size, self.show_progress = cache, batch_size, show_progress

    @classmethod
    def for_index(cls, manifest: dict, encoder, analyzer: KiwiAnalyzer, cache, batch_size, show_progress):
        """The writer of new segments of an existing index: its chunking settings and analyser."""
        settings = manifest["chunking"]
        chunker = Chunker(
            encoder.tokenizer,
            max_tokens=settings["max_tokens"],
            overlap=settings["overlap"],
            prefix=settings["prefix"],
            title_tokens=settings["title_tokens"],
        )
        return cls(encoder, chunker, analyzer, cache, batch_size, show_progress)

    def write_segment(self, folder: Path, name: str, docs: list[Document]) -> int:
        columns, vectors, tokens = self.prepare(docs)
        store.write_segment(folder, name, columns, vectors, tokens)
        return len(tokens)

    def prepare(self, docs: list[Document]) -> tuple[dict[str, list], np.ndarray, list[list[str]]]:
        """The chunks of ``docs`` (columns of :data:`store.COLUMNS`), their vectors and Kiwi terms."""
        from koe5.embcache import encode_cached

        pieces = self.chunker.split_many([d.text for d in docs], [d.title for d in docs])
        columns: dict[str, list] = {c: [] for c in store.COLUMNS}
        inputs: list[str] = []
        for doc, chunks in zip(docs, pieces, strict=True):
            title = self.chunker.short_title(doc.title)
            meta = json.dumps(doc.metadata, ensure_ascii=False) if doc.metadata else ""
            for n, chunk in enumerate(chunks):
                columns["doc_id"].append(doc.id)
                columns["chunk"].append(n)
                columns["start"].append(chunk.start)
                columns["end"].append(chunk.end)
                columns["text"].append(chunk.text)
                columns["title"].append(doc.title)
                columns["metadata"].append(meta)
                inputs.append(f"{title} {chunk.text}" if title else chunk.text)
        vectors, _ = encode_cached(
            self.encoder,
            inputs,
            "passage",
            self.cache,
            show_progress=self.show_progress,
            **({"batch_size": self.batch_size} if self.batch_size else {}),
        )
        return columns, vectors, self.analyzer.analyze(inputs)


def settings_of(encoder, chunker: Chunker, analyzer: KiwiAnalyzer, **choices) -> dict:
    """The manifest's settings of a new index (a resumed build must match them): the model, chunking,
    BM25 (``k1``, ``b``), dense (``ann``, ``threshold``, ``hnsw``, ``vectors``, ``oversample``) and
    ``fusion`` choices."""
    hnsw = choices["hnsw"] or HNSWParams()
    dense = {"ann": choices["ann"], "threshold": int(choices["threshold"]), "hnsw": hnsw.to_dict()}
    dense |= compact.setting(choices.get("vectors", "float32"), choices.get("oversample"))
    return {
        "model": indexed_model.record(encoder),
        "chunking": {
            **chunker.config,
            "tokenizer": type(encoder.tokenizer).__name__,
            "vocab_size": len(encoder.tokenizer),
        },
        "bm25": {
            "k1": float(choices["k1"]),
            "b": float(choices["b"]),
            "method": "lucene",
            "analyzer": analyzer.config,
        },
        "dense": dense,
        "fusion": choices["fusion"].to_dict(),
    }


@dataclass
class BuildReport:
    """What :func:`write_batches` did."""

    documents: int = 0
    chunks: int = 0
    resumed: int = 0
    skipped: Counter[str] | None = None

    def summary(self, started: float) -> dict[str, Any]:
        """An index's ``last_report`` after a build that began at ``started`` (``perf_counter``)."""
        seconds = round(time.perf_counter() - started, 1)
        return {"documents": self.documents, "chunks": self.chunks, "resumed_documents": self.resumed,
                "skipped": dict(self.skipped or {}), "seconds": seconds}  # fmt: skip


def add_summary(documents: int, replaced: int, chunks: int, skipped, started: float) -> dict[str, Any]:
    """An index's ``last_report`` after an ``add`` that began at ``started`` (``perf_counter``)."""
    return {
        "documents": documents,
        "replaced": replaced,
        "chunks": chunks,
        "skipped": dict(skipped),
        "seconds": round(time.perf_counter() - started, 1),
    }


def write_batches(target, documents, segment_docs: int, show_progress: bool) -> BuildReport:
    """Write the documents not yet in a partial build, one batch at a time, each one a resume point.

    ``target`` is where the build goes: ``done_ids()`` (documents of finished batches), ``write(batch)``
    (one batch, committed, returns its chunks) and ``name`` (for the log): a partial folder
    (:class:`PartialFolder`) or a database's staging schema.
    """
    done = target.done_ids()
    if done:
        log.info("koe5: resuming %s: %d documents already indexed", target.name, len(done))
    report = BuildReport(resumed=len(done), skipped=Counter())  # a resumed build recounts skips
    docs_iter = as_documents(documents)
    progress = progress_bar(show_progress, "indexing documents", length(documents))
    progress.update(len(done))
    seen: dict[str, str] = dict.fromkeys(done, "the interrupted build")
    for batch in batches(docs_iter, segment_docs, seen, report.skipped, progress, resumed=done):
        report.chunks += target.write(batch)
        report.documents += len(batch)
    report.chunks += target.flush() if hasattr(target, "flush") else 0  # a pipelined target's last batches
    progress.close()
    report.skipped.update(getattr(docs_iter, "skipped", {}))
    return report


class PartialFolder:
    """A folder build in progress as a :func:`write_batches` target: each batch a segment, recorded in
    the partial manifest."""

    def __init__(self, partial: Path, manifest: dict, writer: SegmentWriter) -> None:
        self.partial, self.manifest, self.writer = partial, manifest, writer
        self.name = str(partial.with_name(partial.name.removeprefix(".").removesuffix(".partial")))

    def done_ids(self) -> set[str]:
        done: set[str] = set()
        for seg in self.manifest["segments"]:
            done.update(store.read_segment(self.partial, seg["name"]).table.column("doc_id").to_pylist())
        return done

    def write(self, batch: list[Document]) -> int:
        name = f"{self.manifest['next_segment']:06d}"
        return self._record(name, len(batch), self.writer.write_segment(self.partial, name, batch))

    def commit(self, documents: int, columns: dict[str, list], vectors: np.ndarray, tokens: list) -> int:
        """Write one segment prepared elsewhere (:meth:`SegmentWriter.prepare`) and record it."""
        name = f"{self.manifest['next_segment']:06d}"
        store.write_segment(self.partial, name, columns, vectors, tokens)
        return self._record(name, documents, len(tokens))

    def _record(self, name: str, documents: int, chunks: int) -> int:
        self.manifest["segments"].append({"name": name, "documents": documents, "chunks": chunks})
        self.manifest["next_segment"] += 1
        store.write_manifest(self.partial, self.manifest)  # the resume point
        return chunks


def build_folder(documents, folder: Path, settings: dict, writer: SegmentWriter, **how) -> BuildReport:
    """Build an index of ``documents`` beside ``folder`` and move it into place; ``how``: ``resume``,
    ``overwrite``, ``segment_docs``, ``show_progress``, ``engine`` (a
    :class:`~koe5.distributed.RayEngine` prepares the segments on Ray; ``None``: in this process).

    One build of a folder at a time: a second is refused at once, naming the first (it would
    otherwise remove the first one's partial build, and the last to finish would silently replace
    the other's index); the target is checked again once the lock is held.
    """
    from koe5._version import __version__
    from koe5.files import writer_lock

    if how.get("engine") is not None and writer.cache is not None:
        raise InputError("the embedding cache is this machine's: build on Ray without it")
    partial = folder.parent / f".{folder.name}.partial"
    settings = {**settings, "source": source_of(documents)}
    with writer_lock(folder, wait=False):
        check_target(folder, how["overwrite"], compact.vectors_of(settings))
        manifest = start_partial(partial, settings, how["resume"])
        manifest["koe5"] = __version__
        with store.writer_lock(partial):
            with pipeline(PartialFolder(partial, manifest, writer), how.get("engine")) as target:
                report = write_batches(target, documents, how["segment_docs"], how["show_progress"])
            if not sum(s["documents"] for s in manifest["segments"]):
                raise InputError(f"no documents to index{describe_skips(report.skipped)}")
            finish(partial, manifest, settings, report.skipped)
        move_into_place(partial, folder)
    for reason, count in report.skipped.items():
        log.warning("koe5: skipped %d %s", count, reason)
    return report


def pipeline(target: PartialFolder, engine):
    """``target`` itself, or the ``engine``'s target that prepares the segments elsewhere (Ray actors)."""
    return contextlib.nullcontext(target) if engine is None else engine.pipeline(target)


def source_of(documents) -> dict | None:
    """What a build reads, so that ``resume`` can refuse other documents: the files or folders, how
    many files and bytes; ``None`` for documents given in memory."""
    from koe5.search.documents import DocumentSource

    if isinstance(documents, (str, Path, list, tuple)):
        documents = as_documents(documents)
    return documents.describe() if isinstance(documents, DocumentSource) else None


def _read(source: dict | None) -> str:
    if source is None:
        return "documents given in memory"
    return f"{source['path']} ({source['files']} file(s), {source['bytes']} bytes)"


def read_batches(documents, size: int, show_progress: bool):
    """All of ``documents`` in batches (for a change, which encodes only after checking every id):
    the batches, where each id was seen, and the skipped counts."""
    docs_iter = as_documents(documents)
    skipped: Counter[str] = Counter()
    seen: dict[str, str] = {}
    progress = progress_bar(show_progress, "adding documents", length(documents))
    found = list(batches(docs_iter, size, seen, skipped, progress, resumed=set()))
    progress.close()
    skipped.update(getattr(docs_iter, "skipped", {}))
    return found, seen, skipped


def batches(
    docs: Iterable[Document],
    size: int,
    seen: dict[str, str],
    skipped: Counter[str],
    progress,
    *,
    resumed: set[str],
) -> Iterator[list[Document]]:
    """Valid documents in batches of ``size``: blank ones counted and skipped, resumed ones passed
    over, a repeated id an error naming both places."""
    batch: list[Document] = []
    for doc in docs:
        if doc.id in resumed:
            continue
        progress.update(1)
        if doc.id in seen:
            raise InputError(f"duplicate document id {doc.id!r}: {doc.origin or 'here'} and {seen[doc.id]}")
        seen[doc.id] = doc.origin or "an earlier document"
        if not doc.text.strip():
            skipped[EMPTY] += 1
            continue
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_target(folder: Path, overwrite: bool, vectors: str | None = None) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    if not any(folder.iterdir()):
        return
    try:
        held = compact.vectors_of(store.read_manifest(folder, allow_building=True))
    except IndexFormatError:
        raise InputError(f"{folder} exists and is not a koe5 index; choose another folder") from None
    if not overwrite:
        compact.check_same(held, vectors, str(folder), "pass overwrite (--force) to replace it")
        raise InputError(f"{folder} already holds an index; pass overwrite (--force) to replace it")


def check_resumable(where, recorded: dict, settings: dict) -> None:
    """:class:`InputError` unless an interrupted build ``recorded`` read the same documents with the
    same ``settings`` (then resuming it gives the index a fresh build would)."""
    held, wanted = compact.vectors_of(recorded), compact.vectors_of(settings)
    compact.check_same(held, wanted, f"cannot resume: the build in {where}", "build again without --resume")
    for key, value in settings.items():
        if key == "source" and recorded.get(key) != value:
            was, wanted = _read(recorded.get(key)), _read(value)
            raise InputError(
                f"cannot resume: the interrupted build in {where} read {was}, not {wanted}; "
                "build again without --resume"
            )
        if recorded.get(key) != value:
            raise InputError(
                f"cannot resume: the interrupted build in {where} used other {key} settings "
                f"({recorded.get(key)} vs {value}); build again without --resume"
            )


def start_partial(partial: Path, settings: dict, resume: bool) -> dict:
    """The manifest of the build in progress: resumed from ``partial`` or a fresh one."""
    if partial.exists():
        if resume:
            try:
                manifest = store.read_manifest(partial, allow_building=True)
            except IndexFormatError:
                manifest = None
            if manifest is not None:
                check_resumable(partial, manifest, settings)
                return manifest
        log.info("koe5: removing the unfinished build in %s", partial)
        shutil.rmtree(partial)
    elif resume:
        log.info("koe5: nothing to resume; building from the start")
    partial.mkdir(parents=True)
    manifest = {
        "format": store.FORMAT,
        "version": store.VERSION,
        "state": "building",
        "created": now(),
        **settings,
        "segments": [],
        "next_segment": 1,
    }
    store.write_manifest(partial, manifest)
    return manifest


def finish(partial: Path, manifest: dict, settings: dict, skipped: Counter[str]) -> None:
    """Build BM25 and the dense side (HNSW if chosen; compact codes) over every segment, then mark the
    partial index complete."""
    tokens: list[list[str]] = []
    segments: list[store.Segment] = []
    for seg in manifest["segments"]:
        tokens.extend(store.read_segment_tokens(partial, seg["name"]))
        segments.append(store.read_segment(partial, seg["name"]))
    n_chunks = len(tokens)
    bm25 = KoreanBM25(
        KiwiAnalyzer.from_config(settings["bm25"]["analyzer"]), settings["bm25"]["k1"], settings["bm25"]["b"]
    )
    bm25.index_tokens(tokens)
    dense_cfg = settings["dense"]
    kind = choose_kind(n_chunks, dense_cfg["ann"], dense_cfg["threshold"])
    with store.atomic_dir(partial / "gen-000001", replace=True) as tmp:
        np.save(tmp / "deleted.npy", np.zeros(0, np.int64))
        bm25.save(tmp / "bm25")
        dense_state.write_dense(partial, segments, settings, kind, tmp)  # graph; compact codes
    manifest.update(
        state="complete",
        updated=now(),
        generation="gen-000001",
        dense={**dense_cfg, "active": kind},
        counts={
            "documents": sum(s["documents"] for s in manifest["segments"]),
            "chunks": n_chunks,
            "deleted_chunks": 0,
            "skipped": dict(skipped),
        },
    )
    store.write_manifest(partial, manifest)


def move_into_place(partial: Path, folder: Path) -> None:
    """Rename the finished build to ``folder``; an index already there is swapped out only now."""
    from koe5.files import swap_into_place

    (partial / store.LOCK).unlink(missing_ok=True)
    swap_into_place(partial, folder)


def progress_bar(enabled: bool, desc: str, total: int | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="doc", disable=not enabled, leave=False)


def length(documents) -> int | None:
    try:
        return len(documents)
    except TypeError:
        return None


def describe_skips(skipped: Counter[str]) -> str:
    if not skipped:
        return ""
    return " (skipped: " + ", ".join(f"{n} {reason}" for reason, n in skipped.items()) + ")"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
