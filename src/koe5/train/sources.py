"""Builders for the Korean training material: published files → (query, positive[, negative]) rows.

Each source is read from its folder as published (``../shared/data/train`` in the koe5 workspace,
``$KOE5_TRAIN_DATA``, or any folder with the same layout) and converted in code; nothing is copied
into the package: only this builder reads these files, and the rows it writes name their source, so
each licence travels with the data it covers (see :data:`SOURCES` and the ``SOURCES.md`` written
beside the output).

Every row gets a ``group``: rows of one group (a Welfare-QA programme, a paraKQC paraphrase set, one
StrategyQA term, one NLI premise) are each other's likely false negatives and must not share a batch
(:class:`koe5.train.sampler.GroupBatchSampler`). Rows whose query or passage is a query or document of
an evaluation task are dropped (:func:`evaluation_texts`).

>>> rows, report = build_rows(None, {"strategyqa_ko": 1, "welfare_qa": 0.5})  # doctest: +SKIP
>>> rows[0]                                                                 # doctest: +SKIP
{'query': '…', 'positive': '…', 'group': 'strategyqa_ko:나트륨', 'source': 'strategyqa_ko'}
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from koe5 import env
from koe5.errors import InputError

log = logging.getLogger("koe5")

Row = dict[str, str]
ENV = env.TRAIN_DATA.name


@dataclass(frozen=True)
class Source:
    """One published data set: its folder, files, origin, licence and how it becomes rows."""

    name: str
    folder: str
    files: tuple[str, ...]
    origin: str
    licence: str
    shape: str
    #: the published files (in ``files``' order) → rows with ``query``, ``positive``, ``group``
    #: and, where the data has one, ``negative``
    read: Callable[[Sequence[Path]], Iterable[Row]]


def default_source_dir() -> Path | None:
    """``$KOE5_TRAIN_DATA``, else ``../shared/data/train`` beside a source checkout of koe5."""
    chosen = env.path(env.TRAIN_DATA)
    if chosen is not None:
        return chosen
    repo = Path(__file__).resolve().parents[3]  # src/koe5/train/sources.py -> the repository
    candidate = repo.parent / "shared" / "data" / "train"
    return candidate if candidate.is_dir() else None


def _files(root: Path, source: Source) -> list[Path]:
    paths = [root / source.folder / name for name in source.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{source.name}: missing {', '.join(missing)} (is {root} the training-data folder?)")
    return paths


def _csv_rows(path: Path, delimiter: str = ",") -> Iterable[dict[str, str]]:
    # in these TSV files a quote is text, not CSV quoting
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from csv.DictReader(handle, delimiter=delimiter, quoting=quoting)


def _clean(text: str | None) -> str:
    return (text or "").strip()


# --- one reader per source ----------------------------------------------------------------------

_QUESTION = re.compile(r"질문\s*[:：]\s*(.*?)\s*[,，]?\s*(?:답변|대답|답)\s*[:：]", re.S)
_TERM = re.compile(r"용어\s*[:：]\s*(.*?)\s*[,，]\s*설명")
_FACT_LABEL = re.compile(r"사실\s*\d+\s*[:：]\s*")


def _strategyqa(paths: Sequence[Path]) -> Iterable[Row]:
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    for item in data["Instances"]:
        question = _QUESTION.search(item["input"])
        facts = item["output"][0] if item.get("output") else ""
        if not question:
            continue  # a few instances are free text without the 질문/답 fields
        term = _TERM.search(item["input"])
        positive = " ".join(_FACT_LABEL.sub("", facts).split())
        group = term.group(1).strip() if term else item["input"]
        yield {"query": question.group(1).strip(), "positive": positive, "group": group}


def _welfare(paths: Sequence[Path]) -> Iterable[Row]:
    for row in _csv_rows(paths[0]):
        yield {
            "query": _clean(row["Question"]),
            "positive": _clean(row["Answer"]),
            "group": _clean(row["Documents"]),
        }


def _chatbot(paths: Sequence[Path]) -> Iterable[Row]:
    for row in _csv_rows(paths[0]):
        answer = _clean(row["A"])
        yield {"query": _clean(row["Q"]), "positive": answer, "group": answer}


def _question_pair(paths: Sequence[Path]) -> Iterable[Row]:
    for path in paths:
        for row in _csv_rows(path):
            if _clean(row.get("is_duplicate")) == "0":  # this data set's 0 means "the same question"
                q1, q2 = _clean(row["question1"]), _clean(row["question2"])
                yield {"query": q1, "positive": q2, "group": q1}


def _parakqc(paths: Sequence[Path]) -> Iterable[Row]:
    lines = [ln.split("\t") for ln in paths[0].read_text(encoding="utf-8").splitlines() if ln.strip()]
    texts = [parts[-1].strip() for parts in lines]
    for start in range(0, len(texts) - 1, 10):  # sets of ten consecutive paraphrases
        members = texts[start : start + 10]
        for i in range(0, len(members) - 1, 2):
            yield {"query": members[i], "positive": members[i + 1], "group": f"set{start // 10}"}


def _nli(pairs: Iterable[tuple[str, str, str]]) -> Iterable[Row]:
    """(premise, hypothesis, label) → premise → entailment with each contradiction as hard negative."""
    by_premise: dict[str, dict[str, list[str]]] = {}
    for premise, hypothesis, label in pairs:
        by_premise.setdefault(premise, {}).setdefault(label, []).append(hypothesis)
    for premise, labels in by_premise.items():
        for positive in labels.get("entailment", []):
            for negative in labels.get("contradiction", [])[:1]:
                yield {"query": premise, "positive": positive, "negative": negative, "group": premise}


def _kornli(paths: Sequence[Path]) -> Iterable[Row]:
    def pairs():
        for path in paths:
            for row in _csv_rows(path, "\t"):
                yield _clean(row["sentence1"]), _clean(row["sentence2"]), _clean(row["gold_label"])

    yield from _nli(pairs())


def _klue_nli(paths: Sequence[Path]) -> Iterable[Row]:
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    yield from _nli((_clean(x["premise"]), _clean(x["hypothesis"]), x["gold_label"]) for x in data)


def _sts(pairs: Iterable[tuple[str, str, float]]) -> Iterable[Row]:
    for first, second, score in pairs:
        if score >= 4.0:
            yield {"query": first, "positive": second, "group": first}


def _korsts(paths: Sequence[Path]) -> Iterable[Row]:
    def pairs():
        for path in paths:
            with path.open(encoding="utf-8") as handle:  # quotes are text here, not CSV quoting
                next(handle)
                for line in handle:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) >= 7:
                        yield _clean(parts[5]), _clean(parts[6]), float(parts[4])

    yield from _sts(pairs())


def _klue_sts(paths: Sequence[Path]) -> Iterable[Row]:
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    yield from _sts((_clean(x["sentence1"]), _clean(x["sentence2"]), x["labels"]["label"]) for x in data)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="strategyqa_ko",
            folder="strategyqa_ko",
            files=("task169_strategyqa_sentence_generation_ko.json",),
            origin="sionic-ai/Data_StrategyQA, task169 (Korean StrategyQA)",
            licence="MIT",
            shape="question → the facts that answer it; grouped by term",
            read=_strategyqa,
        ),
        Source(
            name="welfare_qa",
            folder="welfare_qa",
            files=("QA_total.csv",),
            origin="ash-hun/Welfare-QA, QA_total.csv",
            licence="MIT",
            shape="question → answer; grouped by programme (~20 paraphrased questions each)",
            read=_welfare,
        ),
        Source(
            name="chatbot",
            folder="chatbot",
            files=("ChatbotData.csv",),
            origin="songys/Chatbot_data, ChatbotData.csv",
            licence="MIT",
            shape="chat message → reply; grouped by reply",
            read=_chatbot,
        ),
        Source(
            name="question_pair",
            folder="question_pair",
            files=("kor_pair_train.csv", "kor_Pair_test.csv"),
            origin="songys/Question_pair",
            licence="MIT",
            shape="question → the same question reworded (label 0)",
            read=_question_pair,
        ),
        Source(
            name="parakqc",
            folder="parakqc",
            files=("paraKQC_v1.txt",),
            origin="warnikchow/paraKQC, data/paraKQC_v1.txt",
            licence="CC BY-SA 4.0",
            shape="paraphrase → paraphrase within a set of ten; grouped by set",
            read=_parakqc,
        ),
        Source(
            name="kornli",
            folder="kornlu",
            files=("xnli.dev.ko.tsv", "xnli.test.ko.tsv"),
            origin="kakaobrain/KorNLUDatasets, KorNLI xnli.{dev,test}.ko.tsv",
            licence="CC BY-SA 4.0",
            shape="premise → entailment, contradiction as hard negative; grouped by premise",
            read=_kornli,
        ),
        Source(
            name="korsts",
            folder="kornlu",
            files=("sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"),
            origin="kakaobrain/KorNLUDatasets, KorSTS sts-*.tsv",
            licence="CC BY-SA 4.0",
            shape="sentence → sentence of similarity ≥ 4.0 of 5",
            read=_korsts,
        ),
        Source(
            name="klue_nli",
            folder="klue",
            files=("klue-nli-v1.1_dev.json",),
            origin="KLUE-benchmark/KLUE, klue-nli-v1.1_dev.json",
            licence="CC BY-SA 4.0",
            shape="premise → entailment, contradiction as hard negative; grouped by premise",
            read=_klue_nli,
        ),
        Source(
            name="klue_sts",
            folder="klue",
            files=("klue-sts-v1.1_dev.json",),
            origin="KLUE-benchmark/KLUE, klue-sts-v1.1_dev.json",
            licence="CC BY-SA 4.0",
            shape="sentence → sentence of similarity ≥ 4.0 of 5",
            read=_klue_sts,
        ),
    )
}


def read_source(name: str, root: str | Path) -> list[Row]:
    """All rows of one source, with ``source`` and a source-qualified ``group``; empty texts dropped."""
    if name not in SOURCES:
        raise InputError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    rows = []
    source = SOURCES[name]
    for row in source.read(_files(Path(root), source)):
        if not row["query"] or not row["positive"] or row["query"] == row["positive"]:
            continue
        if "negative" in row and (not row["negative"] or row["negative"] in (row["query"], row["positive"])):
            del row["negative"]
        row["group"] = f"{name}:{row['group']}"
        row["source"] = name
        rows.append(row)
    return rows


# --- evaluation data stays out ------------------------------------------------------------------


def normalize(text: str) -> str:
    """The form texts are compared in: NFKC, whitespace collapsed, case folded."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def evaluation_texts(tasks: Sequence[str] | None = None) -> frozenset[str]:
    """Normalised queries and documents of the evaluation tasks (default: koe5's bundled suite)."""
    from koe5.tasks import BUNDLED

    return _evaluation_texts(tuple(tasks or BUNDLED))


@functools.cache
def _evaluation_texts(tasks: tuple[str, ...]) -> frozenset[str]:
    # loading the suite takes seconds; a run asks for it several times (build_rows, the dev split)
    from koe5.tasks import get_task

    texts: set[str] = set()
    for name in tasks:
        task = get_task(name)
        for split in task.splits:
            data = task.load(split)
            texts.update(normalize(q) for q in data.queries.values())
            for doc in data.corpus.values():
                texts.add(normalize(data.doc_text(doc)))
                texts.add(normalize(doc.get("text", "")))
    texts.discard("")
    return frozenset(texts)


# --- the mix ------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """Per source: rows read, rows dropped for overlapping the evaluation data, rows kept after weighting."""

    read: dict[str, int] = field(default_factory=dict)
    overlapping: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{name}: {self.read[name]} rows, {self.overlapping[name]} dropped (in the evaluation data), "
            f"{self.kept[name]} kept"
            for name in self.read
        ]


def _weighted(rows: list[Row], weight: float, rng: random.Random) -> list[Row]:
    """``weight`` copies of the rows: whole copies, then a random part for the fraction."""
    whole, fraction = int(weight), weight - int(weight)
    out = rows * whole
    if fraction > 0:
        out += rng.sample(rows, round(fraction * len(rows)))
    return out


def build_rows(
    root: str | Path | None,
    weights: Mapping[str, float],
    *,
    seed: int = 42,
    exclude: set[str] | None = None,
) -> tuple[list[Row], BuildReport]:
    """Rows of the weighted mix of sources, shuffled; ``weights``: source name → multiplier (0.5 keeps
    a random half, 2 repeats every row). Rows with any text in ``exclude`` (default: the bundled
    evaluation tasks' texts) are dropped first."""
    if root is None:
        root = default_source_dir()
        if root is None:
            raise InputError(
                f"no training-data folder: pass one (or set ${ENV}); see MANIFEST.md of shared/data"
            )
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    for name, weight in weights.items():
        if name not in SOURCES:
            raise InputError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
        if weight < 0:
            raise InputError(f"{name}: weight must be >= 0, got {weight}")
    exclude = evaluation_texts() if exclude is None else exclude
    rng = random.Random(seed)
    report = BuildReport()
    out: list[Row] = []
    for name, weight in weights.items():
        if weight == 0:
            continue
        rows = read_source(name, root)
        clean = [
            r
            for r in rows
            if not any(normalize(r[k]) in exclude for k in ("query", "positive", "negative") if k in r)
        ]
        kept = _weighted(clean, weight, rng)
        report.read[name], report.overlapping[name], report.kept[name] = (
            len(rows),
            len(rows) - len(clean),
            len(kept),
        )
        out.extend(kept)
    rng.shuffle(out)
    return out, report


def sources_markdown(report: BuildReport, weights: Mapping[str, float]) -> str:
    """A ``SOURCES.md`` for built data: each source's origin, licence, weight and counts."""
    lines = [
        "# Sources of this training data",
        "",
        "Built by `koe5 build-data` from the files as published; each row names its `source`.",
        "",
        "| source | origin | licence | weight | rows read | dropped (evaluation overlap) | rows kept |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name in report.read:
        s = SOURCES[name]
        lines.append(
            f"| {name} | {s.origin} | {s.licence} | {weights[name]} | {report.read[name]} | "
            f"{report.overlapping[name]} | {report.kept[name]} |"
        )
    lines += ["", "CC BY-SA 4.0 rows stay under CC BY-SA 4.0 (share alike, attribute the origin above)."]
    return "\n".join(lines) + "\n"
