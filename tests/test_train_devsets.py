"""Dev tasks from the training material: held-out groups, their positives relevant, no evaluation text."""

from __future__ import annotations

import pytest

from koe5.errors import InputError
from koe5.train.devsets import dev_groups, dev_tasks


def test_each_source_becomes_a_task_with_its_groups_positives_relevant(source_dir, eval_query):
    tasks = dev_tasks(source_dir)
    assert set(tasks) == {
        "strategyqa_ko", "strategyqa_ko/documents", "welfare_qa", "welfare_qa/documents",
        "chatbot", "question_pair", "parakqc",
    }  # fmt: skip
    welfare = tasks["welfare_qa"]
    texts = {welfare.queries[q]: {welfare.corpus[d]["text"] for d in welfare.qrels[q]} for q in welfare.qrels}
    # the 긴급복지 programme: whichever paraphrase asks, both of its answers are relevant
    asked = next(q for q in texts if "긴급" in q)
    assert texts[asked] == {"위기 가구가 받습니다.", "위기에 처한 가구입니다."}
    every_text = {*welfare.queries.values(), *(d["text"] for d in welfare.corpus.values())}
    assert eval_query not in every_text and "보건소에 문의하세요." not in every_text
    # paraphrase sets: the query never finds itself
    para = tasks["parakqc"]
    for q, docs in para.qrels.items():
        assert para.queries[q] not in {para.corpus[d]["text"] for d in para.corpus}
        assert len(docs) == 5  # the set's rows pair members 0-1, 2-3, …: five positives


def test_document_tasks_join_a_groups_positives(source_dir):
    docs = dev_tasks(source_dir)["welfare_qa/documents"]
    (q,) = [q for q, text in docs.queries.items() if "긴급" in text]
    (d,) = docs.qrels[q]
    assert docs.corpus[d]["text"] == "위기 가구가 받습니다.\n위기에 처한 가구입니다."
    assert len(docs.corpus) == 2  # one document per programme (보건 is an evaluation text)


def test_the_split_is_a_function_of_the_seed(source_dir):
    one = dev_tasks(source_dir, queries=1, seed=7)
    assert one == dev_tasks(source_dir, queries=1, seed=7)
    assert all(len(t.queries) == 1 for t in one.values())
    held = dev_groups(source_dir, queries=1, seed=7)
    assert len(held) == 5 and all(
        g.split(":")[0] in {"strategyqa_ko", "welfare_qa", "chatbot", "question_pair", "parakqc"}
        for g in held
    )
    welfare = one["welfare_qa/documents"]
    (group,) = [g for g in held if g.startswith("welfare_qa:")]
    joined = {"welfare_qa:긴급복지": "위기 가구", "welfare_qa:아동수당": "월 10만"}[group]
    (q,) = welfare.qrels
    assert joined in welfare.corpus[next(iter(welfare.qrels[q]))]["text"]


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(InputError, match="no training-data folder"):
        dev_tasks(tmp_path / "nowhere")


def test_page_tasks_pack_passages_into_pages_and_find_the_one_asked_about(source_dir, monkeypatch):
    from koe5.train import devsets

    assert "welfare_qa/pages" not in dev_tasks(source_dir)  # only asked for
    monkeypatch.setattr(devsets, "PAGE_CHARS", 20)
    tasks = dev_tasks(source_dir, pages=True)
    # StrategyQA's two facts are too short to fill a page: no page task
    assert "welfare_qa/pages" in tasks and "strategyqa_ko/pages" not in tasks
    pages = tasks["welfare_qa/pages"]
    answers = {"긴급": {"위기 가구가 받습니다.", "위기에 처한 가구입니다."}, "아동": {"월 10만 원입니다."}}
    packed = [pages.corpus[d]["text"].split("\n") for d in pages.corpus]
    assert all(sum(map(len, page)) >= 20 for page in packed)  # full pages only
    assert len({text for page in packed for text in page}) == sum(map(len, packed))  # each passage once
    assert pages.qrels
    for q, relevant in pages.qrels.items():
        (topic,) = [t for t in answers if t in pages.queries[q]]
        for d in relevant:  # a relevant page holds one of the programme's answers
            assert answers[topic] & set(pages.corpus[d]["text"].split("\n"))
        # and every page that holds one is relevant
        holding = {d for d in pages.corpus if answers[topic] & set(pages.corpus[d]["text"].split("\n"))}
        assert set(relevant) == holding
    assert tasks == dev_tasks(source_dir, pages=True)  # a function of the seed


def test_small_tasks_keep_whole_queries_in_a_collection_of_the_set_size(source_dir, monkeypatch):
    from koe5.train import devsets

    assert not any(name.endswith("/small") for name in dev_tasks(source_dir))  # only asked for
    monkeypatch.setattr(devsets, "SMALL_DOCS", 2)
    monkeypatch.setattr(devsets, "SMALL_MIN_QUERIES", 1)
    tasks = dev_tasks(source_dir, small=True)
    small = {name: task for name, task in tasks.items() if name.endswith("/small")}
    assert small and all(name.removesuffix("/small") in tasks for name in small)
    for name, task in small.items():
        whole = tasks[name.removesuffix("/small")]
        assert len(task.corpus) == min(2, len(whole.corpus))
        assert set(task.corpus) <= set(whole.corpus) and set(task.queries) <= set(whole.queries)
        for q, relevant in task.qrels.items():  # a kept query keeps every relevant document
            assert relevant == whole.qrels[q] and set(relevant) <= set(task.corpus)
    # a task where only one query fits its two documents, and another is needed: no small task
    assert len(small["welfare_qa/small"].queries) == 1
    monkeypatch.setattr(devsets, "SMALL_MIN_QUERIES", 2)
    assert "welfare_qa/small" not in dev_tasks(source_dir, small=True)
    monkeypatch.setattr(devsets, "SMALL_MIN_QUERIES", 1)
    assert tasks == dev_tasks(source_dir, small=True)  # a function of the seed
