"""MTEB result files: one JSON per task, as MTEB 1.20.1 writes them, so MTEB's tools can read koe5's.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "AutoRAGRetrieval.json"
>>> entry = {"hf_subset": "default", "languages": ["kor-Hang"], "main_score": 0.8, "ndcg_at_10": 0.8}
>>> write_task_result(path, "AutoRAGRetrieval", {"test": [entry]}, evaluation_time=12.5)
>>> read_task_result(path)["scores"]["test"][0]["ndcg_at_10"]
0.8

The layout (keys sorted, two-space indent, as ``mteb.MTEB.run`` 1.20.1 dumps ``TaskResult``)::

    {"dataset_revision": ..., "evaluation_time": ..., "kg_co2_emissions": null,
     "koe5_version": "0.1.0", "mteb_version": "1.20.1",
     "scores": {"test": [{"hf_subset": ..., "languages": [...], "main_score": ..., "ndcg_at_10": ...}]},
     "task_name": ...}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.files import atomic_write_bytes

#: Written as ``mteb_version``. koe5 computes its scores with MTEB 1.20.1's semantics (see
#: ``koe5.evaluation.metrics``) and writes its file layout, and readers key on this field: mteb's
#: ``TaskResult.from_disk`` parses it as a version (anything else raises) and treats a missing one
#: as the pre-1.11 layout. The program that actually wrote the file goes under ``koe5_version``.
MTEB_FORMAT_VERSION = "1.20.1"


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: expected an object with hf_subset and scores, got {type(entry).__name__}")
    if not isinstance(entry.get("hf_subset"), str):
        raise InputError(f"{where}: 'hf_subset' is missing or not a string")


def write_task_result(
    path: str | Path,
    task_name: str,
    scores_by_split: Mapping[str, list[Mapping[str, Any]]],
    *,
    dataset_revision: str | None = None,
    evaluation_time: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write one task's scores to ``path`` (atomically) in MTEB's result-file layout.

    ``scores_by_split`` maps a split ("test", "dev") to one entry per evaluated subset; each entry
    needs ``hf_subset`` (``"default"`` for single-subset tasks), ``languages`` (e.g.
    ``["kor-Hang"]``) and ``main_score``, as MTEB requires, plus the metrics (e.g. the output of
    :func:`koe5.evaluation.metrics.evaluate_run`). ``extra`` adds top-level keys (model name, encoder
    settings).
    """
    from koe5._version import __version__

    if not scores_by_split:
        raise InputError(f"{path}: no scores to write for {task_name}")
    scores: dict[str, list[dict[str, Any]]] = {}
    for split, entries in scores_by_split.items():
        if not entries:
            raise InputError(f"{path}: split {split!r} of {task_name} has no entries")
        scores[split] = []
        for i, entry in enumerate(entries):
            where = f"{task_name} {split}[{i}]"
            _check_entry(entry, where)
            if not isinstance(entry.get("languages"), list):
                raise InputError(f"{where}: 'languages' (a list such as ['kor-Hang']) is required")
            if not isinstance(entry.get("main_score"), Real):
                raise InputError(f"{where}: 'main_score' (a number) is required")
            scores[split].append(dict(entry))
    doc: dict[str, Any] = {
        "dataset_revision": dataset_revision,
        "evaluation_time": evaluation_time,
        "kg_co2_emissions": None,
        "koe5_version": __version__,
        "mteb_version": MTEB_FORMAT_VERSION,
        "scores": scores,
        "task_name": task_name,
    }
    for key, value in (extra or {}).items():
        if key in doc:
            raise InputError(f"extra key {key!r} would overwrite a standard field of the result file")
        doc[key] = value

    def plain(obj: Any) -> Any:  # numpy scalars and arrays carry .item()/.tolist()
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False, default=plain)
    except ValueError as exc:  # NaN or infinity: not JSON, and MTEB's readers would reject it
        raise InputError(f"{path}: a score of {task_name} is NaN or infinite") from exc
    except TypeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def read_task_result(path: str | Path) -> dict[str, Any]:
    """Read and check one MTEB result file; an :class:`InputError` names the file and the fault.

    Checks what readers rely on: ``task_name``, ``scores`` as ``{split: [entry, ...]}`` and each entry's
    ``hf_subset``. Returns the file's content unchanged.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such result file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("task_name"), str):
        raise InputError(f"{path}: 'task_name' is missing (not an MTEB >= 1.11 result file?)")
    scores = data.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise InputError(f"{path}: 'scores' must map a split to a list of subset entries")
    for split, entries in scores.items():
        if not isinstance(entries, list) or not entries:
            raise InputError(f"{path}: scores[{split!r}] must be a non-empty list")
        for i, entry in enumerate(entries):
            where = f"{path}: scores[{split!r}][{i}]"
            _check_entry(entry, where)
    # Scores may be NaN (MTEB writes NaN for some nauc_* fields): whoever averages one must check it.
    return data
