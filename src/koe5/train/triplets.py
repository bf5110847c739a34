"""Training rows (query, positive, negatives…) from JSONL, CSV/TSV, Parquet or a Hugging Face dataset.

Columns are found by name — ko-triplet-v1.0's ``query``/``document``/``hard_negative``, or
``query``/``positive``/``negative…`` (any number of negatives, or one list-valued ``negatives``) —
or mapped explicitly. Every text must be a non-empty string; errors name the file, the line (or row)
and the field.

>>> rows = load_triplets(["triplets.jsonl"])                       # doctest: +SKIP
>>> rows.dataset.column_names, rows.groups[:2]                     # doctest: +SKIP
(['query', 'positive', 'negative_1'], ['welfare_qa:긴급복지', 'welfare_qa:긴급복지'])
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.textio import json_lines

QUERY_NAMES = ("query", "anchor", "question")
POSITIVE_NAMES = ("positive", "document", "pos", "passage", "answer")
_NEGATIVE = re.compile(r"^(hard_)?neg(ative)?s?(_?\d+)?$")


@dataclass
class Triplets:
    """Validated training rows: ``dataset`` has the text columns ``query``, ``positive`` and
    ``negative_1`` … ``negative_n`` (in that order, as the losses read them); ``groups`` is one label
    per row (rows of a group must not share a batch) or ``None``; ``origin`` names the files read."""

    dataset: Any  # datasets.Dataset
    groups: list[str] | None
    origin: str

    @property
    def num_negatives(self) -> int:
        return len(self.dataset.column_names) - 2

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class _Table:
    columns: dict[str, list[Any]]
    origin: str
    row_label: Any  # row index -> "file:line" or "file: row n"


def _read_jsonl(path: Path) -> _Table:
    columns: dict[str, list[Any]] = {}
    lines: list[int] = []
    try:
        handle = path.open(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        for number, record in json_lines(handle, path, objects=True):
            row = len(lines)
            for key in record:
                if key not in columns:
                    columns[key] = [None] * row
            for key, values in columns.items():
                values.append(record.get(key))
            lines.append(number)
    return _Table(columns, str(path), lambda i: f"{path}:{lines[i]}")


def _read_csv(path: Path) -> _Table:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            names = [n for n in reader.fieldnames or [] if n]
            columns: dict[str, list[Any]] = {name: [] for name in names}
            lines: list[int] = []
            for record in reader:
                for name in names:
                    columns[name].append(record.get(name))
                lines.append(reader.line_num)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc
    return _Table(columns, str(path), lambda i: f"{path}:{lines[i]}")


def _read_arrow(table: Any, origin: str) -> _Table:
    return _Table(table.to_pydict(), origin, lambda i: f"{origin}: row {i + 1}")


def _read_source(source: str, split: str) -> _Table:
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _read_jsonl(path)
        if suffix in (".csv", ".tsv"):
            return _read_csv(path)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                return _read_arrow(pq.read_table(path), str(path))
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise InputError(f"{path}: cannot read Parquet ({exc})") from exc
        raise InputError(f"{path}: training data must be .jsonl, .csv, .tsv, .parquet or a dataset folder")
    import datasets

    if path.is_dir():  # a dataset saved with save_to_disk
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise InputError(f"{path}: not a saved Hugging Face dataset ({exc})") from exc
        origin = str(path)
    elif source.startswith((".", "/", "~")) or suffix in (".jsonl", ".csv", ".tsv", ".parquet"):
        raise InputError(f"{path}: no such file or folder")
    else:  # a hub dataset id
        try:
            loaded = datasets.load_dataset(source, split=split)
        except Exception as exc:
            raise InputError(f"cannot load the dataset {source!r} (split {split!r}): {exc}") from exc
        origin = f"{source}:{split}"
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise InputError(f"{path}: no split {split!r} (it has {', '.join(loaded)})")
        loaded, origin = loaded[split], f"{origin}:{split}"
    return _read_arrow(loaded.data.table, origin)


def _pick(table: _Table, explicit: str | None, names: Sequence[str], role: str, flag: str) -> str:
    if explicit is not None:
        if explicit not in table.columns:
            raise InputError(
                f"{table.origin}: no column {explicit!r} for the {role} "
                f"(the data has: {', '.join(table.columns) or 'no columns'})"
            )
        return explicit
    for name in names:
        if name in table.columns:
            return name
    raise InputError(
        f"{table.origin}: no {role} column (looked for {', '.join(names)}; the data has: "
        f"{', '.join(table.columns) or 'no columns'}); name it with {flag}"
    )


def _text(table: _Table, column: str, i: int, value: Any) -> str:
    if value is None:
        raise InputError(f"{table.row_label(i)}: field {column!r} is missing")
    if not isinstance(value, str):
        raise InputError(f"{table.row_label(i)}: field {column!r} is {type(value).__name__}, not a string")
    if not value.strip():
        raise InputError(f"{table.row_label(i)}: field {column!r} is empty")
    return value


def _negatives(table: _Table, explicit: Sequence[str] | None, used: set[str]) -> list[list[str]]:
    """The negative texts as columns (one list per negative position)."""
    if explicit is not None:
        names = list(explicit)
        for name in names:
            _pick(table, name, (), "negatives", "--negative-cols")
    else:
        names = [c for c in table.columns if c not in used and _NEGATIVE.match(c)]
    out: list[list[str]] = []
    for name in names:
        values = table.columns[name]
        if any(isinstance(v, (list, tuple)) for v in values):  # one list-valued column of negatives
            width = {len(v) if isinstance(v, (list, tuple)) else -1 for v in values}
            if len(width) != 1 or -1 in width:
                i = next(
                    i
                    for i, v in enumerate(values)
                    if not isinstance(v, (list, tuple)) or len(v) != len(values[0] or ())
                )
                raise InputError(
                    f"{table.row_label(i)}: field {name!r} must hold the same number of negatives in "
                    "every row (the losses take a fixed number of columns)"
                )
            for k in range(width.pop()):
                out.append([_text(table, f"{name}[{k}]", i, v[k]) for i, v in enumerate(values)])
        else:
            out.append([_text(table, name, i, v) for i, v in enumerate(values)])
    return out


def load_triplets(
    sources: str | Sequence[str],
    *,
    query_column: str | None = None,
    positive_column: str | None = None,
    negative_columns: Sequence[str] | None = None,
    group_column: str | None = "group",
    split: str = "train",
) -> Triplets:
    """Read and check training rows from one or more files or datasets (concatenated in order).

    ``group_column`` is used when the data has it (an explicitly different name must exist).
    Raises :class:`InputError` for missing columns, empty or non-string texts, files whose number
    of negatives differ, and empty data.
    """
    import datasets

    if isinstance(sources, str):
        sources = [sources]
    parts: list[dict[str, list[str]]] = []
    groups: list[str] = []
    with_groups: list[bool] = []
    for source in sources:
        table = _read_source(str(source), split)
        n = len(next(iter(table.columns.values()), []))
        if n == 0:
            raise InputError(f"{table.origin}: no rows")
        query = _pick(table, query_column, QUERY_NAMES, "query", "--query-col")
        positive = _pick(table, positive_column, POSITIVE_NAMES, "positive", "--positive-col")
        if query == positive:
            raise InputError(f"{table.origin}: the query and positive columns are both {query!r}")
        used = {query, positive, group_column or "", "source", "id", "_id"}
        columns = {
            "query": [_text(table, query, i, v) for i, v in enumerate(table.columns[query])],
            "positive": [_text(table, positive, i, v) for i, v in enumerate(table.columns[positive])],
        }
        for k, values in enumerate(_negatives(table, negative_columns, used), 1):
            columns[f"negative_{k}"] = values
        if parts and len(columns) != len(parts[0]):
            raise InputError(
                f"{table.origin}: has {len(columns) - 2} negative(s) per row, but {sources[0]} has "
                f"{len(parts[0]) - 2}; files trained together need the same number"
            )
        parts.append(columns)
        has_group = bool(group_column) and group_column in table.columns
        if group_column and group_column != "group" and not has_group:
            _pick(table, group_column, (), "groups", "--group-col")
        with_groups.append(has_group)
        if has_group:
            groups.extend(f"{g}" for g in table.columns[group_column])
        else:  # a row without a group is a group of its own
            groups.extend(f"\x00{len(parts)}:{i}" for i in range(n))
    merged = {name: [t for part in parts for t in part[name]] for name in parts[0]}
    dataset = datasets.Dataset.from_dict(merged)
    origin = ", ".join(str(s) for s in sources)
    return Triplets(dataset, groups if any(with_groups) else None, origin)


def read_pairs(
    source: str, *, query_column: str | None = None, positive_column: str | None = None, split: str = "train"
) -> list[dict[str, str]]:
    """Rows as dicts with ``query``, ``positive``, and ``negative``/``group``/``source`` when present
    (the input of hard-negative mining)."""
    table = _read_source(str(source), split)
    query = _pick(table, query_column, QUERY_NAMES, "query", "--query-col")
    positive = _pick(table, positive_column, POSITIVE_NAMES, "positive", "--positive-col")
    negative = next((c for c in table.columns if c not in (query, positive) and _NEGATIVE.match(c)), None)
    rows = []
    for i in range(len(table.columns[query])):
        row = {
            "query": _text(table, query, i, table.columns[query][i]),
            "positive": _text(table, positive, i, table.columns[positive][i]),
        }
        if negative and isinstance(table.columns[negative][i], str) and table.columns[negative][i].strip():
            row["negative"] = table.columns[negative][i]
        for key in ("group", "source"):
            if key in table.columns and table.columns[key][i] is not None:
                row[key] = str(table.columns[key][i])
        rows.append(row)
    return rows


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows as JSONL, CSV/TSV or Parquet (by extension), through a temporary file and a rename."""
    import io

    from koe5.files import atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if suffix in (".jsonl", ".ndjson"):
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    elif suffix in (".csv", ".tsv"):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)
        data = buffer.getvalue().encode("utf-8")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(pa.table({c: [row.get(c) for row in rows] for c in columns}), sink)
        data = sink.getvalue()
    else:
        raise InputError(f"{path}: output must end in .jsonl, .csv, .tsv or .parquet")
    atomic_write_bytes(path, data)
