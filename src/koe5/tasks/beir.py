"""Loading a task stored as a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

>>> data = load_beir("path/to/scifact", split="test")            # doctest: +SKIP
>>> len(data.queries), len(data.corpus)                          # doctest: +SKIP
(300, 5183)
"""

from __future__ import annotations

from pathlib import Path

from koe5.errors import InputError
from koe5.tasks.data import DocJoin, RetrievalData, assemble
from koe5.tasks.readers import read_corpus_jsonl, read_qrels, read_queries_jsonl


def beir_splits(folder: str | Path) -> tuple[str, ...]:
    """The splits a BEIR folder has qrels for (``test`` first when present)."""
    names = sorted(path.stem for path in (Path(folder) / "qrels").glob("*.tsv"))
    return tuple(sorted(names, key=lambda name: name != "test"))


def load_beir(folder: str | Path, split: str = "test", *, doc_join: DocJoin = "strip") -> RetrievalData:
    """Load one split of a BEIR folder.

    ``corpus.jsonl`` lines carry ``_id``, ``text`` and optionally ``title``; ``queries.jsonl`` lines
    ``_id`` and ``text``; ``qrels/<split>.tsv`` has the header ``query-id corpus-id score``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name}; a BEIR folder has corpus.jsonl, queries.jsonl and qrels/")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = ", ".join(beir_splits(folder)) or "none"
        raise InputError(f"{qrels_path}: no qrels for split {split!r} (splits found: {found})")
    return assemble(
        read_corpus_jsonl(folder / "corpus.jsonl"),
        read_queries_jsonl(folder / "queries.jsonl"),
        read_qrels(qrels_path, "beir"),
        origin=str(qrels_path),
        doc_join=doc_join,
    )
