"""Documents to index, read from JSONL, CSV, Parquet or a folder of ``.txt`` / ``.md`` files.

A record needs an ``id`` and a ``text``; ``title`` and ``metadata`` (an object) are optional, and any
other field or column is kept as metadata too. In a folder, each file is one document whose id is its
path relative to the folder. Problems in a record are errors naming the file and line; a blank text
is skipped and counted, as is a file in a folder that is not valid UTF-8.

Example::

    from koe5.search.documents import DocumentSource

    source = DocumentSource("docs.jsonl")      # {"id": "a1", "text": "...", "title": "...", "year": 2024}
    for doc in source:
        doc.id, doc.title, doc.metadata        # 'a1', '...', {'year': 2024}
    source.skipped                              # Counter({'empty documents': 2})
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.textio import json_lines

log = logging.getLogger("koe5")

TABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
FOLDER_SUFFIXES = (".txt", ".md", ".markdown")

# Reasons for skipping, the keys of ``skipped`` counters.
EMPTY = "empty documents"
NOT_UTF8 = "files that are not valid UTF-8"


@dataclass
class Document:
    """One document: ``id`` (unique in an index), ``text``, optional ``title`` and ``metadata``.

    ``origin`` says where it was read (``file:line``), for messages; it is not stored.
    """

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str = ""


class DocumentSource:
    """Iterates the documents of a file, a folder or a list of them; ``skipped`` counts what was left
    out, by reason.

    Files are read through pyarrow's filesystems, so a URI (``s3://bucket/docs/``, ``gs://…``,
    ``hdfs://…``, ``file:///…``) works wherever pyarrow has that filesystem and its credentials.
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        *,
        id_field: str = "id",
        text_field: str = "text",
        title_field: str = "title",
    ) -> None:
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths:
            raise InputError("no document files given")
        self.locations = [_Location(p) for p in paths]
        self.path = Path(str(paths[0]))
        self.fields = (id_field, text_field, title_field)
        self.skipped: Counter[str] = Counter()
        for where in self.locations:
            if where.is_file and where.suffix not in TABLE_SUFFIXES + FOLDER_SUFFIXES:
                raise InputError(
                    f"{where.name}: unknown document format; use {', '.join(TABLE_SUFFIXES)} or a folder of "
                    f"{', '.join(FOLDER_SUFFIXES)} files"
                )

    def describe(self) -> dict:
        """What this source reads (for a resumed build to compare): its paths, files and bytes."""
        files = [
            f
            for where in self.locations
            for f in (where.folder_files() if not where.is_file else [where.info])
        ]
        names = [where.ident for where in self.locations]
        return {"path": names[0] if len(names) == 1 else names, "files": len(files),
                "bytes": sum(f.size for f in files)}  # fmt: skip

    def __iter__(self) -> Iterator[Document]:
        for where in self.locations:
            if not where.is_file:
                yield from self._folder(where)
            elif where.suffix in FOLDER_SUFFIXES:
                yield from self._text_file(where, where.info, Path(where.name).name, alone=True)
            elif where.suffix == ".parquet":
                yield from self._parquet(where)
            elif where.suffix in (".csv", ".tsv"):
                yield from self._csv(where, delimiter="\t" if where.suffix == ".tsv" else ",")
            else:
                yield from self._jsonl(where)

    # --- formats ---------------------------------------------------------------------------

    def _folder(self, where: _Location) -> Iterator[Document]:
        files = [f for f in where.folder_files() if Path(f.path).suffix.lower() in FOLDER_SUFFIXES]
        if not files:
            raise InputError(f"{where.name}: no {', '.join(FOLDER_SUFFIXES)} files in this folder")
        bad: list[str] = []
        for file in files:
            rel = where.relative(file)
            try:
                yield from self._text_file(where, file, rel, alone=False)
            except UnicodeDecodeError:
                self.skipped[NOT_UTF8] += 1
                bad.append(rel)
        if bad:
            log.warning(
                "koe5: skipped %d file(s) that are not valid UTF-8: %s%s",
                len(bad),
                ", ".join(bad[:5]),
                " …" if len(bad) > 5 else "",
            )

    def _text_file(self, where: _Location, file, doc_id: str, *, alone: bool) -> Iterator[Document]:
        raw = where.read(file)
        name = where.display(file)
        # in a folder, the caller counts a file that is not UTF-8 as a skip; alone, it is an error
        text = _decode(raw, name) if alone else raw.decode("utf-8-sig")
        yield Document(doc_id, text, "", {"path": doc_id}, origin=name)

    def _jsonl(self, where: _Location) -> Iterator[Document]:
        name = where.name
        text = _decode(where.read(where.info), name)
        stripped = text.lstrip()
        if where.suffix == ".json" and stripped.startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
            for i, record in enumerate(records, 1):
                yield self._record(record, f"{name}[{i - 1}]")
            return
        for number, record in json_lines(text.splitlines(), name):
            yield self._record(record, f"{name}:{number}")

    def _csv(self, where: _Location, delimiter: str) -> Iterator[Document]:
        text = _decode(where.read(where.info), where.name)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        for record in reader:
            # a row's line is where the reader stands after it (quoted fields may span lines)
            yield self._record(record, f"{where.name}:{reader.line_num}")

    def _parquet(self, where: _Location) -> Iterator[Document]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(where.fs.open_input_file(where.info.path))
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError subclasses
            raise InputError(f"{where.name}: cannot read as Parquet ({exc})") from exc
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                yield self._record(record, f"{where.name} row {row}")
                row += 1

    # --- records ---------------------------------------------------------------------------

    def _record(self, record: Any, where: str) -> Document:
        return document_from_record(record, where, *self.fields)


def document_from_record(
    record: Any, where: str, id_field: str = "id", text_field: str = "text", title_field: str = "title"
) -> Document:
    """A :class:`Document` from a dict-like record, with errors naming ``where``."""
    if not isinstance(record, Mapping):
        raise InputError(
            f"{where}: expected an object with {id_field!r} and {text_field!r}, got {type(record).__name__}"
        )
    for name in (id_field, text_field):
        if name not in record or record[name] is None or _is_nan(record[name]):
            raise InputError(f"{where}: field {name!r} is missing")
    doc_id = record[id_field]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InputError(
            f"{where}: field {id_field!r} must be a string or an integer, got {type(doc_id).__name__}"
        )
    doc_id = str(doc_id)
    if not doc_id.strip():
        raise InputError(f"{where}: field {id_field!r} is empty")
    text = record[text_field]
    if not isinstance(text, str):
        raise InputError(f"{where}: field {text_field!r} is {type(text).__name__}, not a string")
    title = record.get(title_field) or ""
    if not isinstance(title, str):
        raise InputError(f"{where}: field {title_field!r} is {type(title).__name__}, not a string")
    metadata: dict[str, Any] = {}
    extra = record.get("metadata")
    if isinstance(extra, Mapping):
        metadata.update(extra)
    elif extra is not None and not isinstance(extra, str):
        raise InputError(f"{where}: field 'metadata' must be an object, got {type(extra).__name__}")
    for key, value in record.items():
        if key not in (id_field, text_field, title_field, "metadata") and not _is_nan(value):
            metadata[key] = value
    try:
        json.dumps(metadata, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: metadata is not JSON-serialisable ({exc})") from exc
    return Document(doc_id, text, title, metadata, origin=where)


def as_documents(items: Iterable[Any] | str | Path, **fields: str) -> Iterable[Document]:
    """Documents from a path (:class:`DocumentSource`), or from Documents or dicts as they are."""
    if isinstance(items, (str, Path)):
        return DocumentSource(items, **fields)
    if isinstance(items, DocumentSource):  # itself: its skip counts (e.g. files not UTF-8) reach the report
        return items
    if isinstance(items, Mapping):
        raise InputError("expected a list of documents, got a single mapping")
    if isinstance(items, (list, tuple)) and items and all(isinstance(i, (str, Path)) for i in items):
        return DocumentSource(items, **fields)  # a list of files or folders

    def gen() -> Iterator[Document]:
        for i, item in enumerate(items):
            yield (
                item if isinstance(item, Document) else document_from_record(item, f"document {i}", **fields)
            )

    return gen()


class _Location:
    """One file or folder given as a document source, on the pyarrow filesystem its path names."""

    def __init__(self, given: str | Path) -> None:
        from pyarrow import fs

        text = str(given)
        self.name = text
        try:
            if "://" in text:
                self.fs, self.root = fs.FileSystem.from_uri(text)
            else:
                self.fs, self.root = fs.LocalFileSystem(), str(Path(text).resolve())
            self.info = self.fs.get_file_info(self.root)
        except Exception as exc:  # pyarrow's ArrowInvalid / OSError for unknown schemes and credentials
            raise InputError(f"{text}: cannot open ({exc})") from exc
        if self.info.type == fs.FileType.NotFound:
            raise InputError(f"{text}: no such file or folder")
        self.is_file = self.info.type == fs.FileType.File
        self.ident = text if "://" in text else self.root  # the same file wherever the build runs from
        self.suffix = Path(self.root).suffix.lower()

    def folder_files(self) -> list:
        """The folder's files, hidden ones left out, sorted by path."""
        from pyarrow import fs

        found = self.fs.get_file_info(fs.FileSelector(self.root, recursive=True))
        return sorted(
            (f for f in found if f.type == fs.FileType.File and not any(
                part.startswith(".") for part in self.relative(f).split("/"))),
            key=lambda f: f.path,
        )  # fmt: skip

    def relative(self, file) -> str:
        return file.path[len(self.root) :].lstrip("/")

    def display(self, file) -> str:
        """The file's name in messages: as the user wrote the source, plus the path inside it."""
        rel = self.relative(file)
        return self.name if not rel else f"{self.name.rstrip('/')}/{rel}"

    def read(self, file) -> bytes:
        with self.fs.open_input_stream(file.path) as stream:
            return stream.read()


def _decode(raw: bytes, path: Path | str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from exc


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
