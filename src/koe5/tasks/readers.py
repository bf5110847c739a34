"""Reading corpus, query and qrels files line by line, with errors that name the file, line and field.

Files are read as UTF-8 (a leading byte-order mark is ignored) and streamed, so large corpora are never
held twice in memory.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "queries.jsonl"
>>> _ = path.write_text('{"_id": "q1", "text": "수도는?"}\\n', encoding="utf-8")
>>> read_queries_jsonl(path)
{'q1': '수도는?'}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.textio import json_lines

ID_FIELDS = ("_id", "id", "docid")
TEXT_FIELDS = ("text", "contents")


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` for each line of a UTF-8 file, without the line ending."""
    try:
        with Path(path).open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    message = f"{path}:{number}: not UTF-8 text (byte {exc.start} of the line)"
                    raise InputError(message) from None
                if number == 1:
                    line = line.removeprefix("\ufeff")
                yield number, line.rstrip("\r\n")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def read_json(path: str | Path) -> Any:
    """Parse a whole JSON file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", record)`` for each non-blank line of a JSON Lines file of objects."""
    for number, record in json_lines((line for _, line in read_lines(path)), path, objects=True):
        yield f"{path}:{number}", record


def field(record: dict[str, Any], names: tuple[str, ...], where: str, *, default: str | None = None) -> str:
    """The first of ``names`` present in ``record``, as a string (ids may be numbers)."""
    for name in names:
        if name in record:
            value = record[name]
            if isinstance(value, str):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            raise InputError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    if default is not None:
        return default
    raise InputError(f"{where}: field {' or '.join(repr(n) for n in names)} is missing")


def put_unique(
    mapping: dict[str, Any], key: str, value: Any, kind: str, where: str, seen: dict[str, str]
) -> None:
    """Add ``key`` to ``mapping``; a key seen before is an error naming both places."""
    if key in mapping:
        first = seen.get(key, "an earlier line")
        raise InputError(f"{where}: duplicate {kind} id {key!r} (first at {first})")
    mapping[key] = value
    seen[key] = where


def read_corpus_jsonl(path: str | Path) -> dict[str, dict[str, str]]:
    """Documents from JSONL: id in ``_id``/``id``/``docid``, ``title`` (optional), ``text``/``contents``."""
    corpus: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for where, record in read_jsonl(path):
        title = field(record, ("title",), where, default="")
        doc = {"title": title, "text": field(record, TEXT_FIELDS, where)}
        put_unique(corpus, field(record, ID_FIELDS, where), doc, "document", where, seen)
    if not corpus:
        raise InputError(f"{path}: the corpus is empty (the file has no records)")
    return corpus


def read_queries_jsonl(path: str | Path) -> dict[str, str]:
    """Queries from JSONL: id in ``_id``/``id``, text in ``text``."""
    queries: dict[str, str] = {}
    seen: dict[str, str] = {}
    for where, record in read_jsonl(path):
        put_unique(
            queries,
            field(record, ("_id", "id"), where),
            field(record, ("text",), where),
            "query",
            where,
            seen,
        )
    if not queries:
        raise InputError(f"{path}: no queries (the file has no records)")
    return queries


def read_corpus_tsv(path: str | Path) -> dict[str, dict[str, str]]:
    """Documents from TSV lines ``id<TAB>text`` or ``id<TAB>title<TAB>text`` (a header line is skipped)."""
    corpus: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if number == 1 and fields[0].strip().lower() in ("id", "_id", "docid", "doc_id", "pid"):
            continue
        if len(fields) == 2:
            doc = {"title": "", "text": fields[1]}
        elif len(fields) == 3:
            doc = {"title": fields[1], "text": fields[2]}
        else:
            raise InputError(
                f"{where}: expected 'id<TAB>text' or 'id<TAB>title<TAB>text', got {len(fields)} fields"
            )
        put_unique(corpus, fields[0].strip(), doc, "document", where, seen)
    return corpus


def read_qrels(path: str | Path, fmt: str) -> Iterator[tuple[str, str, int]]:
    """Yield ``(query id, document id, relevance)`` from a qrels file.

    ``fmt="beir"``: tab-separated ``query-id corpus-id score``, with the header line BEIR writes;
    ``fmt="trec"``: whitespace-separated ``query-id iteration doc-id relevance``.
    """
    columns = 3 if fmt == "beir" else 4
    for number, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t") if fmt == "beir" else line.split()
        if fmt == "beir" and number == 1 and fields[0].strip() == "query-id":
            continue
        if len(fields) != columns:
            layout = "query-id<TAB>corpus-id<TAB>score" if fmt == "beir" else "query-id 0 doc-id relevance"
            raise InputError(f"{where}: expected '{layout}', got {len(fields)} fields")
        query_id, doc_id, score = fields[0].strip(), fields[-2].strip(), fields[-1].strip()
        yield query_id, doc_id, parse_score(score, where)


def parse_score(value: str, where: str) -> int:
    """A relevance grade: an integer, or a float with no fractional part (as MTEB casts it)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{where}: relevance {value!r} is not a number") from None
    if not number.is_integer():
        raise InputError(f"{where}: relevance {value!r} is not a whole number")
    return int(number)
