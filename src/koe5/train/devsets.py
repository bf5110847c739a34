"""Dev retrieval tasks made from the Korean training material, for choosing settings.

koe5's settings that are chosen by measurement (the hybrid fusion, the reranker recipe) are chosen on
these tasks, never on the bundled benchmark tasks, which stay the test. Each training source of the
question → passage or question → question shape becomes one task: some of its groups (a Welfare-QA
programme, a paraKQC paraphrase set, a StrategyQA term) give one query each, every positive of that
group is relevant, and the corpus is the source's distinct positives (the held-out groups' and, as
distractors, others'). Rows whose texts are in the bundled tasks are left out, as ``koe5 build-data``
leaves them out.

The held-out groups are a pure function of the seed: :func:`dev_groups` names them, so a training run
(``koe5 train-reranker``) can keep them out of its own data.

Example::

    from koe5.train.devsets import dev_tasks

    tasks = dev_tasks()                      # ../shared/data/train or $KOE5_TRAIN_DATA
    {name: (len(t.queries), len(t.corpus)) for name, t in tasks.items()}
    # {'strategyqa_ko': (300, 2000), 'welfare_qa': (300, 2000), ...}
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from koe5.errors import InputError
from koe5.tasks.data import RetrievalData, assemble
from koe5.train.sources import Row, default_source_dir, evaluation_texts, normalize, read_source

#: Sources whose rows are retrieval-shaped (a question and a passage or a paraphrase that answers it).
#: The NLI/STS sources are sentence similarity, not retrieval, and stay out.
DEV_SOURCES = ("strategyqa_ko", "welfare_qa", "chatbot", "question_pair", "parakqc")
#: Sources whose groups are topics with several passages: each also gives a task of whole documents
#: (and, asked for, one of pages).
DOCUMENT_SOURCES = ("strategyqa_ko", "welfare_qa")
#: A page of the ``<source>/pages`` tasks holds passages until it has this many characters: about a
#: printed or scanned page of a report.
PAGE_CHARS = 800
#: The ``<task>/small`` tasks hold this many documents: no more than the hybrid's depth, so each
#: side's list holds every document it matches (a FAQ, a manual's sections, a small knowledge base).
SMALL_DOCS = 100
#: ...and only where at least this many queries fit (fewer tell settings apart by chance).
SMALL_MIN_QUERIES = 50


def _grouped(name: str, root: Path, exclude: set[str]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in read_source(name, root):
        if normalize(row["query"]) in exclude or normalize(row["positive"]) in exclude:
            continue
        groups[row["group"]].append(row)
    return dict(sorted(groups.items()))


def _held_out(groups: dict[str, list[Row]], queries: int, seed: int, name: str) -> list[str]:
    rng = random.Random(f"{seed}:{name}")  # per source, so adding a source moves no other's split
    names = list(groups)
    rng.shuffle(names)
    return sorted(names[:queries])


def dev_groups(
    root: str | Path | None = None,
    *,
    sources: Sequence[str] = DEV_SOURCES,
    queries: int = 300,
    seed: int = 42,
) -> set[str]:
    """The groups :func:`dev_tasks` holds out with the same arguments (source-qualified names)."""
    root = _root(root)
    exclude = evaluation_texts()
    held: set[str] = set()
    for name in sources:
        held.update(_held_out(_grouped(name, root, exclude), queries, seed, name))
    return held


def dev_tasks(
    root: str | Path | None = None,
    *,
    sources: Sequence[str] = DEV_SOURCES,
    queries: int = 300,
    corpus: int = 2000,
    seed: int = 42,
    pages: bool = False,
    small: bool = False,
) -> dict[str, RetrievalData]:
    """One task per source (named after it): ``queries`` held-out groups, a corpus of at most
    ``corpus`` distinct positives (all of the held-out groups', then others' as distractors).

    For the sources in :data:`DOCUMENT_SOURCES` also a task ``<source>/documents`` over the same
    held-out groups, where each group's positives joined are one document: longer texts that share
    more words with the query, the shape of manuals and wiki paragraphs, where BM25 is strong.

    ``pages``: for those sources also a task ``<source>/pages``: the source's passages in a seeded
    order, packed into pages of :data:`PAGE_CHARS` characters, so a page mixes unrelated topics and a
    question asks about one passage of it, the shape of OCR'd reports and PDF pages. A page's
    embedding is an average of topics, while BM25 still finds the passage's words: BM25 leads the
    model by far there, as on no other dev task.

    ``small``: for every task also ``<task>/small``, the same task in a collection of
    :data:`SMALL_DOCS` documents: the relevant documents of as many of its queries as fit (in a
    seeded order), the rest distractors; kept where at least :data:`SMALL_MIN_QUERIES` queries fit.
    A collection no larger than the fusion's depth changes the lists' score distributions: a fusion
    that never loses on 2,000 documents can lose on 100."""
    root = _root(root)
    exclude = evaluation_texts()
    tasks: dict[str, RetrievalData] = {}
    for name in sources:
        groups = _grouped(name, root, exclude)
        if not groups:
            raise InputError(f"{root}: source {name} has no rows outside the evaluation tasks")
        held = _held_out(groups, queries, seed, name)
        rng = random.Random(f"{seed}:{name}:rows")
        asked = {group: rng.choice(groups[group])["query"] for group in held}
        origin = f"dev split of {name} (seed {seed})"
        tasks[name] = _passage_task(groups, asked, corpus, random.Random(f"{seed}:{name}:docs"), origin)
        if name in DOCUMENT_SOURCES:
            tasks[f"{name}/documents"] = _document_task(groups, asked, corpus, origin)
            if pages:
                page_rng = random.Random(f"{seed}:{name}:pages")
                paged = _page_task(groups, asked, corpus, page_rng, origin)
                if paged is not None:  # a source too small to fill a page that a query asks about
                    tasks[f"{name}/pages"] = paged
    if small:
        for name, task in list(tasks.items()):
            cut = _small_task(task, random.Random(f"{seed}:{name}:small"), f"{name}, {SMALL_DOCS} documents")
            if cut is not None:
                tasks[f"{name}/small"] = cut
    return tasks


def _passage_task(
    groups: dict[str, list[Row]], asked: dict[str, str], corpus: int, rng: random.Random, origin: str
) -> RetrievalData:
    doc_ids: dict[str, str] = {}
    query_texts: dict[str, str] = {}
    qrels: list[tuple[str, str, int]] = []
    for group, query in asked.items():
        # paraphrase sets: the query is also some row's positive; it must not find itself
        relevant = [r["positive"] for r in groups[group] if r["positive"] != query]
        if not relevant:
            continue
        qid = f"q{len(query_texts)}"
        query_texts[qid] = query
        for text in relevant:
            qrels.append((qid, doc_ids.setdefault(text, f"d{len(doc_ids)}"), 1))
    others = {r["positive"] for g, rows in groups.items() if g not in asked for r in rows}
    others = sorted(others - set(query_texts.values()))
    rng.shuffle(others)
    for text in others:
        if len(doc_ids) >= corpus:
            break
        doc_ids.setdefault(text, f"d{len(doc_ids)}")
    return assemble({did: {"text": text} for text, did in doc_ids.items()}, query_texts, qrels, origin=origin)


def _document_task(
    groups: dict[str, list[Row]], asked: dict[str, str], corpus: int, origin: str
) -> RetrievalData:
    names = list(asked) + [g for g in groups if g not in asked]
    docs = {
        f"d{i}": "\n".join(dict.fromkeys(r["positive"] for r in groups[g]))
        for i, g in enumerate(names[:corpus])
    }
    queries = {f"q{i}": query for i, query in enumerate(asked.values())}
    qrels = [(f"q{i}", f"d{i}", 1) for i in range(len(asked))]
    return assemble({d: {"text": t} for d, t in docs.items()}, queries, qrels, origin=origin + ", documents")


def _page_task(
    groups: dict[str, list[Row]], asked: dict[str, str], corpus: int, rng: random.Random, origin: str
) -> RetrievalData | None:
    owner: dict[str, str] = {}  # each distinct passage, and the first group that has it
    for group, rows in groups.items():
        for row in rows:
            owner.setdefault(row["positive"], group)
    held = [text for text, group in owner.items() if group in asked]
    others = [text for text, group in owner.items() if group not in asked]
    rng.shuffle(others)
    pool = held + others
    rng.shuffle(pool)
    pages: list[str] = []
    page: list[str] = []
    where: dict[str, int] = {}  # passage -> its page
    for text in pool:
        page.append(text)
        if sum(map(len, page)) >= PAGE_CHARS:
            where.update(dict.fromkeys(page, len(pages)))
            pages.append("\n".join(page))
            page = []
            if len(pages) >= corpus:
                break
    queries: dict[str, str] = {}
    qrels: list[tuple[str, str, int]] = []
    for group, query in asked.items():
        found = sorted({where[r["positive"]] for r in groups[group] if r["positive"] in where})
        if not found:  # its passages fell beyond the last full page
            continue
        qid = f"q{len(queries)}"
        queries[qid] = query
        qrels.extend((qid, f"d{i}", 1) for i in found)
    if not queries:
        return None
    docs = {f"d{i}": {"text": text} for i, text in enumerate(pages)}
    return assemble(docs, queries, qrels, origin=origin + ", pages")


def _small_task(task: RetrievalData, rng: random.Random, origin: str) -> RetrievalData | None:
    queries = sorted(task.queries)
    rng.shuffle(queries)
    docs: dict[str, None] = {}  # ordered: the relevant documents first, then distractors
    kept: list[str] = []
    for qid in queries:
        new = [d for d, grade in task.qrels[qid].items() if grade > 0 and d not in docs]
        if len(docs) + len(new) <= SMALL_DOCS:
            docs.update(dict.fromkeys(new))
            kept.append(qid)
    if len(kept) < SMALL_MIN_QUERIES:
        return None
    others = [d for d in task.corpus if d not in docs]
    rng.shuffle(others)
    docs.update(dict.fromkeys(others[: SMALL_DOCS - len(docs)]))
    qrels = [(qid, d, grade) for qid in kept for d, grade in task.qrels[qid].items()]
    corpus = {d: task.corpus[d] for d in docs}
    return assemble(corpus, {qid: task.queries[qid] for qid in kept}, qrels, origin=origin)


def _root(root: str | Path | None) -> Path:
    found = Path(root) if root is not None else default_source_dir()
    if found is None or not found.is_dir():
        raise InputError(f"no training-data folder at {found}: pass one or set $KOE5_TRAIN_DATA")
    return found
