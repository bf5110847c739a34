"""What a change to an open index writes: segments rewritten without deleted rows (compaction), the
dense part grown into an HNSW graph, and the next generation that the manifest then commits.

Every change ends in :func:`commit_generation`: new files first, then the manifest in one rename
(see :mod:`koe5.search.store`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from koe5.search import dense_state, store
from koe5.search.building import now
from koe5.search.dense import DenseIndex, choose_kind
from koe5.search.rows import Rows

log = logging.getLogger("koe5")


def compact_segments(folder: Path, manifest: dict, rows: Rows) -> list[dict]:
    """Rewrite the segments holding deleted rows without them; the manifest entries of the new set
    (segments left with no live row are dropped)."""
    kept: list[dict] = []
    for (seg, gone), meta in zip(rows.segment_rows(), manifest["segments"], strict=True):
        if not gone.any():
            kept.append(meta)
            continue
        live = np.flatnonzero(~gone)
        if not len(live):
            continue
        name = f"{manifest['next_segment']:06d}"
        manifest["next_segment"] += 1
        columns = seg.table.take(live).to_pydict()
        tokens = store.read_segment_tokens(folder, meta["name"])
        store.write_segment(folder, name, columns, np.asarray(seg.vectors)[live], [tokens[i] for i in live])
        n_docs = int((np.asarray(columns["chunk"]) == 0).sum())
        kept.append({"name": name, "documents": n_docs, "chunks": len(live)})
    return kept


def compact(folder: Path, manifest: dict, rows: Rows, dense: DenseIndex) -> tuple[Rows, bool]:
    """Rewrite the segments holding deleted rows without them: the index's new rows, and whether the
    HNSW graph was rebuilt. Nothing is deleted afterwards. BM25 already holds exactly the live rows,
    in the same order, so it carries over as it is; the HNSW graph numbers rows, so it is rebuilt."""
    if not rows.deleted.any():
        return rows, False
    manifest["segments"] = compact_segments(folder, manifest, rows)
    rows = Rows([store.read_segment(folder, s["name"]) for s in manifest["segments"]])
    dense.blocks = rows.vector_blocks
    rebuild = dense.kind == "hnsw"
    if rebuild:
        log.info("koe5: rebuilding the HNSW graph over %d chunks", len(rows.live))
        dense.build_graph()
    return rows, rebuild


def grow_dense(manifest: dict, dense: DenseIndex, n_live: int) -> bool:
    """Switch the dense part to HNSW when ``auto`` crosses its threshold; whether it did."""
    settings = manifest["dense"]
    if choose_kind(n_live, settings["ann"], settings["threshold"]) == "hnsw" and dense.kind != "hnsw":
        log.info("koe5: %d chunks: building the HNSW graph", n_live)
        dense.build_graph()
        return True
    return False


def commit_generation(folder: Path, manifest: dict, rows: Rows, bm25, dense, graph_changed: bool) -> None:
    """Write the next generation (deleted rows, BM25, the HNSW graph) and commit it in the manifest."""
    old_gen = folder / manifest["generation"]
    number = int(manifest["generation"].split("-")[1]) + 1
    gen = f"gen-{number:06d}"
    with store.atomic_dir(folder / gen, replace=True) as tmp:
        np.save(tmp / "deleted.npy", np.flatnonzero(rows.deleted))
        bm25.save(tmp / "bm25")
        if dense.kind == "hnsw":
            if graph_changed or not (old_gen / "hnsw.faiss").exists():
                dense.save_graph(tmp / "hnsw.faiss")
            else:
                store.link_or_copy(old_gen / "hnsw.faiss", tmp / "hnsw.faiss")
        dense_state.save_state(folder, rows.segments, dense, tmp)  # compact vectors: codes, calibration
    manifest["generation"] = gen
    # the dense kind may change only upward (auto crossing the threshold); record what is active
    manifest["dense"]["active"] = dense.kind
    manifest["updated"] = now()
    manifest["counts"] = {
        "documents": len(rows.ids),
        "chunks": len(rows.live),
        "deleted_chunks": int(rows.deleted.sum()),
        "skipped": manifest["counts"].get("skipped", {}),
    }
    store.write_manifest(folder, manifest)
    store.collect_garbage(folder, manifest)
