"""A search index over your own documents: chunks, their vectors and their Kiwi terms, in one folder.

``Index.build`` chunks each document (:mod:`~koe5.search.chunking`), encodes the chunks with the model
and analyses them for BM25; ``search`` ranks documents by their best chunk, densely, by BM25 or by both
fused (:mod:`~koe5.search.hybrid`), and returns that chunk. ``add`` and ``delete`` change the index by
document id, encoding and analysing only the new documents. The folder layout and why a crash never
leaves it half-written: :mod:`~koe5.search.store`.

Example::

    import koe5
    from koe5.search import Index

    docs = [{"id": "seoul", "title": "서울", "text": "서울은 대한민국의 수도이다.", "year": 2024},
            {"id": "busan", "text": "부산은 항구 도시이다."}]
    index = Index.build(docs, koe5.load(), "my-index")
    for hit in index.search("한국의 수도는?", k=3):
        print(hit.doc_id, round(hit.score, 3), hit.text, hit.metadata)
    index.add([{"id": "incheon", "text": "인천에는 국제공항이 있다."}])
    index.delete(["busan"])
    index = Index.load("my-index")          # the model is loaded when a query needs it
    index.search("공항", mode="bm25", filters={"year": 2024})
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from koe5.errors import IndexFormatError, InputError, ModelMismatchError
from koe5.search import store
from koe5.search.bm25 import KoreanBM25, top_k
from koe5.search.chunking import Chunker
from koe5.search.dense import ANN_THRESHOLD, DenseIndex, HNSWParams, choose_kind
from koe5.search.documents import EMPTY, Document, as_documents
from koe5.search.hybrid import DEFAULT_FUSION, Fusion
from koe5.search.korean import KiwiAnalyzer

log = logging.getLogger("koe5")

MODES = ("hybrid", "dense", "bm25")
#: Documents per segment: the unit of a resumable build (a crash loses at most one segment's work).
SEGMENT_DOCS = 2000
#: Share of deleted chunks above which segments holding deleted chunks are rewritten without them.
COMPACT_AT = 0.25


@dataclass
class Hit:
    """One ranked document: its id, score, and the chunk that earned the score.

    ``chunk_id`` is ``"<doc_id>#<n>"`` (the document's n-th chunk, from 0); ``start``/``end`` are the
    chunk's character offsets in the document text.
    """

    doc_id: str
    score: float
    chunk_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Index:
    """A dense + Korean BM25 index in one folder. Make one with :meth:`build`, open one with :meth:`load`.

    ``manifest`` holds the model, settings and counts. ``last_report`` says what the latest build or
    ``add`` did (documents, chunks, skipped by reason, seconds).
    """

    def __init__(self, folder: str | Path, encoder=None, *, _manifest: dict | None = None) -> None:
        self.folder = Path(folder)
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self.last_report: dict[str, Any] = {}
        self._open(_manifest)
        if encoder is not None:
            _check_model(self.folder, self.manifest, encoder)

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path, encoder=None) -> Index:
        """Open an index. Without ``encoder`` the model it was built with is loaded when first needed;
        with one, it must be that same model (:class:`~koe5.errors.ModelMismatchError` otherwise)."""
        return cls(folder, encoder)

    def _open(self, manifest: dict | None = None) -> None:
        folder = self.folder
        self.manifest = manifest or store.read_manifest(folder)
        m = self.manifest
        self._segments = [store.read_segment(folder, s["name"]) for s in m["segments"]]
        self._layout()
        n = len(self._chunk_doc)
        gen = folder / m["generation"]
        self._deleted = np.zeros(n, dtype=bool)
        try:
            self._deleted[np.load(gen / "deleted.npy")] = True
            self._bm25 = KoreanBM25.load(gen / "bm25")
        except (OSError, ValueError, InputError) as exc:
            raise IndexFormatError(f"{gen}: damaged or missing index state ({exc})") from exc
        self._live = np.flatnonzero(~self._deleted)  # BM25 row i is global chunk row _live[i]
        if len(self._bm25) != len(self._live):
            raise IndexFormatError(f"{gen}: BM25 holds {len(self._bm25)} chunks, expected {len(self._live)}")
        live_docs = ~self._deleted[self._doc_rows] if n else np.zeros(0, bool)
        self._ids = {self._doc_ids[d]: d for d in np.flatnonzero(live_docs)}
        dense = m["dense"]
        self._dense = DenseIndex(m["model"]["dim"], "exact", HNSWParams(**dense["hnsw"]))
        self._dense.blocks = [s.vectors for s in self._segments if len(s)]
        if dense["active"] == "hnsw":
            try:
                self._dense.load_graph(gen / "hnsw.faiss")
            except (RuntimeError, InputError) as exc:
                raise IndexFormatError(f"{gen}: damaged or missing HNSW graph ({exc})") from exc
        self._metadata: list[dict] | None = None

    def _layout(self) -> None:
        """Where each segment starts, and which chunks belong to which document (global numbering)."""
        sizes = [len(seg) for seg in self._segments]
        self._seg_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if not self._segments:
            self._doc_rows = np.zeros(0, np.int64)
            self._chunk_doc = np.zeros(0, np.int64)
            self._doc_ids: list[str] = []
            return
        chunk_no = np.concatenate([seg.table.column("chunk").to_numpy() for seg in self._segments])
        first = chunk_no == 0  # a document's chunks are consecutive, numbered from 0
        self._doc_rows = np.flatnonzero(first)
        self._chunk_doc = np.cumsum(first) - 1
        ids = [seg.table.column("doc_id").to_numpy(zero_copy_only=False) for seg in self._segments]
        self._doc_ids = np.concatenate(ids)[self._doc_rows].tolist()

    @property
    def encoder(self):
        """The model of this index (loaded on first use if none was given)."""
        with self._encoder_lock:
            if self._encoder is None:
                from koe5.encoder import load

                model = self.manifest["model"]
                log.info("koe5: loading %s for %s", model["name"], self.folder)
                enc = load(
                    model["source"],
                    backend=model.get("backend", "torch"),
                    query_prefix=model["query_prefix"],
                    passage_prefix=model["passage_prefix"],
                )
                _check_model(self.folder, self.manifest, enc)
                self._encoder = enc
            return self._encoder

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._ids

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return f"Index({str(self.folder)!r}, documents={c['documents']}, chunks={c['chunks']})"

    # --- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        documents: Iterable[Document | dict] | str | Path,
        encoder,
        folder: str | Path,
        *,
        chunk_tokens: int | None = None,
        overlap: int = 64,
        ann: str = "auto",
        ann_threshold: int = ANN_THRESHOLD,
        hnsw: HNSWParams | None = None,
        analyzer: KiwiAnalyzer | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        fusion: Fusion = DEFAULT_FUSION,
        resume: bool = False,
        overwrite: bool = False,
        segment_docs: int = SEGMENT_DOCS,
        show_progress: bool = False,
        cache=None,
        batch_size: int | None = None,
    ) -> Index:
        """Index ``documents`` (a path, or Documents / dicts with id, text, title, metadata) into ``folder``.

        ``chunk_tokens``: chunk size in tokens, prefix and special tokens included (default and
        maximum: the model's ``max_length``); ``overlap``: tokens shared by consecutive chunks;
        ``ann``: ``"auto"`` (exact below ``ann_threshold`` chunks, else HNSW), ``"exact"`` or
        ``"hnsw"``; ``analyzer``/``k1``/``b``: the Korean BM25; ``fusion``: the index's default hybrid.

        The index is written beside ``folder`` (``.<name>.partial``) one segment of ``segment_docs``
        documents at a time and moved into place at the end: an existing index there stays intact
        until then (replacing one needs ``overwrite``). After a crash, ``resume=True`` with the same
        documents and settings continues from the last finished segment. Blank documents are skipped
        and counted (``last_report``); a repeated id is an error. ``cache`` (an
        :class:`~koe5.embcache.EmbeddingCache`) reuses vectors of texts encoded before.
        """
        from koe5 import __version__
        from koe5.embcache import model_fingerprint

        started = time.perf_counter()
        folder = Path(folder)
        if segment_docs < 1:
            raise InputError(f"segment_docs must be positive, got {segment_docs}")
        _check_target(folder, overwrite)
        analyzer = analyzer or KiwiAnalyzer()
        chunker = Chunker.for_encoder(encoder, max_tokens=chunk_tokens, overlap=overlap)
        choose_kind(0, ann)  # validates the name
        source = "default" if getattr(encoder.spec, "id", None) == "default" else str(encoder.path)
        settings = {
            "model": {
                "source": source,
                "name": encoder.name,
                "path": str(encoder.path),
                "fingerprint": model_fingerprint(encoder),
                "backend": getattr(encoder, "backend", "torch"),
                "dim": int(encoder.dim),
                "max_length": int(encoder.max_length),
                "query_prefix": encoder.query_prefix,
                "passage_prefix": encoder.passage_prefix,
            },
            "chunking": {
                **chunker.config,
                "tokenizer": type(encoder.tokenizer).__name__,
                "vocab_size": len(encoder.tokenizer),
            },
            "bm25": {"k1": float(k1), "b": float(b), "method": "lucene", "analyzer": analyzer.config},
            "dense": {
                "ann": ann,
                "threshold": int(ann_threshold),
                "hnsw": (hnsw or HNSWParams()).to_dict(),
            },
            "fusion": fusion.to_dict(),
        }
        partial = folder.parent / f".{folder.name}.partial"
        manifest = _start_partial(partial, settings, resume)
        manifest["koe5"] = __version__
        builder = _Builder(encoder, chunker, analyzer, cache, batch_size, show_progress)
        done: set[str] = set()
        for seg in manifest["segments"]:
            done.update(store.read_segment(partial, seg["name"]).table.column("doc_id").to_pylist())
        if done:
            log.info("koe5: resuming %s: %d documents already indexed", folder, len(done))
        skipped: Counter[str] = Counter()  # a resumed build reads the source again and recounts
        docs_iter = as_documents(documents)
        progress = _progress(show_progress, "indexing documents", _length(documents))
        progress.update(len(done))
        seen: dict[str, str] = dict.fromkeys(done, "the interrupted build")
        added_docs = added_chunks = 0
        with store.writer_lock(partial):
            for batch in _batches(docs_iter, segment_docs, seen, skipped, progress, resumed=done):
                name = f"{manifest['next_segment']:06d}"
                n_chunks = builder.write_segment(partial, name, batch)
                manifest["segments"].append({"name": name, "documents": len(batch), "chunks": n_chunks})
                manifest["next_segment"] += 1
                store.write_manifest(partial, manifest)  # the resume point
                added_docs += len(batch)
                added_chunks += n_chunks
            progress.close()
            skipped.update(getattr(docs_iter, "skipped", {}))
            total_docs = sum(s["documents"] for s in manifest["segments"])
            if not total_docs:
                raise InputError(f"no documents to index{_describe_skips(skipped)}")
            _finish(partial, manifest, settings, skipped)
        _move_into_place(partial, folder)
        index = cls(folder, encoder)
        index.last_report = {
            "documents": added_docs,
            "chunks": added_chunks,
            "resumed_documents": len(done),
            "skipped": dict(skipped),
            "seconds": round(time.perf_counter() - started, 1),
        }
        for reason, count in skipped.items():
            log.warning("koe5: skipped %d %s", count, reason)
        return index

    # --- changing --------------------------------------------------------------------------

    def add(
        self,
        documents: Iterable[Document | dict] | str | Path,
        *,
        replace: bool = False,
        show_progress: bool = False,
        cache=None,
        batch_size: int | None = None,
    ) -> dict[str, Any]:
        """Add documents without touching the others' vectors or terms; returns the report.

        A document whose id is already in the index is an error, or with ``replace`` replaces the old
        one. Blank documents are skipped and counted.
        """
        started = time.perf_counter()
        docs_iter = as_documents(documents)
        skipped: Counter[str] = Counter()
        seen: dict[str, str] = {}
        progress = _progress(show_progress, "adding documents", _length(documents))
        batches = list(_batches(docs_iter, SEGMENT_DOCS, seen, skipped, progress, resumed=set()))
        progress.close()
        skipped.update(getattr(docs_iter, "skipped", {}))
        new_ids = [d.id for batch in batches for d in batch]
        existing = [i for i in new_ids if i in self._ids]
        if existing and not replace:
            raise InputError(
                f"{len(existing)} document id(s) already in the index, e.g. {existing[0]!r} "
                f"({seen[existing[0]]}); delete them first or add with replace"
            )
        builder = self._builder(cache, batch_size, show_progress)
        with self._change():
            self._drop_docs(existing)
            chunks = 0
            for batch in batches:
                name = f"{self.manifest['next_segment']:06d}"
                n_chunks = builder.write_segment(self.folder, name, batch)
                self.manifest["next_segment"] += 1
                self.manifest["segments"].append({"name": name, "documents": len(batch), "chunks": n_chunks})
                self._append_segment(
                    store.read_segment(self.folder, name), store.read_segment_tokens(self.folder, name)
                )
                chunks += n_chunks
            graph_changed = bool(batches) and self._dense.kind == "hnsw"
            graph_changed |= self._maybe_switch_to_hnsw()
            self._commit(graph_changed)
        self.last_report = {
            "documents": len(new_ids),
            "replaced": len(existing),
            "chunks": chunks,
            "skipped": dict(skipped),
            "seconds": round(time.perf_counter() - started, 1),
        }
        return self.last_report

    def delete(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Delete documents by id; returns how many were deleted. Unknown ids are an error unless
        ``missing_ok``. Deleted chunks vanish from results at once; their space is reclaimed when
        they pass :data:`COMPACT_AT` of the index (segments rewritten, the HNSW graph rebuilt)."""
        if isinstance(ids, str):
            ids = [ids]
        ids = list(dict.fromkeys(str(i) for i in ids))
        unknown = [i for i in ids if i not in self._ids]
        if unknown and not missing_ok:
            shown = ", ".join(repr(i) for i in unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise InputError(f"{len(unknown)} id(s) not in the index: {shown}")
        present = [i for i in ids if i in self._ids]
        if not present:
            return 0
        with self._change():
            self._drop_docs(present)
            graph_changed = self._maybe_compact()
            self._commit(graph_changed)
        return len(present)

    def compact(self) -> None:
        """Rewrite the segments that hold deleted chunks without them (and rebuild the HNSW graph)."""
        with self._change():
            self._commit(self._compact())

    # --- searching -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
        *,
        fusion: Fusion | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The ``k`` best documents for ``query``, each with its best chunk.

        ``mode``: ``"hybrid"`` (dense and BM25 fused by ``fusion``, default the index's), ``"dense"``
        or ``"bm25"``. ``filters``: ``{metadata key: value}`` (a list/tuple/set value means any of
        them; ``"doc_id"`` filters on ids). A query BM25 finds no terms in (only punctuation or
        stopwords) gives BM25 no candidates rather than an error. ``query_vector``: the query's
        embedding if already computed (with this index's model and query prefix).
        """
        if not isinstance(query, str):
            raise InputError(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise InputError("query is empty")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        allowed = ~self._deleted
        if filters:
            allowed &= self._filter_mask(filters)
        if not allowed.any():
            return []
        fusion = fusion or Fusion(**self.manifest["fusion"])
        depth = max(k, fusion.depth) if mode == "hybrid" else k
        dense = self._dense_docs(query, allowed, depth, query_vector) if mode != "bm25" else {}
        sparse = self._bm25_docs(query, allowed, depth) if mode != "dense" else {}
        if mode == "dense":
            ranked = [(d, s, r) for d, (s, r) in dense.items()]
        elif mode == "bm25":
            ranked = [(d, s, r) for d, (s, r) in sparse.items()]
        else:
            fused = fusion.fuse({d: s for d, (s, _) in dense.items()}, {d: s for d, (s, _) in sparse.items()})
            ranked = [(d, s, _hybrid_chunk(d, dense, sparse)) for d, s in fused.items()]
        return [self._hit(d, s, r) for d, s, r in ranked[:k]]

    def _dense_docs(
        self, query: str, allowed: np.ndarray, n_docs: int, vector: np.ndarray | None
    ) -> dict[int, tuple[float, int]]:
        if vector is None:
            vector = self.encoder.encode_queries([query])[0]
        elif np.shape(vector) != (self.manifest["model"]["dim"],):
            raise InputError(f"query_vector must have shape ({self.manifest['model']['dim']},)")
        want = n_docs * 2
        while True:
            rows, scores = self._dense.search(vector, want, allowed)
            best = _best_per_doc(rows, scores, self._chunk_doc, n_docs)
            if len(best) >= n_docs or len(rows) < want:
                return best
            want *= 4

    def _bm25_docs(self, query: str, allowed: np.ndarray, n_docs: int) -> dict[int, tuple[float, int]]:
        scores = self._bm25.scores(query)
        if not scores.any():
            return {}
        scores = np.where(allowed[self._live], scores, 0.0)
        want = n_docs * 2
        while True:
            rows, vals = top_k(scores, want)
            best = _best_per_doc(self._live[rows], vals, self._chunk_doc, n_docs)
            if len(best) >= n_docs or len(rows) < want:
                return best
            want *= 4

    def _chunk(self, row: int) -> dict[str, Any]:
        seg = int(np.searchsorted(self._seg_starts, row, side="right")) - 1
        record = self._segments[seg].table.slice(row - int(self._seg_starts[seg]), 1).to_pylist()[0]
        record["metadata"] = json.loads(record["metadata"]) if record["metadata"] else {}
        return record

    def _hit(self, doc: int, score: float, row: int) -> Hit:
        c = self._chunk(row)
        return Hit(
            doc_id=c["doc_id"],
            score=float(score),
            chunk_id=f"{c['doc_id']}#{c['chunk']}",
            text=c["text"],
            title=c["title"],
            metadata=c["metadata"],
            start=c["start"],
            end=c["end"],
        )

    def _filter_mask(self, filters: dict[str, Any]) -> np.ndarray:
        if not isinstance(filters, dict):
            raise InputError(f"filters must be a dict of metadata key -> value, got {type(filters).__name__}")
        if self._metadata is None:  # parsed once, on the first filtered search
            raw = [s.table.column("metadata").to_numpy(zero_copy_only=False) for s in self._segments]
            first = np.concatenate(raw)[self._doc_rows] if raw else []
            self._metadata = [json.loads(m) if m else {} for m in first]
        keep = np.ones(len(self._doc_rows), dtype=bool)
        for key, want in filters.items():
            if not isinstance(key, str):
                raise InputError(f"filter keys must be strings, got {key!r}")
            accept = set(want) if isinstance(want, (list, tuple, set, frozenset)) else {want}
            if key == "doc_id":
                values = self._doc_ids
            else:
                values = [meta.get(key, _MISSING) for meta in self._metadata]
            keep &= np.fromiter((_matches(v, accept) for v in values), dtype=bool, count=len(values))
        return keep[self._chunk_doc] if len(self._chunk_doc) else np.zeros(0, bool)

    # --- the mechanics of a change ---------------------------------------------------------

    def _builder(self, cache, batch_size, show_progress) -> _Builder:
        m = self.manifest
        chunker = Chunker(
            self.encoder.tokenizer,
            max_tokens=m["chunking"]["max_tokens"],
            overlap=m["chunking"]["overlap"],
            prefix=m["chunking"]["prefix"],
            title_tokens=m["chunking"]["title_tokens"],
        )
        return _Builder(self.encoder, chunker, self._bm25.analyzer, cache, batch_size, show_progress)

    def _change(self):
        """Hold the writer lock, check nobody changed the index since it was opened, and on any
        failure reopen it from disk (where the previous version is intact)."""
        import contextlib

        @contextlib.contextmanager
        def guard():
            with store.writer_lock(self.folder):
                on_disk = store.read_manifest(self.folder)
                if on_disk["generation"] != self.manifest["generation"]:
                    raise IndexFormatError(f"{self.folder} was changed by another process; load it again")
                try:
                    yield
                except BaseException:
                    self._open()
                    raise

        return guard()

    def _drop_docs(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        rows = np.concatenate([self._doc_chunk_rows(self._ids[i]) for i in ids])
        bm25_rows = np.searchsorted(self._live, rows)
        self._bm25.remove(bm25_rows)
        self._deleted[rows] = True
        self._live = np.flatnonzero(~self._deleted)
        for i in ids:
            del self._ids[i]

    def _doc_chunk_rows(self, doc: int) -> np.ndarray:
        start = int(self._doc_rows[doc])
        end = int(self._doc_rows[doc + 1]) if doc + 1 < len(self._doc_rows) else len(self._chunk_doc)
        return np.arange(start, end)

    def _append_segment(self, segment: store.Segment, tokens: list[list[str]]) -> None:
        n_before = len(self._chunk_doc)
        chunk_no = segment.table.column("chunk").to_numpy()
        first = np.flatnonzero(chunk_no == 0)
        doc_base = len(self._doc_rows)
        self._segments.append(segment)
        self._seg_starts = np.append(self._seg_starts, self._seg_starts[-1] + len(segment))
        self._doc_rows = np.concatenate([self._doc_rows, n_before + first])
        self._chunk_doc = np.concatenate([self._chunk_doc, doc_base + np.cumsum(chunk_no == 0) - 1])
        new_ids = segment.table.column("doc_id").to_numpy(zero_copy_only=False)[first].tolist()
        self._doc_ids.extend(new_ids)
        for j, doc_id in enumerate(new_ids):
            self._ids[doc_id] = doc_base + j
        self._deleted = np.concatenate([self._deleted, np.zeros(len(segment), bool)])
        self._live = np.flatnonzero(~self._deleted)
        self._bm25.add_tokens(tokens)
        self._dense.add(np.asarray(segment.vectors))
        self._metadata = None

    def _maybe_switch_to_hnsw(self) -> bool:
        d = self.manifest["dense"]
        want = choose_kind(len(self._live), d["ann"], d["threshold"])
        if want == "hnsw" and self._dense.kind != "hnsw":
            log.info("koe5: %d chunks: building the HNSW graph", len(self._live))
            self._dense.build_graph()
            return True
        return False

    def _maybe_compact(self) -> bool:
        if len(self._deleted) and self._deleted.mean() > COMPACT_AT:
            return self._compact()
        return False

    def _compact(self) -> bool:
        """Rewrite segments with deleted rows; returns whether the HNSW graph was rebuilt."""
        if not self._deleted.any():
            return False
        kept: list[dict] = []
        for meta, seg, start in zip(
            self.manifest["segments"], self._segments, self._seg_starts, strict=False
        ):
            gone = self._deleted[start : start + len(seg)]
            if not gone.any():
                kept.append(meta)
                continue
            live = np.flatnonzero(~gone)
            if not len(live):
                continue
            name = f"{self.manifest['next_segment']:06d}"
            self.manifest["next_segment"] += 1
            columns = seg.table.take(live).to_pydict()
            tokens = store.read_segment_tokens(self.folder, meta["name"])
            store.write_segment(
                self.folder, name, columns, np.asarray(seg.vectors)[live], [tokens[i] for i in live]
            )
            n_docs = int((np.asarray(columns["chunk"]) == 0).sum())
            kept.append({"name": name, "documents": n_docs, "chunks": len(live)})
        self.manifest["segments"] = kept
        # Nothing is deleted any more. BM25 already holds exactly the live rows, in the same order,
        # so it carries over as it is; the HNSW graph numbers rows, so it is rebuilt.
        self._segments = [store.read_segment(self.folder, s["name"]) for s in kept]
        self._layout()
        self._deleted = np.zeros(len(self._chunk_doc), bool)
        self._live = np.arange(len(self._chunk_doc))
        self._ids = {d: i for i, d in enumerate(self._doc_ids)}
        self._dense.blocks = [s.vectors for s in self._segments if len(s)]
        rebuild = self._dense.kind == "hnsw"
        if rebuild:
            log.info("koe5: rebuilding the HNSW graph over %d chunks", len(self._live))
            self._dense.build_graph()
        self._metadata = None
        return rebuild

    def _commit(self, graph_changed: bool) -> None:
        m = self.manifest
        old_gen = self.folder / m["generation"]
        number = int(m["generation"].split("-")[1]) + 1
        gen = f"gen-{number:06d}"
        # dense kind may change only upward (auto crossing the threshold); record what is active
        with store.atomic_dir(self.folder / gen, replace=True) as tmp:
            np.save(tmp / "deleted.npy", np.flatnonzero(self._deleted))
            self._bm25.save(tmp / "bm25")
            if self._dense.kind == "hnsw":
                if graph_changed or not (old_gen / "hnsw.faiss").exists():
                    self._dense.save_graph(tmp / "hnsw.faiss")
                else:
                    store.link_or_copy(old_gen / "hnsw.faiss", tmp / "hnsw.faiss")
        m["generation"] = gen
        m["dense"]["active"] = self._dense.kind
        m["updated"] = _now()
        m["counts"] = {
            "documents": len(self._ids),
            "chunks": len(self._live),
            "deleted_chunks": int(self._deleted.sum()),
            "skipped": m["counts"].get("skipped", {}),
        }
        store.write_manifest(self.folder, m)
        store.collect_garbage(self.folder, m)
        self._metadata = None


# --- building blocks ---------------------------------------------------------------------------


class _Builder:
    """Turns a batch of documents into a segment: chunk, encode, analyse, write."""

    def __init__(self, encoder, chunker: Chunker, analyzer: KiwiAnalyzer, cache, batch_size, show_progress):
        self.encoder, self.chunker, self.analyzer = encoder, chunker, analyzer
        self.cache, self.batch_size, self.show_progress = cache, batch_size, show_progress

    def write_segment(self, folder: Path, name: str, docs: list[Document]) -> int:
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
        tokens = self.analyzer.analyze(inputs)
        store.write_segment(folder, name, columns, vectors, tokens)
        return len(inputs)


def _batches(
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


def _best_per_doc(
    rows: np.ndarray, scores: np.ndarray, chunk_doc: np.ndarray, n_docs: int
) -> dict[int, tuple[float, int]]:
    """Documents in order of their best chunk among ``rows`` (sorted best first): doc -> (score, row)."""
    best: dict[int, tuple[float, int]] = {}
    for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
        doc = int(chunk_doc[row])
        if doc not in best:
            best[doc] = (score, row)
            if len(best) >= n_docs:
                break
    return best


def _hybrid_chunk(doc: int, dense: dict, sparse: dict) -> int:
    """The chunk shown for a fused document: the one the side that ranked the document higher chose."""
    if doc not in sparse:
        return dense[doc][1]
    if doc not in dense:
        return sparse[doc][1]
    dense_rank = list(dense).index(doc)
    sparse_rank = list(sparse).index(doc)
    return dense[doc][1] if dense_rank <= sparse_rank else sparse[doc][1]


_MISSING = object()


def _matches(value: Any, accept: set) -> bool:
    if value is _MISSING:
        return False
    try:
        return value in accept
    except TypeError:  # unhashable metadata value (a list, a dict): compare one by one
        return any(value == a for a in accept)


def _check_model(folder: Path, manifest: dict, encoder) -> None:
    from koe5.embcache import model_fingerprint

    built = manifest["model"]
    fp = model_fingerprint(encoder)
    if fp != built["fingerprint"] or int(encoder.dim) != built["dim"]:
        raise ModelMismatchError(
            f"{folder} was built with {built['name']} ({built['path']}, fingerprint {built['fingerprint']}), "
            f"not {encoder.name} ({encoder.path}, fingerprint {fp}); search it with the same model "
            "(or load it without one), or rebuild it"
        )


def _check_target(folder: Path, overwrite: bool) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    if not any(folder.iterdir()):
        return
    try:
        store.read_manifest(folder, allow_building=True)
    except IndexFormatError:
        raise InputError(f"{folder} exists and is not a koe5 index; choose another folder") from None
    if not overwrite:
        raise InputError(f"{folder} already holds an index; pass overwrite (--force) to replace it")


def _start_partial(partial: Path, settings: dict, resume: bool) -> dict:
    """The manifest of the build in progress: resumed from ``partial`` or a fresh one."""
    if partial.exists():
        if resume:
            try:
                manifest = store.read_manifest(partial, allow_building=True)
            except IndexFormatError:
                manifest = None
            if manifest is not None:
                for key, value in settings.items():
                    if manifest.get(key) != value:
                        raise InputError(
                            f"cannot resume: the interrupted build in {partial} used other {key} settings "
                            f"({manifest.get(key)} vs {value}); build again without --resume"
                        )
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
        "created": _now(),
        **settings,
        "segments": [],
        "next_segment": 1,
    }
    store.write_manifest(partial, manifest)
    return manifest


def _finish(partial: Path, manifest: dict, settings: dict, skipped: Counter[str]) -> None:
    """Build BM25 and (if chosen) HNSW over every segment, then mark the partial index complete."""
    tokens: list[list[str]] = []
    vectors: list[np.ndarray] = []
    for seg in manifest["segments"]:
        tokens.extend(store.read_segment_tokens(partial, seg["name"]))
        vectors.append(store.read_segment(partial, seg["name"]).vectors)
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
        if kind == "hnsw":
            log.info("koe5: building the HNSW graph over %d chunks", n_chunks)
            dense = DenseIndex(settings["model"]["dim"], "hnsw", HNSWParams(**dense_cfg["hnsw"]))
            for block in vectors:
                dense.add(np.asarray(block))
            dense.save_graph(tmp / "hnsw.faiss")
    manifest.update(
        state="complete",
        updated=_now(),
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


def _move_into_place(partial: Path, folder: Path) -> None:
    """Rename the finished build to ``folder``; an index already there is swapped out only now."""
    from koe5.files import swap_into_place

    (partial / store.LOCK).unlink(missing_ok=True)
    swap_into_place(partial, folder)


def _progress(enabled: bool, desc: str, total: int | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="doc", disable=not enabled, leave=False)


def _length(documents) -> int | None:
    try:
        return len(documents)
    except TypeError:
        return None


def _describe_skips(skipped: Counter[str]) -> str:
    if not skipped:
        return ""
    return " (skipped: " + ", ".join(f"{n} {reason}" for reason, n in skipped.items()) + ")"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
