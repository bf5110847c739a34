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
from collections.abc import Iterable, Iterator, Mapping
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
    """Iterates the documents of a file or folder; ``skipped`` counts what was left out, by reason."""

    def __init__(
        self,
        path: str | Path,
        *,
        id_field: str = "id",
        text_field: str = "text",
        title_field: str = "title",
    ) -> None:
        self.path = Path(path)
        self.fields = (id_field, text_field, title_field)
        self.skipped: Counter[str] = Counter()
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file or folder")
        if self.path.is_file() and self.path.suffix.lower() not in TABLE_SUFFIXES + FOLDER_SUFFIXES:
            raise InputError(
                f"{self.path}: unknown document format; use {', '.join(TABLE_SUFFIXES)} or a folder of "
                f"{', '.join(FOLDER_SUFFIXES)} files"
            )

    def __iter__(self) -> Iterator[Document]:
        path = self.path
        if path.is_dir():
            yield from self._folder()
            return
        suffix = path.suffix.lower()
        if suffix in FOLDER_SUFFIXES:
            yield from self._text_file(path, path.name)
        elif suffix == ".parquet":
            yield from self._parquet()
        elif suffix in (".csv", ".tsv"):
            yield from self._csv(delimiter="\t" if suffix == ".tsv" else ",")
        else:
            yield from self._jsonl()

    # --- formats ---------------------------------------------------------------------------

    def _folder(self) -> Iterator[Document]:
        files = sorted(
            p
            for p in self.path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FOLDER_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(self.path).parts)
        )
        if not files:
            raise InputError(f"{self.path}: no {', '.join(FOLDER_SUFFIXES)} files in this folder")
        bad: list[str] = []
        for file in files:
            rel = file.relative_to(self.path).as_posix()
            try:
                yield from self._text_file(file, rel)
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

    def _text_file(self, file: Path, doc_id: str) -> Iterator[Document]:
        raw = file.read_bytes()
        # in a folder, the caller counts a file that is not UTF-8 as a skip; alone, it is an error
        text = _decode(raw, file) if self.path.is_file() else raw.decode("utf-8-sig")
        yield Document(doc_id, text, "", {"path": doc_id}, origin=str(file))

    def _jsonl(self) -> Iterator[Document]:
        text = _decode(self.path.read_bytes(), self.path)
        stripped = text.lstrip()
        if self.path.suffix.lower() == ".json" and stripped.startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{self.path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
            for i, record in enumerate(records, 1):
                yield self._record(record, f"{self.path}[{i - 1}]")
            return
        for number, record in json_lines(text.splitlines(), self.path):
            yield self._record(record, f"{self.path}:{number}")

    def _csv(self, delimiter: str) -> Iterator[Document]:
        text = _decode(self.path.read_bytes(), self.path)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        for record in reader:
            # a row's line is where the reader stands after it (quoted fields may span lines)
            yield self._record(record, f"{self.path}:{reader.line_num}")

    def _parquet(self) -> Iterator[Document]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError subclasses
            raise InputError(f"{self.path}: cannot read as Parquet ({exc})") from exc
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                yield self._record(record, f"{self.path} row {row}")
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

    def gen() -> Iterator[Document]:
        for i, item in enumerate(items):
            yield (
                item if isinstance(item, Document) else document_from_record(item, f"document {i}", **fields)
            )

    return gen()


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from exc


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
