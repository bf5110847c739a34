"""The KURE / KoE5 Korean retrieval leaderboard, rebuilt from MTEB result files.

>>> print(render(["results"], fmt="markdown", ks=(10,)))     # doctest: +SKIP
### Top-k 10
| Model | Average Recall@10 | Average Precision@10 | Average NDCG@10 | Average F1@10 |
...

The rules are those of the tables on the KURE-v1 and KoE5 model cards (nlpai-lab/KURE README,
"MTEB-ko-retrieval leaderboard", 2024-12-21), checked by reproducing every published value from the
published result files (``tests/test_leaderboard.py``):

- A task's score is the mean of its splits' scores (MultiLongDocRetrieval has dev and test), each
  read from the Korean subset (:data:`KOREAN_SUBSETS`, or the task's only subset).
- A task's F1@k is 2PR/(P+R) from that task's P@k and R@k; a row's F1 is the mean of the task F1s,
  not the F1 of the mean P and R (which misses the published F1 by up to 7e-3).
- A row is the unweighted mean over the tasks (the 8 of :data:`KURE_TASKS`); rows are sorted by mean
  NDCG@k, best first (sorting by recall does not give the published order).
- A model without a result for one of the tasks gets no row, with a warning naming model and task.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from koe5.errors import InputError
from koe5.evaluation.results import read_task_result

#: The eight Korean retrieval tasks of the KURE-v1 / KoE5 model cards.
KURE_TASKS = (
    "AutoRAGRetrieval",
    "BelebeleRetrieval",
    "Ko-StrategyQA",
    "MIRACLRetrieval",
    "MrTidyRetrieval",
    "MultiLongDocRetrieval",
    "PublicHealthQA",
    "XPQARetrieval",
)
#: The Korean-Korean subset of each multi-subset task, as named in MTEB's result files. (The KURE
#: leaderboard script takes each split's first entry, which is this one in every published file.)
KOREAN_SUBSETS = {
    "BelebeleRetrieval": "kor_Hang-kor_Hang",
    "MIRACLRetrieval": "ko",
    "MrTidyRetrieval": "korean",
    "MultiLongDocRetrieval": "ko",
    "PublicHealthQA": "korean",
    "XPQARetrieval": "kor-kor",
}
LEADERBOARD_KS = (1, 3, 5, 10)
COLUMNS = ("recall", "precision", "ndcg", "f1")
TITLES = {"recall": "Recall", "precision": "Precision", "ndcg": "NDCG", "f1": "F1", "map": "MAP"}
FORMATS = ("markdown", "csv", "json")

Results = dict[str, dict[str, dict[str, Any]]]


# --- reading ------------------------------------------------------------------------------------


def _is_mteb_model_folder(name: str) -> bool:
    # mteb names the folder under <org>/<name> after the model ("org__name"), or this when it has none
    return "__" in name or name == "no_model_name_available"


def _model_of(file: Path, root: Path) -> str:
    folders = file.relative_to(root).parts[:-1]
    if len(folders) >= 2 and not _is_mteb_model_folder(folders[0]):
        return f"{folders[0]}/{folders[1]}"
    # ``root`` is one model's folder: <results>/<org>/<name>
    root = root.resolve()
    return f"{root.parent.name}/{root.name}"


def _version_key(data: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(data.get("mteb_version") or "0"))[:3])


def collect(dirs: Iterable[str | Path]) -> Results:
    """Read every MTEB result file under ``dirs``: ``{model: {task_name: result}}``.

    Each DIR is either a results root laid out as MTEB and the KURE repository lay it out,
    ``DIR/<org>/<name>/[<org>__<name>/<revision>/]<Task>.json`` (the model is ``<org>/<name>``), or one
    model's own folder, ``.../<org>/<name>`` (e.g. koe5's ``results/<org>/<name>``): a DIR whose task
    files sit directly in it, or under a folder named as mteb names model folders (``<org>__<name>``,
    ``no_model_name_available``), is taken as the latter, and the model is named after its last two
    path components. ``model_meta.json`` and JSON files that are not result files are skipped.
    Each result is :func:`koe5.evaluation.results.read_task_result`'s dict plus ``_path``, the file it
    came from.
    When one model has two files for a task (two revisions), the one written by the newest mteb is
    kept, with a warning.
    """
    results: Results = {}
    for root in map(Path, dirs):
        if not root.is_dir():
            raise InputError(f"{root}: not a folder of MTEB result files")
        for file in sorted(root.rglob("*.json")):
            if file.name == "model_meta.json":
                continue
            try:
                data = read_task_result(file)
            except InputError:
                raw = _try_json(file)
                if isinstance(raw, dict) and ("task_name" in raw or "scores" in raw):
                    raise
                warnings.warn(f"{file}: not an MTEB result file, skipped", stacklevel=2)
                continue
            model, task = _model_of(file, root), data["task_name"]
            data["_path"] = str(file)
            old = results.setdefault(model, {}).get(task)
            if old is not None:
                keep = data if _version_key(data) > _version_key(old) else old
                warnings.warn(
                    f"{model}: two results for {task} ({old['_path']}, {file}); using {keep['_path']}",
                    stacklevel=2,
                )
                data = keep
            results[model][task] = data
    return results


def _try_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- aggregation --------------------------------------------------------------------------------


def _entries(result: Mapping[str, Any], subset: str | None) -> list[Mapping[str, Any]]:
    """The chosen subset's entry in every split of one result."""
    task = result["task_name"]
    wanted = subset or KOREAN_SUBSETS.get(task)
    out = []
    for split, entries in result["scores"].items():
        names = [e["hf_subset"] for e in entries]
        if wanted is None:
            if len(entries) != 1:
                raise InputError(
                    f"{result.get('_path', task)}: {task} has subsets {names}; say which one to use"
                )
            out.append(entries[0])
        elif wanted in names:
            out.append(entries[names.index(wanted)])
        else:
            where = result.get("_path", task)
            raise InputError(f"{where}: split {split!r} has no subset {wanted!r} (it has {names})")
    return out


def task_metric(result: Mapping[str, Any], metric: str, *, subset: str | None = None) -> float:
    """One task's ``metric`` (an MTEB key such as ``ndcg_at_10``), averaged over the task's splits.

    ``f1_at_k`` is 2PR/(P+R) of the split-averaged ``precision_at_k`` and ``recall_at_k``.

    >>> dev = {"hf_subset": "default", "recall_at_1": 0.5, "precision_at_1": 1.0}
    >>> test = {"hf_subset": "default", "recall_at_1": 0.7, "precision_at_1": 1.0}
    >>> r = {"task_name": "T", "scores": {"dev": [dev], "test": [test]}}
    >>> round(task_metric(r, "recall_at_1"), 6), round(task_metric(r, "f1_at_1"), 6)
    (0.6, 0.75)
    """
    f1 = re.fullmatch(r"f1_at_(\d+)", metric)
    if f1:
        p = task_metric(result, f"precision_at_{f1.group(1)}", subset=subset)
        r = task_metric(result, f"recall_at_{f1.group(1)}", subset=subset)
        return 2 * p * r / (p + r) if p + r > 0 else 0.0
    values = []
    for entry in _entries(result, subset):
        value = entry.get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            where = result.get("_path", result["task_name"])
            raise InputError(f"{where}: {entry['hf_subset']} has no usable {metric!r} (found {value!r})")
        values.append(float(value))
    return sum(values) / len(values)


def _complete(results: Results, tasks: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The models that have every task; a warning for each one that does not."""
    keep = {}
    for model in sorted(results):
        missing = [t for t in tasks if t not in results[model]]
        if missing:
            msg = f"{model}: no result for {', '.join(missing)}; left out of the averages"
            warnings.warn(msg, stacklevel=3)
        else:
            keep[model] = results[model]
    return keep


def average_table(
    results: Results,
    k: int,
    *,
    tasks: Sequence[str] | None = None,
    subsets: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{"model", "recall", "precision", "ndcg", "f1"}`` of mean scores at ``k``, best NDCG first."""
    tasks = list(tasks or KURE_TASKS)
    subsets = subsets or {}
    rows = []
    for model, by_task in _complete(results, tasks).items():
        row: dict[str, Any] = {"model": model}
        for col in COLUMNS:
            vals = [task_metric(by_task[t], f"{col}_at_{k}", subset=subsets.get(t)) for t in tasks]
            row[col] = sum(vals) / len(vals)
        rows.append(row)
    rows.sort(key=lambda r: (-r["ndcg"], r["model"]))
    return rows


def task_table(
    results: Results,
    metric: str = "ndcg_at_10",
    *,
    tasks: Sequence[str] | None = None,
    subsets: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{"model", <task>: value or None, ..., "average": value or None}``, best average first.

    A model missing a task keeps its row (the task's cell is ``None``) but gets no average.
    """
    tasks = list(tasks or KURE_TASKS)
    subsets = subsets or {}
    complete = _complete(results, tasks)
    rows = []
    for model in sorted(results):
        row: dict[str, Any] = {"model": model}
        for t in tasks:
            res = results[model].get(t)
            row[t] = None if res is None else task_metric(res, metric, subset=subsets.get(t))
        row["average"] = sum(row[t] for t in tasks) / len(tasks) if model in complete else None
        rows.append(row)
    rows.sort(key=lambda r: (r["average"] is None, -(r["average"] or 0.0), r["model"]))
    return rows


# --- rendering ----------------------------------------------------------------------------------


def _fmt(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def _metric_title(metric: str) -> str:
    m = re.fullmatch(r"([a-z0-9]+)_at_(\d+)", metric)
    return f"{TITLES.get(m.group(1), m.group(1))}@{m.group(2)}" if m else metric


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render(
    dirs: Iterable[str | Path],
    fmt: str = "markdown",
    ks: Sequence[int] = LEADERBOARD_KS,
    tasks: Sequence[str] | None = None,
    *,
    subsets: Mapping[str, str] | None = None,
    per_task: str | None = None,
    decimals: int = 5,
) -> str:
    """The leaderboard of the result files under ``dirs`` as Markdown, CSV or JSON text.

    By default one table per k in ``ks`` (a row per model: mean Recall, Precision, NDCG, F1 over
    ``tasks``, default :data:`KURE_TASKS`). With ``per_task`` set to a metric (e.g. ``"ndcg_at_10"``)
    it is instead one table of that metric per task, with the models' averages. ``subsets`` maps a
    task to the subset to read instead of its Korean one. Values are rounded to ``decimals``.
    """
    dirs = list(dirs)
    results = collect(dirs)
    if not results:
        raise InputError(f"no MTEB result files under {', '.join(map(str, dirs))}")
    return render_results(results, fmt, ks, tasks, subsets=subsets, per_task=per_task, decimals=decimals)


def render_results(
    results: Results,
    fmt: str = "markdown",
    ks: Sequence[int] = LEADERBOARD_KS,
    tasks: Sequence[str] | None = None,
    *,
    subsets: Mapping[str, str] | None = None,
    per_task: str | None = None,
    decimals: int = 5,
) -> str:
    """:func:`render` for results already in memory (``{model: {task: result}}``)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    tasks = list(tasks or KURE_TASKS)
    if per_task:
        rows = task_table(results, per_task, tasks=tasks, subsets=subsets)
        return _render_per_task(rows, per_task, tasks, fmt, decimals)
    tables = {k: average_table(results, k, tasks=tasks, subsets=subsets) for k in ks}
    if fmt == "json":
        doc = {
            "tasks": tasks,
            "top_k": {
                str(k): [{"model": r["model"], **{c: round(r[c], decimals) for c in COLUMNS}} for r in rows]
                for k, rows in tables.items()
            },
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["top_k", "model", *COLUMNS])
        for k, rows in tables.items():
            for r in rows:
                writer.writerow([k, r["model"], *(_fmt(r[c], decimals) for c in COLUMNS)])
        return out.getvalue()
    lines = [f"Mean over {len(tasks)} tasks: {', '.join(tasks)}."]
    for k, rows in tables.items():
        header = ["Model", *(f"Average {TITLES[c]}@{k}" for c in COLUMNS)]
        lines += ["", f"### Top-k {k}", ""]
        lines += _markdown(header, ([r["model"], *(_fmt(r[c], decimals) for c in COLUMNS)] for r in rows))
    return "\n".join(lines) + "\n"


def _render_per_task(
    rows: list[dict[str, Any]], metric: str, tasks: list[str], fmt: str, decimals: int
) -> str:
    if fmt == "json":
        doc = {
            "metric": metric,
            "tasks": tasks,
            "rows": [
                {k: round(v, decimals) if isinstance(v, float) else v for k, v in r.items()} for r in rows
            ],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    cells = [[r["model"], *(_fmt(r[t], decimals) for t in tasks), _fmt(r["average"], decimals)] for r in rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["model", *tasks, "average"])
        writer.writerows(cells)
        return out.getvalue()
    lines = [f"### {_metric_title(metric)} per task", ""]
    lines += _markdown(["Model", *tasks, "Average"], cells)
    return "\n".join(lines) + "\n"
