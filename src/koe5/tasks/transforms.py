"""Turning the layouts MTEB's Korean tasks use on the Hugging Face hub into corpus, queries and qrels.

Each function takes tables, not a connection: a ``datasets.Dataset`` or a plain ``{column: values}``
dict, reached through ``configs`` (config name -> split name -> table; a ``datasets.DatasetDict`` per
config, or ``koe5.tasks.hub.HubDataset``). The same code therefore runs on the hub, on local files and
on the bundled copies. The semantics follow mteb 2.x (``mteb/abstasks/retrieval_dataset_loaders.py``
and the task files), whose dataset revisions koe5 pins.

>>> configs = {"corpus": {"corpus": {"_id": ["d1"], "text": ["본문"]}},
...            "queries": {"queries": {"_id": ["q1"], "text": ["질문"]}},
...            "default": {"test": {"query-id": ["q1"], "corpus-id": ["d1"], "score": [1]}}}
>>> from_beir_configs(configs, "test", None, "example")[:3]
({'d1': {'title': '', 'text': '본문'}}, {'q1': '질문'}, [('q1', 'd1', 1)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from koe5.errors import InputError
from koe5.tasks.readers import put_unique

Table = Any  # datasets.Dataset or dict[str, list]: anything indexable by column name
NO_PAIR = "rows without a question or an answer"
Parts = tuple[dict[str, dict[str, str]], dict[str, str], list[tuple[str, str, int]], dict[str, int]]


def columns(table: Table) -> list[str]:
    """The column names of a ``datasets.Dataset`` or a ``{column: values}`` dict."""
    names = getattr(table, "column_names", None)
    return list(names) if names is not None else list(table)


def column(table: Table, name: str, where: str) -> Sequence[Any]:
    """One column of a table, or an ``InputError`` naming the table and the missing column."""
    if name not in columns(table):
        raise InputError(f"{where}: no column {name!r} (columns: {', '.join(columns(table))})")
    return table[name]


def config(configs: Mapping[str, Mapping[str, Table]], name: str, origin: str) -> Mapping[str, Table]:
    """One config of a dataset, or an ``InputError`` listing the configs it has."""
    if name not in configs:
        raise InputError(f"{origin}: no config {name!r} (configs: {', '.join(configs)})")
    return configs[name]


def pick_split(splits: Mapping[str, Table], split: str, where: str) -> Table:
    """``split`` if the config has it, else its only split (a corpus is often stored as one split)."""
    if split in splits:
        return splits[split]
    if len(splits) == 1:
        return next(iter(splits.values()))
    raise InputError(f"{where}: no split {split!r} (splits: {', '.join(splits)})")


def _string(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{where}: {name} must be a string, got {type(value).__name__}")


def from_beir_configs(
    configs: Mapping[str, Mapping[str, Table]], split: str, subset: str | None, origin: str
) -> Parts:
    """Read the BEIR layout: configs ``corpus``, ``queries`` and ``default`` (or ``qrels``), or
    ``<subset>-corpus``, ``<subset>-queries``, ``<subset>-qrels`` for a language subset.

    Used by Ko-StrategyQA, AutoRAGRetrieval, SQuADKorV1Retrieval, LawIRKo, MIRACLRetrieval (``ko``),
    MrTidyRetrieval (``korean``; its corpus is a single ``train`` split), MultiLongDocRetrieval (``ko``)
    and XPQARetrieval (``kor-kor`` ...). Queries without qrels in ``split`` are dropped by ``assemble``.
    """
    prefix = f"{subset}-" if subset else ""
    if subset:
        qrels_config = f"{subset}-qrels"
    else:
        qrels_config = "default" if "default" in configs or "qrels" not in configs else "qrels"

    where = f"{origin} {qrels_config}[{split}]"
    table = pick_split(config(configs, qrels_config, origin), split, where)
    query_ids, doc_ids = column(table, "query-id", where), column(table, "corpus-id", where)
    scores = column(table, "score", where)
    qrels = []
    for row, (query_id, doc_id, score) in enumerate(zip(query_ids, doc_ids, scores, strict=True)):
        if not isinstance(score, int | float) or score != int(score):
            raise InputError(f"{where} row {row}: score {score!r} is not a whole number")
        qrels.append(
            (
                _string(query_id, f"{where} row {row}", "query-id"),
                _string(doc_id, f"{where} row {row}", "corpus-id"),
                int(score),
            )
        )

    where = f"{origin} {prefix}corpus[{split}]"
    table = pick_split(config(configs, f"{prefix}corpus", origin), split, where)
    ids = column(table, "_id" if "_id" in columns(table) else "id", where)
    texts = column(table, "text", where)
    titles = column(table, "title", where) if "title" in columns(table) else [""] * len(texts)
    corpus: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for row, (doc_id, title, text) in enumerate(zip(ids, titles, texts, strict=True)):
        at = f"{where} row {row}"
        title = "" if title is None else _string(title, at, "title")
        doc = {"title": title, "text": _string(text, at, "text")}
        put_unique(corpus, _string(doc_id, at, "_id"), doc, "document", at, seen)

    where = f"{origin} {prefix}queries[{split}]"
    table = pick_split(config(configs, f"{prefix}queries", origin), split, where)
    ids = column(table, "_id" if "_id" in columns(table) else "id", where)
    queries: dict[str, str] = {}
    seen = {}
    for row, (query_id, text) in enumerate(zip(ids, column(table, "text", where), strict=True)):
        at = f"{where} row {row}"
        put_unique(queries, _string(query_id, at, "_id"), _string(text, at, "text"), "query", at, seen)
    return corpus, queries, qrels, {}


def from_belebele_configs(
    configs: Mapping[str, Mapping[str, Table]], split: str, subset: str, origin: str
) -> Parts:
    """Belebele as MTEB builds it: subset ``<passage language>-<question language>``, each a config.

    A document is the passage of each distinct ``link`` (ids ``C0, C1, ...`` in first-seen order,
    title empty); a query is each distinct ``question`` (``Q0, Q1, ...``); each question row makes its
    passage relevant (score 1).
    """
    passage_language, _, question_language = subset.partition("-")
    passages = pick_split(
        config(configs, passage_language, origin), split, f"{origin} {passage_language}[{split}]"
    )
    questions = pick_split(
        config(configs, question_language, origin), split, f"{origin} {question_language}[{split}]"
    )
    return belebele(passages, questions, origin)


def belebele(passages: Table, questions: Table, origin: str) -> Parts:
    """Belebele retrieval view from a passage-language table and a question-language table."""
    link_ids: dict[str, str] = {}
    corpus: dict[str, dict[str, str]] = {}
    for link, passage in zip(
        column(passages, "link", origin), column(passages, "flores_passage", origin), strict=True
    ):
        if link not in link_ids:
            link_ids[link] = f"C{len(link_ids)}"
            corpus[link_ids[link]] = {"title": "", "text": passage}
    query_ids: dict[str, str] = {}
    qrels = []
    for question, link in zip(
        column(questions, "question", origin), column(questions, "link", origin), strict=True
    ):
        query_id = query_ids.setdefault(question, f"Q{len(query_ids)}")
        # a link missing from the passage table becomes an unknown document, counted by assemble
        qrels.append((query_id, link_ids.get(link, f"link:{link}"), 1))
    return corpus, {qid: question for question, qid in query_ids.items()}, qrels, {}


def from_publichealthqa_configs(
    configs: Mapping[str, Mapping[str, Table]], split: str, subset: str, origin: str
) -> Parts:
    """PublicHealthQA as MTEB builds it from ``xhluca/publichealth-qa``: config = language.

    Each distinct ``question`` is a query (``Q0, Q1, ...``), each distinct ``answer`` a document
    (``D0, D1, ...``, no title), and each row makes its answer relevant; rows missing either are skipped.
    """
    table = pick_split(config(configs, subset, origin), split, f"{origin} {subset}[{split}]")
    rows = zip(column(table, "question", origin), column(table, "answer", origin), strict=True)
    return question_answer_pairs(rows)


def question_answer_pairs(rows: Iterable[tuple[str | None, str | None]]) -> Parts:
    """Queries, documents and qrels from ``(question, answer)`` rows, ids in first-seen order."""
    query_ids: dict[str, str] = {}
    doc_ids: dict[str, str] = {}
    qrels = []
    skipped: dict[str, int] = {}
    for question, answer in rows:
        if question is None or answer is None:
            skipped[NO_PAIR] = skipped.get(NO_PAIR, 0) + 1
            continue
        query_id = query_ids.setdefault(question, f"Q{len(query_ids)}")
        doc_id = doc_ids.setdefault(answer, f"D{len(doc_ids)}")
        qrels.append((query_id, doc_id, 1))
    corpus = {doc_id: {"title": "", "text": answer} for answer, doc_id in doc_ids.items()}
    return corpus, {qid: question for question, qid in query_ids.items()}, qrels, skipped


SHAPES = {
    "beir": from_beir_configs,
    "belebele": from_belebele_configs,
    "publichealthqa": from_publichealthqa_configs,
}
