"""The bookkeeping of an open index: which chunk row is where, and which document it belongs to.

Chunks are numbered globally in segment order (row 0 is the first segment's first chunk). A
document's chunks are consecutive rows, numbered from 0 within it. Deleting a document only marks its
rows deleted; :class:`~koe5.search.bm25.KoreanBM25` holds the live rows only, in the same order, so
BM25 row ``i`` is global row ``live[i]``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from koe5.search.store import Segment


class Rows:
    """Where every chunk row of an index lives (segment, document) and which rows are deleted."""

    def __init__(self, segments: list[Segment], deleted_rows: np.ndarray | None = None) -> None:
        self.segments = list(segments)
        self._layout()
        self.deleted = np.zeros(len(self.chunk_doc), dtype=bool)
        if deleted_rows is not None:
            self.deleted[deleted_rows] = True
        self.live = np.flatnonzero(~self.deleted)
        live_docs = ~self.deleted[self.doc_rows] if len(self.chunk_doc) else np.zeros(0, bool)
        #: live document id -> document number
        self.ids = {self.doc_ids[d]: d for d in np.flatnonzero(live_docs)}
        self._metadata: list[dict] | None = None

    def _layout(self) -> None:
        """Where each segment starts, and which chunks belong to which document."""
        sizes = [len(seg) for seg in self.segments]
        self.seg_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if not self.segments:
            self.doc_rows = np.zeros(0, np.int64)  # document number -> its first row
            self.chunk_doc = np.zeros(0, np.int64)  # row -> document number
            self.doc_ids: list[str] = []
            return
        chunk_no = np.concatenate([seg.table.column("chunk").to_numpy() for seg in self.segments])
        first = chunk_no == 0
        self.doc_rows = np.flatnonzero(first)
        self.chunk_doc = np.cumsum(first) - 1
        ids = [seg.table.column("doc_id").to_numpy(zero_copy_only=False) for seg in self.segments]
        self.doc_ids = np.concatenate(ids)[self.doc_rows].tolist()

    def __len__(self) -> int:
        """Rows, deleted ones included."""
        return len(self.chunk_doc)

    @property
    def vector_blocks(self) -> list[np.ndarray]:
        """The segments' vectors, in row order (for :class:`~koe5.search.dense.DenseIndex`)."""
        return [s.vectors for s in self.segments if len(s)]

    def doc_chunk_rows(self, doc: int) -> np.ndarray:
        start = int(self.doc_rows[doc])
        end = int(self.doc_rows[doc + 1]) if doc + 1 < len(self.doc_rows) else len(self.chunk_doc)
        return np.arange(start, end)

    def drop(self, ids: list[str]) -> np.ndarray:
        """Mark the rows of documents ``ids`` deleted; returns their BM25 rows (before the change)."""
        rows = np.concatenate([self.doc_chunk_rows(self.ids[i]) for i in ids])
        bm25_rows = np.searchsorted(self.live, rows)
        self.deleted[rows] = True
        self.live = np.flatnonzero(~self.deleted)
        for i in ids:
            del self.ids[i]
        return bm25_rows

    def append(self, segment: Segment) -> None:
        """Number a new segment's rows after the existing ones."""
        n_before = len(self.chunk_doc)
        chunk_no = segment.table.column("chunk").to_numpy()
        first = np.flatnonzero(chunk_no == 0)
        doc_base = len(self.doc_rows)
        self.segments.append(segment)
        self.seg_starts = np.append(self.seg_starts, self.seg_starts[-1] + len(segment))
        self.doc_rows = np.concatenate([self.doc_rows, n_before + first])
        self.chunk_doc = np.concatenate([self.chunk_doc, doc_base + np.cumsum(chunk_no == 0) - 1])
        new_ids = segment.table.column("doc_id").to_numpy(zero_copy_only=False)[first].tolist()
        self.doc_ids.extend(new_ids)
        for j, doc_id in enumerate(new_ids):
            self.ids[doc_id] = doc_base + j
        self.deleted = np.concatenate([self.deleted, np.zeros(len(segment), bool)])
        self.live = np.flatnonzero(~self.deleted)
        self._metadata = None

    def segment_rows(self) -> list[tuple[Segment, np.ndarray]]:
        """Each segment with the mask of its deleted rows."""
        starts = self.seg_starts
        return [(s, self.deleted[starts[i] : starts[i] + len(s)]) for i, s in enumerate(self.segments)]

    def chunk(self, row: int) -> dict[str, Any]:
        """The stored record of one chunk row, metadata parsed."""
        seg = int(np.searchsorted(self.seg_starts, row, side="right")) - 1
        record = self.segments[seg].table.slice(row - int(self.seg_starts[seg]), 1).to_pylist()[0]
        record["metadata"] = json.loads(record["metadata"]) if record["metadata"] else {}
        return record

    def metadata(self) -> list[dict]:
        """Each document's metadata, parsed once (on the first filtered search)."""
        if self._metadata is None:
            raw = [s.table.column("metadata").to_numpy(zero_copy_only=False) for s in self.segments]
            first = np.concatenate(raw)[self.doc_rows] if raw else []
            self._metadata = [json.loads(m) if m else {} for m in first]
        return self._metadata
