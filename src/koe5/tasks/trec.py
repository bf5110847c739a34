"""Loading a task stored TREC-style: a topics file, a qrels file and a corpus.

Topics are either tab-separated lines ``qid<TAB>text`` or classic TREC ``<top>`` blocks, whose
``<title>`` is the query; qrels lines are ``qid 0 docid relevance``; the corpus is JSONL (``.jsonl``,
``.json``) or TSV (anything else).

>>> data = load_trec("topics.301-350.txt", "qrels.301-350.txt", "docs.jsonl")   # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

from koe5.errors import InputError
from koe5.tasks.data import RetrievalData, assemble
from koe5.tasks.readers import put_unique, read_corpus_jsonl, read_corpus_tsv, read_lines, read_qrels

_TOP = re.compile(r"<top>(.*?)(?:</top>|$)", re.IGNORECASE | re.DOTALL)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*([^\s<]+)", re.IGNORECASE)
# the title runs to the next tag: old topics leave <title> unclosed, newer ones close it
_TITLE = re.compile(r"<title>\s*(?:Topic:)?(.*?)(?=<|$)", re.IGNORECASE | re.DOTALL)


def read_topics(path: str | Path) -> dict[str, str]:
    """Query id -> text, from a tab-separated or a classic ``<top>`` topics file."""
    lines = list(read_lines(path))
    first = next((line.strip() for _, line in lines if line.strip()), "")
    if first.lower().startswith("<top>"):
        return _read_classic_topics(path, "\n".join(line for _, line in lines))
    queries: dict[str, str] = {}
    seen: dict[str, str] = {}
    for number, line in lines:
        if not line.strip():
            continue
        where = f"{path}:{number}"
        query_id, tab, text = line.partition("\t")
        if not tab or not query_id.strip() or not text.strip():
            raise InputError(f"{where}: expected 'query-id<TAB>text'")
        put_unique(queries, query_id.strip(), text.strip(), "query", where, seen)
    return queries


def _read_classic_topics(path: str | Path, content: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    seen: dict[str, str] = {}
    for block in _TOP.finditer(content):
        where = f"{path}:{content.count(chr(10), 0, block.start()) + 1}"
        num, title = _NUM.search(block.group(1)), _TITLE.search(block.group(1))
        if num is None:
            raise InputError(f"{where}: <top> block without <num>")
        text = " ".join(title.group(1).split()) if title else ""
        if not text:
            raise InputError(f"{where}: topic {num.group(1)!r} has no <title> text")
        put_unique(queries, num.group(1), text, "query", where, seen)
    return queries


def load_trec(topics: str | Path, qrels: str | Path, corpus: str | Path) -> RetrievalData:
    """Load a TREC-style task: topics, qrels (``qid 0 docid rel``) and a JSONL or TSV corpus."""
    queries = read_topics(topics)
    if not queries:
        raise InputError(f"{topics}: no topics found")
    suffix = Path(corpus).suffix.lower()
    docs = read_corpus_jsonl(corpus) if suffix in (".jsonl", ".json") else read_corpus_tsv(corpus)
    return assemble(docs, queries, read_qrels(qrels, "trec"), origin=str(qrels))
