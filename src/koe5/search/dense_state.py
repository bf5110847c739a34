"""The dense side of an index folder: what a build and every change write for it, how it is opened,
and what it holds in memory.

::

    segments/000001/codes.npy   compact codes of the segment's vectors (an index of compact vectors)
    gen-000003/calibration.npy  int8 ranges or binary/int4 centre (:class:`~koe5.search.compact.Codec`)
    gen-000003/hnsw.faiss       the HNSW graph, over the vectors (float32) or the codes; int4: an IVF

Codes are written before the manifest that names their segment is committed, as every other file
(:mod:`~koe5.search.store`); the calibration is made once, by the build, so a segment's codes never
change and later generations share them as they share the segment. Exact search over compact vectors
loads the codes; an HNSW graph carries its own copy of them, so the codes files are then not read.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from koe5.errors import IndexFormatError, InputError
from koe5.files import atomic_write_bytes
from koe5.search.compact import Codec, CompactIndex, sample_rows, vectors_of
from koe5.search.dense import DenseIndex, HNSWParams

log = logging.getLogger("koe5")

CODES = "codes.npy"
CALIBRATION = "calibration.npy"
GRAPH = "hnsw.faiss"


def write_codes(folder: Path, segments, codec: Codec, *, replace: bool = False) -> None:
    """Write each segment's ``codes.npy`` (those missing, or all with ``replace``) before the manifest
    that names the segments is committed; a segment's codes never change after (the calibration does
    not), so later generations share them as they share the segment."""
    for seg in segments:
        path = folder / "segments" / seg.name / CODES
        if replace or not path.exists():
            buffer = io.BytesIO()
            np.save(buffer, codec.encode(np.asarray(seg.vectors)))
            atomic_write_bytes(path, buffer.getvalue())


def open_dense(folder: Path, manifest: dict, rows) -> DenseIndex | CompactIndex:
    """The dense side of an index opened from disk (``rows``: its :class:`~koe5.search.rows.Rows`):
    float32 rows searched as they are, or compact codes; with the HNSW graph when it is active."""
    dense, dim, kind = manifest["dense"], manifest["model"]["dim"], vectors_of(manifest)
    gen, params = folder / manifest["generation"], HNSWParams(**dense["hnsw"])
    graph = dense["active"] == "hnsw"
    try:
        if kind == "float32":
            index = DenseIndex(dim, "exact", params)
            index.blocks = rows.vector_blocks
        else:
            codec = Codec.load(kind, dim, gen / CALIBRATION)
            index = CompactIndex(codec, "exact", params, dense["oversample"])
            index.attach(rows.vector_blocks, None if graph else read_codes(folder, rows.segments, codec))
    except (OSError, ValueError, InputError) as exc:
        raise IndexFormatError(f"{gen}: damaged or missing {kind} codes ({exc})") from exc
    if graph:
        try:
            index.load_graph(gen / GRAPH)
        except (RuntimeError, InputError) as exc:
            raise IndexFormatError(f"{gen}: damaged or missing HNSW graph ({exc})") from exc
    return index


def read_codes(folder: Path, segments, codec: Codec) -> list[np.ndarray]:
    """The stored codes of each non-empty segment, loaded into memory."""
    out = []
    for seg in segments:
        if len(seg):
            path = folder / "segments" / seg.name / CODES
            codes = np.load(path)
            if codes.shape != (len(seg), codec.code_size):
                raise InputError(
                    f"{path}: codes of shape {codes.shape}, expected ({len(seg)}, {codec.code_size})"
                )
            out.append(codes)
    return out


def write_dense(folder: Path, segments, settings: dict, kind: str, gen: Path) -> None:
    """The dense side of a finished build (``kind``: exact or hnsw): for compact vectors the calibration
    (into the generation folder ``gen``) and every segment's codes; the HNSW graph if it is chosen."""
    dense, dim, vectors = settings["dense"], settings["model"]["dim"], vectors_of(settings)
    blocks = [seg.vectors for seg in segments if len(seg)]
    params, codec = HNSWParams(**dense["hnsw"]), None
    if vectors != "float32":
        codec = Codec.calibrate(vectors, sample_rows(blocks))
        codec.save(gen / CALIBRATION)
        write_codes(folder, segments, codec, replace=True)  # a resumed finish calibrates again
    if kind == "hnsw":
        log.info("koe5: building the HNSW graph over %d chunks", sum(len(b) for b in blocks))
        index = DenseIndex(dim, "hnsw", params) if codec is None else CompactIndex(codec, "hnsw", params)
        for block in blocks:
            index.add(block)
        index.save_graph(gen / GRAPH)


def save_state(folder: Path, segments, dense: DenseIndex | CompactIndex, gen: Path) -> None:
    """A change's share of the next generation ``gen`` for compact vectors: the calibration, and the
    codes of the segments written since the last one (added, or rewritten by compaction)."""
    if isinstance(dense, CompactIndex):
        dense.codec.save(gen / CALIBRATION)
        write_codes(folder, segments, dense.codec)


def resident(folder: Path, manifest: dict) -> dict:
    """What the dense side of a folder index holds in memory, from the sizes of what it loads: the
    HNSW graph (with its own copy of the vectors or codes), else the codes, else (float32, exact
    search) the memory-mapped vectors, which every query reads whole."""
    counts, kind, dim = manifest["counts"], vectors_of(manifest), manifest["model"]["dim"]
    rows = counts["chunks"] + counts["deleted_chunks"]
    graph = folder / manifest["generation"] / GRAPH
    if manifest["dense"].get("active") != "hnsw":
        held = rows * (4 * dim if kind == "float32" else Codec(kind, dim).code_size)
    elif graph.exists():
        held = graph.stat().st_size
    else:  # a damaged index: opening it says so
        return {"vectors": kind, "resident bytes": None, "resident bytes per chunk": None}
    out = {"vectors": kind, "resident bytes": held, "resident bytes per chunk": round(held / max(rows, 1), 1)}
    if kind != "float32":
        out["rescoring"] = f"{manifest['dense']['oversample']}× k candidates, float32 rows read from disk"
    return out
