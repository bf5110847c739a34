"""Candidates to rerank, read from a file or stdin, and the ranked rows written back with their fields.

A JSONL line is an object whose ``field`` (default ``text``) holds the text; its other fields (an
``id``, a title, the first stage's score) travel through to the output unchanged. A plain text file
gives one candidate per non-blank line. Bad lines are :class:`~koe5.errors.InputError` naming the
file, line and field, as :mod:`koe5.textio` names them.

Example::

    from koe5.rerank import Reranker
    from koe5.rerank.candidates import read_candidates, rows

    candidates = read_candidates("hits.jsonl")
    hits = Reranker.load().rank("한국의 수도는?", [c.text for c in candidates], top_k=5)
    rows(hits, candidates)   # [{"index": 3, "score": 0.98, "text": "...", "id": "doc-7"}, ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.rerank.ranking import Ranked
from koe5.textio import guess_format, json_lines, read_texts, record_text

#: The keys every output row has; a candidate's own field of that name is kept as ``input_<name>``
#: (a first stage's ``score`` is worth keeping beside the reranker's).
OWN_KEYS = ("index", "score", "text")


@dataclass(frozen=True)
class Candidate:
    """One text to rerank and the other fields of its record."""

    text: str
    fields: dict[str, Any] = field(default_factory=dict)


def read_candidates(path: str | Path = "-", *, field: str = "text", fmt: str = "auto") -> list[Candidate]:
    """Candidates from a file (``-``: stdin). ``fmt``: ``jsonl``, ``text`` or ``auto`` (by the
    extension, else by whether the first line looks like JSON). Blank lines are skipped in both."""
    source = read_texts(path, fmt="text")  # the lines, decoded, with errors naming the file
    lines, name = source.texts, source.source
    if fmt == "auto":
        fmt = guess_format(path, lines)
    if fmt == "text":
        return [Candidate(line) for line in lines if line.strip()]
    if fmt != "jsonl":
        raise InputError(f"unknown input format {fmt!r} (use auto, jsonl or text)")
    out = []
    for number, record in json_lines(lines, name, objects=True):
        text = record_text(record, field, f"{name}:{number}")
        out.append(Candidate(text, {key: value for key, value in record.items() if key != field}))
    return out


def rows(hits: list[Ranked], candidates: list[Candidate]) -> list[dict[str, Any]]:
    """Each hit as ``{index, score, text, ...the candidate's other fields}``."""
    out = []
    for hit in hits:
        row: dict[str, Any] = hit.to_dict()
        for key, value in candidates[hit.index].fields.items():
            row[f"input_{key}" if key in OWN_KEYS else key] = value
        out.append(row)
    return out
