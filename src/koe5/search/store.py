"""The on-disk layout of a search index, and how it changes without ever being half-written.

::

    INDEX/
      manifest.json          format, version, model, settings, counts; names the live files
      segments/000001/       immutable: the chunks of one batch of documents
        chunks.arrow           doc_id, chunk, start, end, text, title, metadata (Arrow IPC, memory-mapped)
        vectors.npy            float32 (chunks, dim), memory-mapped
        tokens.npz, vocab.json Kiwi terms of each chunk (BM25 can be rebuilt without analysing again)
        codes.npy              compact codes of the vectors (``--vectors`` float16/int8/int4/binary only)
      gen-000003/            the mutable state of one version of the index
        deleted.npy            global chunk rows deleted since the segments were written
        bm25/                  KoreanBM25 over the live chunks
        hnsw.faiss             the HNSW graph, when the dense part uses one
        calibration.npy        the int8 ranges or binary/int4 centre of compact vectors (see dense_state)

Every change writes new segment and generation folders (each through a temporary folder and a
rename), then replaces ``manifest.json`` in one rename: that rename is the commit. A crash before it
leaves the previous manifest pointing at the previous, untouched files; the orphans are removed at the
next commit. One writer at a time holds ``.lock``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koe5.errors import IndexFormatError
from koe5.files import atomic_dir, atomic_write_bytes

FORMAT = "koe5-index"
VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
COLUMNS = ("doc_id", "chunk", "start", "end", "text", "title", "metadata")


def read_manifest(folder: str | Path, *, allow_building: bool = False) -> dict:
    """The manifest of an index folder; :class:`IndexFormatError` if it is not a usable koe5 index."""
    folder = Path(folder)
    if not folder.exists():
        raise IndexFormatError(f"{folder}: no such index folder")
    if not folder.is_dir():
        raise IndexFormatError(f"{folder}: not a folder (an index is a folder made by `koe5 index build`)")
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(f"{folder}: not a koe5 index ({MANIFEST} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path}: damaged manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{folder}: not a koe5 index ({MANIFEST} has no format {FORMAT!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise IndexFormatError(
            f"{folder}: index format version {version!r} is newer than this koe5 reads ({VERSION}); "
            "upgrade koe5 or rebuild the index"
        )
    if manifest.get("state") != "complete" and not allow_building:
        raise IndexFormatError(
            f"{folder}: the build of this index did not finish; rerun `koe5 index build` with --resume"
        )
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    data = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
    atomic_write_bytes(folder / MANIFEST, data)  # mode 0666 less the umask, like any file the user writes


@contextlib.contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Exclusive right to change ``folder`` (an advisory ``flock``; fails at once if another holds it)."""
    import fcntl

    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise IndexFormatError(f"{folder}: another process is changing this index") from exc
            raise
        yield
    finally:
        os.close(fd)


# --- segments ----------------------------------------------------------------------------------


@dataclass
class Segment:
    """One immutable batch of chunks: an Arrow table (memory-mapped), vectors and BM25 terms."""

    name: str
    table: object  # pyarrow.Table
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


def write_segment(
    folder: Path,
    name: str,
    columns: dict[str, list],
    vectors: np.ndarray,
    tokens: list[list[str]],
) -> None:
    """Write ``segments/<name>`` through a temporary folder (an orphan of a crash is overwritten)."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("doc_id", pa.string()),
            ("chunk", pa.int32()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("text", pa.large_string()),
            ("title", pa.string()),
            ("metadata", pa.string()),
        ]
    )
    table = pa.table({c: columns[c] for c in COLUMNS}, schema=schema)
    vocab: dict[str, int] = {}
    ids = np.asarray([vocab.setdefault(t, len(vocab)) for doc in tokens for t in doc], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(doc) for doc in tokens])]).astype(np.int64)
    with atomic_dir(folder / "segments" / name, replace=True) as tmp:
        with pa.OSFile(str(tmp / "chunks.arrow"), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(table)
        np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        np.savez(tmp / "tokens.npz", ids=ids, offsets=offsets)
        (tmp / "vocab.json").write_text(json.dumps(list(vocab), ensure_ascii=False), encoding="utf-8")


def read_segment(folder: Path, name: str) -> Segment:
    import pyarrow as pa

    path = folder / "segments" / name
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path / "chunks.arrow"))).read_all()
        vectors = np.load(path / "vectors.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: damaged or missing segment ({exc})") from exc
    if len(vectors) != table.num_rows:
        raise IndexFormatError(f"{path}: {table.num_rows} chunks but {len(vectors)} vectors")
    return Segment(name, table, vectors)


def read_segment_tokens(folder: Path, name: str) -> list[list[str]]:
    """The Kiwi terms of each chunk of a segment."""
    path = folder / "segments" / name
    vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    with np.load(path / "tokens.npz") as arrays:
        ids, offsets = arrays["ids"], arrays["offsets"]
    words = np.asarray(vocab, dtype=object)
    flat = words[ids].tolist() if len(ids) else []
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


# --- generations and garbage -------------------------------------------------------------------


def link_or_copy(src: Path, dst: Path) -> None:
    """Share an unchanged file with the next generation (files are never modified in place)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def collect_garbage(folder: Path, manifest: dict) -> None:
    """Remove segment and generation folders the manifest does not name, and stale temporaries."""
    live_segments = {s["name"] for s in manifest["segments"]}
    seg_root = folder / "segments"
    if seg_root.is_dir():
        for entry in seg_root.iterdir():
            if entry.name not in live_segments:
                shutil.rmtree(entry, ignore_errors=True)
            else:  # a file written into a live segment later (its codes) by a process that was killed
                for stale in entry.glob(".*.tmp-*"):
                    stale.unlink(missing_ok=True)
    for entry in folder.iterdir():
        stale_gen = entry.name.startswith("gen-") and entry.name != manifest["generation"]
        if stale_gen or (entry.name.startswith(".") and ".tmp-" in entry.name):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
