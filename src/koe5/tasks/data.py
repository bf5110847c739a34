"""The data a retrieval task loads, and the checks every loader's output goes through.

>>> data = assemble({"d1": {"title": "서울", "text": "한국의 수도"}}, {"q1": "수도는?"}, [("q1", "d1", 1)],
...                 origin="example")
>>> data.doc_text(data.corpus["d1"])
'서울 한국의 수도'
>>> data.qrels
{'q1': {'d1': 1}}
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from koe5.errors import InputError

logger = logging.getLogger(__name__)

DocJoin = Literal["strip", "raw"]

# Reasons for dropping things; the keys of RetrievalData.skipped.
UNKNOWN_QUERY = "qrels naming an unknown query"
UNKNOWN_DOC = "qrels naming an unknown document"
CONFLICTING_QREL = "qrels repeating a pair with another score (last kept)"
NO_QRELS = "queries without qrels"
NO_RELEVANT = "queries whose judgments are all non-relevant"
_SUSPICIOUS = (UNKNOWN_QUERY, UNKNOWN_DOC, CONFLICTING_QREL, NO_RELEVANT)


def doc_text(doc: dict[str, str], join: DocJoin = "strip") -> str:
    """The text MTEB 1.20.1 gives the model for a document ``{"title": ..., "text": ...}``.

    MTEB 1.20.1 has two paths, and which one a task takes decides the text:

    - ``"strip"``: tasks whose loader keeps documents as dicts (Belebele, PublicHealthQA, MIRACL, MrTidy,
      MultiLongDoc, XPQA) reach ``corpus_to_str`` in ``evaluation/evaluators/RetrievalEvaluator.py``:
      ``(title + " " + text).strip()``, or ``text.strip()`` without a title. MTEB 2.x uses this rule for
      every task and for its descriptive statistics.
    - ``"raw"``: tasks on the default loader (``AbsTaskRetrieval.load_data``: AutoRAGRetrieval,
      Ko-StrategyQA) flatten each document to ``title + " " + text`` before the evaluator sees it, and
      ``corpus_to_str`` passes strings through, so the model reads a leading space and unstripped text.

    >>> doc_text({"title": "", "text": " 본문 "}), doc_text({"title": "", "text": " 본문 "}, "raw")
    ('본문', '  본문 ')
    """
    title = doc.get("title") or ""
    if join == "raw":
        return title + " " + doc["text"]
    return (title + " " + doc["text"]).strip() if "title" in doc else doc["text"].strip()


@dataclass
class RetrievalData:
    """Queries, documents and relevance judgments of one task split, as plain dicts.

    ``corpus``: document id -> ``{"title": str, "text": str}``; ``queries``: query id -> text;
    ``qrels``: query id -> {document id: graded relevance}; every query has at least one document with
    relevance > 0, and every id in ``qrels`` is in ``queries`` and ``corpus``. ``skipped`` counts what the
    loader dropped, by reason. ``doc_join`` is the task's MTEB 1.20.1 rule for document text (see
    ``doc_text``).
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    skipped: dict[str, int] = field(default_factory=dict)
    doc_join: DocJoin = "strip"

    def doc_text(self, doc: dict[str, str] | str) -> str:
        """The text the model reads for a document (a corpus entry or its id), by this task's rule."""
        return doc_text(self.corpus[doc] if isinstance(doc, str) else doc, self.doc_join)

    def stats(self) -> dict[str, int]:
        """Counts and character totals, defined as in MTEB's descriptive statistics (``*.stats.json``).

        Document lengths use the ``"strip"`` rule whatever ``doc_join`` is, because MTEB 2.x computed
        the published statistics that way; a relevant document is one with relevance > 0.
        """
        doc_lengths = [len(doc_text(doc)) for doc in self.corpus.values()]
        query_lengths = [len(text) for text in self.queries.values()]
        relevant = [[d for d, score in docs.items() if score > 0] for docs in self.qrels.values()]
        return {
            "num_queries": len(self.queries),
            "num_documents": len(self.corpus),
            "query_chars": sum(query_lengths),
            "document_chars": sum(doc_lengths),
            "min_query_length": min(query_lengths),
            "max_query_length": max(query_lengths),
            "min_document_length": min(doc_lengths),
            "max_document_length": max(doc_lengths),
            "num_relevant_docs": sum(len(docs) for docs in relevant),
            "unique_relevant_docs": len({d for docs in relevant for d in docs}),
        }


def assemble(
    corpus: dict[str, dict[str, str]],
    queries: dict[str, str],
    qrels: Iterable[tuple[str, str, int]],
    *,
    origin: str,
    doc_join: DocJoin = "strip",
    skipped: dict[str, int] | None = None,
) -> RetrievalData:
    """Check a loader's output and drop what cannot be evaluated, counting and logging each drop.

    ``qrels`` are ``(query id, document id, relevance)`` triples; ``origin`` names the source in
    messages (a file, a folder, or a hub dataset and revision). Raises ``InputError`` if the corpus is
    empty or no query is left to evaluate.
    """
    if not corpus:
        raise InputError(f"{origin}: the corpus is empty")
    skipped = dict(skipped or {})
    judged: dict[str, dict[str, int]] = {}
    for query_id, doc_id, score in qrels:
        if query_id not in queries:
            _count(skipped, UNKNOWN_QUERY)
        elif doc_id not in corpus:
            # MTEB keeps these: pytrec_eval then counts a relevant document no run can retrieve, which
            # lowers recall and nDCG. Dropping them is koe5's choice; the count says how many.
            _count(skipped, UNKNOWN_DOC)
        else:
            previous = judged.setdefault(query_id, {}).get(doc_id)
            if previous is not None and previous != score:
                _count(skipped, CONFLICTING_QREL)
            judged[query_id][doc_id] = score

    # Metrics are means over the queries pytrec_eval evaluates: those present in both the qrels and the
    # run. MTEB 1.20.1 keeps only queries with a qrels line (HFDataLoader.load), so queries without one
    # never count. A query whose judgments are all 0 does count in MTEB, scoring 0 on every metric; koe5
    # drops it too (it cannot be answered) and reports the number, which is 0 for the bundled tasks.
    kept_queries: dict[str, str] = {}
    for query_id, text in queries.items():
        docs = judged.get(query_id)
        if not docs:
            _count(skipped, NO_QRELS)
        elif not any(score > 0 for score in docs.values()):
            _count(skipped, NO_RELEVANT)
            del judged[query_id]
        else:
            kept_queries[query_id] = text
    if not kept_queries:
        raise InputError(f"{origin}: no query has a relevant document in the corpus ({_describe(skipped)})")

    for reason, count in skipped.items():
        # the other reasons are expected: e.g. a hub queries config holds the queries of every split
        level = logging.WARNING if reason in _SUSPICIOUS else logging.INFO
        logger.log(level, "%s: dropped %d %s", origin, count, reason)
    return RetrievalData(corpus, kept_queries, judged, skipped, doc_join)


def sample_queries(data: RetrievalData, n: int | None, seed: int = 0) -> RetrievalData:
    """``n`` of ``data``'s queries, drawn with ``seed`` (all of them when ``n`` is ``None`` or not
    fewer), with their judgments and the whole corpus: for measurements too slow to run on every query."""
    if not n or n >= len(data.queries):
        return data
    return select_queries(data, sorted(random.Random(seed).sample(sorted(data.queries), n)))


def select_queries(data: RetrievalData, keep: Sequence[str]) -> RetrievalData:
    """``data`` with only the queries ``keep`` (ids of its queries), their judgments and the whole corpus."""
    qrels = [(q, d, g) for q in keep for d, g in data.qrels[q].items()]
    queries = {q: data.queries[q] for q in keep}
    return assemble(data.corpus, queries, qrels, origin="sample", doc_join=data.doc_join)


def _count(skipped: dict[str, int], reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def _describe(skipped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in skipped.items()) or "no qrels"
