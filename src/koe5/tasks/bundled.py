"""The offline suite: retrieval views derived, at load time, from raw files shipped unmodified with koe5.

Each folder of ``koe5/data/eval/`` holds byte-for-byte copies of published files and a ``SOURCE.md``
naming their origin and licence; the functions here build the queries, corpus and qrels MTEB builds.

>>> data = load_bundled("belebele")
>>> len(data.queries), len(data.corpus)
(900, 488)
"""

from __future__ import annotations

from pathlib import Path

from koe5.errors import InputError
from koe5.tasks.data import DocJoin, RetrievalData, assemble
from koe5.tasks.readers import field, put_unique, read_json, read_jsonl
from koe5.tasks.transforms import Parts, belebele

NO_QUESTIONS = "paragraphs without questions"
EVAL_DATA = Path(__file__).resolve().parent.parent / "data" / "eval"


def _autorag(folder: Path) -> Parts:
    # corpus: doc_id -> contents (no title); queries: qid -> query; every id in the nested retrieval_gt is
    # relevant with score 1, as in the hub copy MTEB loads (yjoonjang/markers_bm)
    import pyarrow.parquet as pq

    path = folder / "ocr_corpus_v3.parquet"
    table = pq.read_table(path, columns=["doc_id", "contents"])
    corpus: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for row, (doc_id, text) in enumerate(
        zip(table["doc_id"].to_pylist(), table["contents"].to_pylist(), strict=True)
    ):
        put_unique(corpus, doc_id, {"title": "", "text": text}, "document", f"{path} row {row}", seen)

    path = folder / "qa_v4.parquet"
    table = pq.read_table(path, columns=["qid", "query", "retrieval_gt"])
    queries: dict[str, str] = {}
    qrels = []
    seen = {}
    for row, (query_id, text, groups) in enumerate(
        zip(
            table["qid"].to_pylist(),
            table["query"].to_pylist(),
            table["retrieval_gt"].to_pylist(),
            strict=True,
        )
    ):
        put_unique(queries, query_id, text, "query", f"{path} row {row}", seen)
        qrels += [(query_id, doc_id, 1) for group in groups for doc_id in group]
    return corpus, queries, qrels, {}


def _belebele(folder: Path) -> Parts:
    # one language file serves as both the passage and the question table (subset kor_Hang-kor_Hang)
    path = folder / "kor_Hang.jsonl"
    rows = {"link": [], "flores_passage": [], "question": []}
    for where, record in read_jsonl(path):
        for name in rows:
            rows[name].append(field(record, (name,), where))
    return belebele(rows, rows, str(path))


def _publichealthqa(folder: Path) -> Parts:
    # already split into corpus/queries/qrels; texts carry surrounding whitespace that MTEB strips
    # before encoding (and in its statistics), so it is stripped here
    path = folder / "publichealthqa_ko.json"
    content = read_json(path)
    try:
        corpus = {
            str(i): {"title": d.get("title", "").strip(), "text": d["text"].strip()}
            for i, d in content["corpus"].items()
        }
        queries = {str(i): text.strip() for i, text in content["queries"].items()}
        qrels = [(str(q), str(d), int(s)) for q, docs in content["qrels"].items() for d, s in docs.items()]
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise InputError(
            f"{path}: expected corpus/queries/qrels objects ({type(exc).__name__}: {exc})"
        ) from exc
    return corpus, queries, qrels, {}


def _korquad(folder: Path) -> Parts:
    # KorQuAD 1.0 is CC BY-ND: the file ships unmodified and this view is derived in memory, as one row
    # per question, the way the hub copy MTEB uses (yjoonjang/squad_kor_v1) is laid out:
    # query = question (id = KorQuAD qa id, text stripped); document = each distinct (title, paragraph)
    # that has a question, id "<article>-<paragraph>" of its first occurrence. This gives MTEB's counts
    # and character totals exactly; the one paragraph without questions is left out and counted.
    path = folder / "KorQuAD_v1.0_dev.json"
    content = read_json(path)
    corpus: dict[str, dict[str, str]] = {}
    doc_ids: dict[tuple[str, str], str] = {}
    queries: dict[str, str] = {}
    qrels = []
    skipped: dict[str, int] = {}
    seen: dict[str, str] = {}
    try:
        for i, article in enumerate(content["data"]):
            for j, paragraph in enumerate(article["paragraphs"]):
                if not paragraph["qas"]:
                    skipped[NO_QUESTIONS] = skipped.get(NO_QUESTIONS, 0) + 1
                    continue
                key = (article["title"], paragraph["context"])
                if key not in doc_ids:
                    doc_ids[key] = f"{i}-{j}"
                    corpus[doc_ids[key]] = {"title": key[0], "text": key[1]}
                for qa in paragraph["qas"]:
                    where = f"{path} data[{i}].paragraphs[{j}] question {qa['id']!r}"
                    put_unique(queries, qa["id"], qa["question"].strip(), "query", where, seen)
                    qrels.append((qa["id"], doc_ids[key], 1))
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not in KorQuAD 1.0 layout ({type(exc).__name__}: {exc})") from exc
    return corpus, queries, qrels, skipped


LOADERS = {
    "autorag": _autorag,
    "belebele": _belebele,
    "publichealthqa": _publichealthqa,
    "korquad_v1": _korquad,
}


def load_bundled(folder: str, *, doc_join: DocJoin = "strip") -> RetrievalData:
    """Load the task derived from ``koe5/data/eval/<folder>``."""
    path = EVAL_DATA / folder
    if folder not in LOADERS or not path.is_dir():
        raise InputError(f"{path}: no bundled data (folders: {', '.join(LOADERS)})")
    corpus, queries, qrels, skipped = LOADERS[folder](path)
    return assemble(corpus, queries, qrels, origin=str(path), doc_join=doc_join, skipped=skipped)
