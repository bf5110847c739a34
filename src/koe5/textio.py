"""Reading texts from files or stdin and writing embeddings, with errors that name file and line."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from koe5.errors import InputError
from koe5.files import atomic_write_bytes

_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_at(text: str) -> int | None:
    """Where ``text`` holds a lone surrogate (``"\\ud800"`` from a JSON escape or a bad decoder), or
    ``None``. Such a string is not Unicode text: no tokenizer, UTF-8 writer or HTTP body accepts it."""
    found = _SURROGATE.search(text)
    return None if found is None else found.start()


def check_unicode(text: str, where: str) -> None:
    """An :class:`InputError` naming ``where`` and the position if ``text`` has a lone surrogate."""
    at = surrogate_at(text)
    if at is not None:
        raise InputError(
            f"{where}: lone surrogate U+{ord(text[at]):04X} at character {at}: not valid Unicode text"
        )


@dataclass
class Texts:
    """Texts read from one source; ``ids`` are taken from JSONL records when they carry one."""

    texts: list[str]
    ids: list[str] | None
    source: str


def _open_text(path: str | Path) -> tuple[str, str]:
    if str(path) == "-":
        raw = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        name = str(path)
    try:
        return raw.decode("utf-8-sig"), name
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}:{line}: not valid UTF-8 (byte {exc.start})") from exc


def read_texts(path: str | Path, fmt: str = "auto", field: str = "text", id_field: str = "id") -> Texts:
    """Read texts from a file (or ``-`` for stdin).

    ``fmt``: ``jsonl`` (each line a JSON string or an object with ``field``), ``text`` (one text
    per line; every line counts, empty ones too, so rows match lines) or ``auto`` (by extension,
    else ``jsonl`` when the first non-empty line is JSON).
    """
    content, name = _open_text(path)
    lines = content.splitlines()
    if fmt == "auto":
        fmt = guess_format(path, lines)
    if fmt == "text":
        return Texts(lines, None, name)
    if fmt != "jsonl":
        raise InputError(f"unknown input format {fmt!r} (use auto, jsonl or text)")
    texts: list[str] = []
    ids: list[str] = []
    for number, record in json_lines(lines, name):
        if isinstance(record, str):
            check_unicode(record, f"{name}:{number}")
            texts.append(record)
            continue
        if not isinstance(record, dict):
            raise InputError(
                f"{name}:{number}: expected a JSON string or object, got {type(record).__name__}"
            )
        texts.append(record_text(record, field, f"{name}:{number}"))
        if id_field in record:
            ids.append(str(record[id_field]))
    if ids and len(ids) != len(texts):
        raise InputError(f"{name}: some records have {id_field!r} and some do not")
    return Texts(texts, ids or None, name)


def record_text(record: dict, field: str, where: str) -> str:
    """The text in ``record[field]``, or an :class:`InputError` naming ``where`` (``file:line``) and the
    field when it is missing, not a string or not valid Unicode."""
    if field not in record:
        raise InputError(f"{where}: field {field!r} is missing")
    text = record[field]
    if not isinstance(text, str):
        raise InputError(f"{where}: field {field!r} is {type(text).__name__}, not a string")
    check_unicode(text, f"{where}: field {field!r}")
    return text


def guess_format(path: str | Path, lines: list[str]) -> str:
    """``jsonl`` or ``text``: by the file's extension, else ``jsonl`` when the first non-blank line
    starts like JSON (``{`` or ``"``), as ``fmt="auto"`` of :func:`read_texts` decides."""
    suffix = Path(str(path)).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".txt", ".text", ".tsv"):
        return "text"
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    return "jsonl" if first[:1] in ("{", '"') else "text"


def json_lines(
    lines: Iterable[str], where: str | Path, *, objects: bool = False
) -> Iterator[tuple[int, Any]]:
    """Parse JSON Lines: ``(line number, value)`` for each non-blank line. A line that is not JSON (or,
    with ``objects``, not a JSON object) is an :class:`InputError` naming ``where:line``."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}:{number}: not valid JSON ({exc.msg})") from exc
        if objects and not isinstance(record, dict):
            raise InputError(f"{where}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def write_embeddings(path: str | Path | None, vectors: np.ndarray, ids: list[str] | None = None) -> None:
    """Write vectors as ``.npy`` or JSONL (``{"id"?, "embedding"}`` a line); ``None`` or ``-``: stdout."""
    lines = (
        json.dumps(
            ({"id": ids[i]} if ids else {}) | {"embedding": [round(float(x), 7) for x in vec]},
            ensure_ascii=False,
        )
        for i, vec in enumerate(vectors)
    )
    if path is None or str(path) == "-":
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    path = Path(path)
    if path.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, vectors.astype(np.float32, copy=False))
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix in (".jsonl", ".ndjson"):
        atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))
    else:
        raise InputError(f"{path}: output must end in .npy or .jsonl")
