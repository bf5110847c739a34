"""Benchmark tasks: the bundled suite against MTEB's statistics, the loaders, and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pytest

from koe5.errors import InputError
from koe5.tasks import (
    BUNDLED,
    KNOWN_TASKS,
    HubDatasetError,
    RetrievalData,
    Task,
    doc_text,
    get_task,
    load_beir,
    load_trec,
)
from koe5.tasks.bundled import EVAL_DATA
from koe5.tasks.data import NO_QRELS, NO_RELEVANT, UNKNOWN_DOC, UNKNOWN_QUERY
from koe5.tasks.hub import HubDataset, load_hub

SHARED = Path("/work/shared/data")
STATS = SHARED / "reference" / "mteb_stats"
# task -> MTEB subset whose statistics the bundled copy must equal (None: the task has no subsets)
MTEB_SUBSET = {
    "AutoRAGRetrieval": None,
    "BelebeleRetrieval": "kor_Hang-kor_Hang",
    "PublicHealthQA": "korean",
    "SQuADKorV1Retrieval": None,
}


@pytest.fixture(scope="module")
def bundled() -> dict[str, RetrievalData]:
    return {name: get_task(name).load() for name in BUNDLED}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def beir_folder(root: Path, corpus=None, queries=None, qrels=None) -> Path:
    write(
        root / "corpus.jsonl",
        corpus
        if corpus is not None
        else jsonl(
            {"_id": "d1", "title": "서울", "text": "한국의 수도"},
            {"_id": "d2", "title": "", "text": "부산은 항구 도시"},
            {"_id": 3, "text": "제주도"},
        ),
    )
    write(
        root / "queries.jsonl",
        queries
        if queries is not None
        else jsonl({"_id": "q1", "text": "한국의 수도는?"}, {"_id": "q2", "text": "항구 도시"}),
    )
    write(
        root / "qrels" / "test.tsv",
        qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\t3\t0\n",
    )
    return root


# --- the bundled suite -------------------------------------------------------------------------------


def test_bundled_names_and_order():
    assert BUNDLED == ("AutoRAGRetrieval", "BelebeleRetrieval", "PublicHealthQA", "SQuADKorV1Retrieval")
    assert all(KNOWN_TASKS[name].bundled for name in BUNDLED)


@pytest.mark.parametrize("name", list(MTEB_SUBSET))
def test_bundled_task_matches_mteb_statistics(bundled, name):
    path = STATS / f"{name}.stats.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    split = json.loads(path.read_text(encoding="utf-8"))["test"]
    ref = split["hf_subset_descriptive_stats"][MTEB_SUBSET[name]] if MTEB_SUBSET[name] else split
    docs, queries, rels = (
        ref["documents_text_statistics"],
        ref["queries_text_statistics"],
        ref["relevant_docs_statistics"],
    )
    data = bundled[name]
    assert data.stats() == {
        "num_queries": queries["unique_texts"] if name != "SQuADKorV1Retrieval" else 5774,
        "num_documents": docs["unique_texts"],
        "query_chars": queries["total_text_length"],
        "document_chars": docs["total_text_length"],
        "min_query_length": queries["min_text_length"],
        "max_query_length": queries["max_text_length"],
        "min_document_length": docs["min_text_length"],
        "max_document_length": docs["max_text_length"],
        "num_relevant_docs": rels["num_relevant_docs"],
        "unique_relevant_docs": rels["unique_relevant_docs"],
    }
    assert ref["num_samples"] == len(data.queries) + len(data.corpus)


def test_squad_kor_counts(bundled):
    data = bundled["SQuADKorV1Retrieval"]
    assert len(data.queries) == 5774
    # KorQuAD's 961 distinct paragraphs, less the one without a question (as in MTEB's hub copy)
    assert len(data.corpus) == 960
    assert data.skipped == {"paragraphs without questions": 1}
    assert sum(len(docs) for docs in data.qrels.values()) == 5774
    assert data.corpus["0-0"]["title"] == "임종석"


def test_bundled_files_are_unmodified_copies():
    for folder in ("autorag", "belebele", "publichealthqa", "korquad_v1"):
        assert (EVAL_DATA / folder / "SOURCE.md").is_file()
        if not (SHARED / "eval").is_dir():
            continue
        for original in (SHARED / "eval" / folder).iterdir():
            copy = EVAL_DATA / folder / original.name
            digest = hashlib.sha256(original.read_bytes()).hexdigest()
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest, copy


def test_bundled_content(bundled):
    autorag = bundled["AutoRAGRetrieval"]
    assert autorag.doc_join == "raw"
    assert autorag.qrels["0_finance"] == {"finance - 지방은행 시중은행 전환 가이드.pdf - 4": 1}
    assert autorag.doc_text("commerce - B2BDigComm.pdf - 1").startswith(" Adobe\n")
    belebele = bundled["BelebeleRetrieval"]
    assert list(belebele.corpus)[:2] == ["C0", "C1"] and belebele.corpus["C0"]["title"] == ""
    assert all(text == text.strip() for text in bundled["PublicHealthQA"].queries.values())
    assert not any(data.skipped for name, data in bundled.items() if name != "SQuADKorV1Retrieval")


def test_sample_queries_is_seeded_and_keeps_judgments_and_corpus(bundled):
    from koe5.tasks.data import sample_queries

    data = bundled["PublicHealthQA"]
    some = sample_queries(data, 10, seed=3)
    assert len(some.queries) == 10 and set(some.queries) <= set(data.queries)
    assert some.queries == sample_queries(data, 10, seed=3).queries  # the seed decides
    assert some.queries != sample_queries(data, 10, seed=4).queries
    assert some.qrels == {q: data.qrels[q] for q in some.queries} and some.corpus is data.corpus
    assert sample_queries(data, None) is data and sample_queries(data, len(data.queries)) is data


# --- doc_text: MTEB 1.20.1's document text ---------------------------------------------------------


def test_doc_text_rules():
    assert doc_text({"title": "서울", "text": "한국의 수도 "}) == "서울 한국의 수도"
    assert doc_text({"title": "", "text": " 본문\n"}) == "본문"
    assert doc_text({"text": " 본문 "}) == "본문"
    assert doc_text({"title": "", "text": "본문 "}, "raw") == " 본문 "
    assert doc_text({"title": "제목", "text": "본문"}, "raw") == "제목 본문"


# --- metadata and get_task ---------------------------------------------------------------------------


def test_known_tasks_metadata():
    assert list(KNOWN_TASKS) == [
        "Ko-StrategyQA",
        "AutoRAGRetrieval",
        "PublicHealthQA",
        "BelebeleRetrieval",
        "MIRACLRetrieval",
        "MrTidyRetrieval",
        "MultiLongDocRetrieval",
        "XPQARetrieval",
        "SQuADKorV1Retrieval",
        "LawIRKo",
    ]
    mldr = KNOWN_TASKS["MultiLongDocRetrieval"]
    assert mldr.splits == ("dev", "test") and mldr.subset == "ko"
    assert mldr.revision == "837028901907a7d419b4ab906f28e011ce1cc824"
    assert KNOWN_TASKS["MIRACLRetrieval"].dataset == "mteb/MIRACLRetrieval"
    assert KNOWN_TASKS["XPQARetrieval"].subsets == ("kor-kor", "eng-kor", "kor-eng")
    assert KNOWN_TASKS["Ko-StrategyQA"].subset is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        mldr.name = "x"  # type: ignore[misc]


def test_get_task_by_name_is_case_insensitive():
    assert get_task("belebeleretrieval") is KNOWN_TASKS["BelebeleRetrieval"]


def test_get_task_unknown_name_lists_known_ones():
    with pytest.raises(InputError, match=r"unknown task 'NoSuchTask'.*AutoRAGRetrieval.*LawIRKo"):
        get_task("NoSuchTask")


def test_task_with_two_splits_needs_a_split():
    with pytest.raises(InputError, match="splits dev, test"):
        get_task("MultiLongDocRetrieval").load()
    with pytest.raises(InputError, match="no split 'train'"):
        get_task("MultiLongDocRetrieval").load("train")
    with pytest.raises(InputError, match="only subset kor_Hang-kor_Hang is bundled"):
        get_task("BelebeleRetrieval").load(subset="kor_Hang-eng_Latn")


# --- BEIR folders --------------------------------------------------------------------------------------


def test_load_beir_and_get_task_on_a_folder(tmp_path):
    folder = beir_folder(tmp_path / "mini")
    write(folder / "qrels" / "dev.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    data = load_beir(folder)
    assert data.queries == {"q1": "한국의 수도는?", "q2": "항구 도시"}
    assert data.corpus["3"] == {"title": "", "text": "제주도"}
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "3": 0}}
    assert data.doc_text("d1") == "서울 한국의 수도" and data.skipped == {}

    task = get_task(str(folder))
    assert isinstance(task, Task) and task.name == "mini" and task.splits == ("test", "dev")
    assert task.load("dev").qrels == {"q1": {"d1": 1}}
    with pytest.raises(InputError, match=r"no qrels for split 'train' \(splits found: test, dev\)"):
        load_beir(folder, "train")


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    folder = beir_folder(tmp_path, corpus=jsonl({"_id": "d1", "text": "a"}) + '{"_id": "d2", "text": \n')
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: not valid JSON"):
        load_beir(folder)


def test_missing_field_names_file_line_and_field(tmp_path):
    folder = beir_folder(tmp_path, queries=jsonl({"_id": "q1", "text": "a"}, {"_id": "q2", "body": "b"}))
    with pytest.raises(InputError, match=r"queries\.jsonl:2: field 'text' is missing"):
        load_beir(folder)


def test_malformed_tsv_line_names_file_and_line(tmp_path):
    folder = beir_folder(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n")
    with pytest.raises(InputError, match=r"test\.tsv:3: expected 'query-id<TAB>corpus-id<TAB>score', got 1"):
        load_beir(folder)
    write(folder / "qrels" / "test.tsv", "q1\td1\thigh\n")
    with pytest.raises(InputError, match=r"test\.tsv:1: relevance 'high' is not a number"):
        load_beir(folder)


@pytest.mark.parametrize(
    ("part", "content", "expected"),
    [
        (
            "corpus",
            jsonl({"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}, {"_id": "d1", "text": "c"}),
            r"corpus\.jsonl:3: duplicate document id 'd1' \(first at .*corpus\.jsonl:1\)",
        ),
        (
            "queries",
            jsonl({"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}),
            r"queries\.jsonl:2: duplicate query id 'q1'",
        ),
    ],
)
def test_duplicate_ids_are_errors(tmp_path, part, content, expected):
    folder = beir_folder(tmp_path, **{part: content})
    with pytest.raises(InputError, match=expected):
        load_beir(folder)


def test_qrels_with_unknown_ids_are_dropped_counted_and_logged(tmp_path, caplog):
    folder = beir_folder(tmp_path, qrels="q1\td1\t1\nq1\tnope\t1\nq9\td2\t1\nq2\td2\t1\n")
    with caplog.at_level(logging.WARNING, logger="koe5.tasks"):
        data = load_beir(folder)
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert data.skipped == {UNKNOWN_DOC: 1, UNKNOWN_QUERY: 1}
    assert "dropped 1 qrels naming an unknown document" in caplog.text
    assert "dropped 1 qrels naming an unknown query" in caplog.text


def test_queries_without_a_relevant_document_are_dropped_and_counted(tmp_path):
    folder = beir_folder(
        tmp_path,
        queries=jsonl({"_id": "q1", "text": "a"}, {"_id": "q2", "text": "b"}, {"_id": "q3", "text": "c"}),
        qrels="q1\td1\t1\nq2\td2\t0\n",
    )
    data = load_beir(folder)
    assert list(data.queries) == ["q1"] and list(data.qrels) == ["q1"]
    assert data.skipped == {NO_RELEVANT: 1, NO_QRELS: 1}


def test_empty_corpus_is_an_error(tmp_path):
    with pytest.raises(InputError, match="the corpus is empty"):
        load_beir(beir_folder(tmp_path, corpus="\n"))


def test_empty_queries_file_is_named(tmp_path):
    with pytest.raises(InputError, match=r"queries\.jsonl: no queries \(the file has no records\)"):
        load_beir(beir_folder(tmp_path, queries=""))


def test_no_evaluable_query_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no query has a relevant document"):
        load_beir(beir_folder(tmp_path, qrels="q1\tnope\t1\n"))


def test_non_utf8_file_names_the_file(tmp_path):
    folder = beir_folder(tmp_path)
    (folder / "queries.jsonl").write_bytes(jsonl({"_id": "q1", "text": "수도"}).encode("cp949"))
    with pytest.raises(InputError, match=r"queries\.jsonl:1: not UTF-8"):
        load_beir(folder)


def test_not_a_beir_folder(tmp_path):
    with pytest.raises(InputError, match=r"no corpus\.jsonl"):
        load_beir(tmp_path)


# --- TREC --------------------------------------------------------------------------------------------

CLASSIC_TOPICS = """<top>
<num> Number: 301
<title> Topic: 한국의
   수도

<desc> Description:
서울에 관한 문서.
</top>

<top>
<num> Number: 302 </num>
<title>항구 도시</title>
</top>
"""


def test_load_trec_tsv_topics_and_jsonl_corpus(tmp_path):
    topics = write(tmp_path / "topics.tsv", "301\t한국의 수도\n302\t항구 도시\n")
    qrels = write(tmp_path / "qrels.txt", "301 0 d1 1\n301 0 d2 0\n302 0 d2 2\n")
    corpus = write(
        tmp_path / "docs.jsonl", jsonl({"id": "d1", "contents": "서울"}, {"docid": "d2", "text": "부산"})
    )
    data = load_trec(topics, qrels, corpus)
    assert data.queries == {"301": "한국의 수도", "302": "항구 도시"}
    assert data.qrels == {"301": {"d1": 1, "d2": 0}, "302": {"d2": 2}}
    assert data.corpus["d1"] == {"title": "", "text": "서울"}


def test_load_trec_classic_topics_and_tsv_corpus(tmp_path):
    topics = write(tmp_path / "topics.301-302.txt", CLASSIC_TOPICS)
    qrels = write(tmp_path / "qrels.txt", "301\t0\td1\t1\n302 0 d2 1\n")
    corpus = write(tmp_path / "docs.tsv", "id\ttext\nd1\t서울\nd2\t부산 소개\t부산\n")
    data = load_trec(topics, qrels, corpus)
    assert data.queries == {"301": "한국의 수도", "302": "항구 도시"}
    assert data.corpus["d2"] == {"title": "부산 소개", "text": "부산"}


def test_trec_bad_lines(tmp_path):
    corpus = write(tmp_path / "docs.tsv", "d1\t서울\n")
    with pytest.raises(InputError, match=r"topics\.tsv:2: expected 'query-id<TAB>text'"):
        load_trec(write(tmp_path / "topics.tsv", "1\t서울\n2 부산\n"), tmp_path / "q", corpus)
    topics = write(tmp_path / "topics.tsv", "1\t서울\n")
    with pytest.raises(InputError, match=r"qrels\.txt:1: expected 'query-id 0 doc-id relevance', got 3"):
        load_trec(topics, write(tmp_path / "qrels.txt", "1 d1 1\n"), corpus)
    with pytest.raises(InputError, match=r"classic\.txt:5: <top> block without <num>"):
        classic = write(
            tmp_path / "classic.txt", "<top>\n<num> 1\n<title> a\n</top>\n<top>\n<title> b\n</top>\n"
        )
        load_trec(classic, tmp_path / "q", corpus)
    with pytest.raises(InputError, match=r"docs2\.tsv:1: expected 'id<TAB>text'"):
        load_trec(topics, write(tmp_path / "q.txt", "1 0 d1 1\n"), write(tmp_path / "docs2.tsv", "d1\n"))


# --- hub layouts, run on local datasets -------------------------------------------------------------


def _dd(**splits):
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_dict(cols) for name, cols in splits.items()})


def test_beir_layout_from_local_parquet_and_json(tmp_path):
    import datasets

    cache = str(tmp_path / "hf-cache")
    corpus = tmp_path / "corpus.parquet"
    datasets.Dataset.from_dict(
        {"_id": ["d1", "d2"], "title": ["서울", None], "text": ["수도", "항구"]}
    ).to_parquet(str(corpus))
    queries = [
        {"_id": "q1", "text": "수도는?"},
        {"_id": "q2", "text": "항구는?"},
        {"_id": "q3", "text": "다른 split의 질문"},
    ]
    write(tmp_path / "queries.jsonl", jsonl(*queries))
    configs = {
        "corpus": datasets.load_dataset("parquet", data_files={"corpus": str(corpus)}, cache_dir=cache),
        "queries": datasets.load_dataset(
            "json", data_files={"queries": str(tmp_path / "queries.jsonl")}, cache_dir=cache
        ),
        "default": _dd(
            dev={"query-id": ["q1", "q2"], "corpus-id": ["d1", "d2"], "score": [1, 1]},
            test={"query-id": ["q2"], "corpus-id": ["d2"], "score": [1]},
        ),
    }
    data = load_hub("user/ko-set", "abc123", "beir", "dev", doc_join="raw", configs=configs)
    assert data.queries == {"q1": "수도는?", "q2": "항구는?"}
    assert data.corpus == {"d1": {"title": "서울", "text": "수도"}, "d2": {"title": "", "text": "항구"}}
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}} and data.skipped == {NO_QRELS: 1}
    assert data.doc_text("d2") == " 항구"


def test_beir_layout_with_a_language_subset_and_a_train_corpus():
    configs = {
        "korean-corpus": _dd(train={"_id": ["1", "2"], "title": ["가", "나"], "text": ["ㄱ", "ㄴ"]}),
        "korean-queries": _dd(test={"_id": ["7"], "text": ["질문"]}, train={"_id": ["8"], "text": ["x"]}),
        "korean-qrels": _dd(test={"query-id": ["7", "7"], "corpus-id": ["1", "2"], "score": [1, 0]}),
    }
    task = KNOWN_TASKS["MrTidyRetrieval"]
    data = load_hub(task.dataset, task.revision, task.shape, "test", task.subset, configs=configs)
    assert data.queries == {"7": "질문"} and data.qrels == {"7": {"1": 1, "2": 0}}
    with pytest.raises(InputError, match="no config 'english-qrels'"):
        load_hub(task.dataset, task.revision, task.shape, "test", "english", configs=configs)


def test_duplicate_ids_in_hub_data_name_config_and_row():
    configs = {
        "corpus": _dd(corpus={"_id": ["d1", "d1"], "text": ["a", "b"]}),
        "queries": _dd(queries={"_id": ["q1"], "text": ["a"]}),
        "default": _dd(test={"query-id": ["q1"], "corpus-id": ["d1"], "score": [1]}),
    }
    with pytest.raises(InputError, match=r"user/x@r1 corpus\[test\] row 1: duplicate document id 'd1'"):
        load_hub("user/x", "r1", "beir", "test", configs=configs)


def test_belebele_layout_same_transform_as_bundled(bundled):
    lines = (EVAL_DATA / "belebele" / "kor_Hang.jsonl").read_text("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    korean = _dd(test={k: [r[k] for r in rows] for k in ("link", "flores_passage", "question")})
    english = _dd(
        test={
            "link": [r["link"] for r in rows],
            "flores_passage": ["passage"] * len(rows),
            "question": [f"question {r['link']} {r['question_number']}" for r in rows],
        }
    )
    configs = {"kor_Hang": korean, "eng_Latn": english}
    task = KNOWN_TASKS["BelebeleRetrieval"]
    same = load_hub(task.dataset, task.revision, "belebele", "test", "kor_Hang-kor_Hang", configs=configs)
    assert same == bundled["BelebeleRetrieval"]
    cross = load_hub(task.dataset, task.revision, "belebele", "test", "kor_Hang-eng_Latn", configs=configs)
    assert cross.corpus == same.corpus and cross.queries["Q0"].startswith("question ")


def test_publichealthqa_layout():
    configs = {
        "korean": _dd(
            test={"question": ["가?", "나?", None, "가?"], "answer": ["답 1\n", "답 2", "답 3", "답 1\n"]}
        )
    }
    data = load_hub("xhluca/publichealth-qa", "main", "publichealthqa", "test", "korean", configs=configs)
    assert data.queries == {"Q0": "가?", "Q1": "나?"}
    assert data.corpus["D0"] == {"title": "", "text": "답 1\n"} and data.doc_text("D0") == "답 1"
    assert data.skipped == {"rows without a question or an answer": 1}


# --- the hub itself is unreachable in tests ---------------------------------------------------------


def test_hub_unreachable_names_dataset_and_revision(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    # conftest already sets HF_HUB_OFFLINE before import; this keeps the test fast when run on its own too
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    task = KNOWN_TASKS["MIRACLRetrieval"]
    expected = r"mteb/MIRACLRetrieval at revision 9c09abc1\w+.*unreachable or offline"
    with pytest.raises(HubDatasetError, match=expected):
        task.load()


def test_hub_errors_are_reported_with_what_was_asked(monkeypatch):
    import datasets

    import koe5.hub

    monkeypatch.setattr(koe5.hub, "unavailable", lambda *args: None)  # the look-up finds it; loading fails

    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'user/x' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    expected = r"user/x at revision r1, config 'corpus'.*unreachable or offline"
    with pytest.raises(HubDatasetError, match=expected):
        HubDataset("user/x", "r1")["corpus"]
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda *a, **k: ["corpus"])
    assert "corpus" in HubDataset("user/x", "r1")
