"""Builders of the Korean training material, and the guarantee that no evaluation text is trained on."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from koe5.errors import InputError
from koe5.train.sources import (
    SOURCES,
    build_rows,
    default_source_dir,
    evaluation_texts,
    normalize,
    read_source,
    sources_markdown,
)


def _csv(path, header, rows, delimiter=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    if delimiter == "\t":  # the published TSV files write quotes as text: no CSV quoting there
        path.write_text("".join("\t".join(r) + "\n" for r in [header, *rows]), encoding="utf-8")
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def eval_query() -> str:
    from koe5.tasks import get_task

    return next(iter(get_task("PublicHealthQA").load().queries.values()))


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory, eval_query):
    """A miniature of shared/data/train: every file in its published format, a few invented rows."""
    root = tmp_path_factory.mktemp("train-sources")
    (root / "strategyqa_ko").mkdir()
    instances = [
        {
            "input": "용어: 나트륨, 설명: 원소, 질문: 나트륨은 금속인가요? , 답변:네",
            "output": ["사실 1: 나트륨은 금속이다."],
        },
        {
            "input": "용어 : 나트륨, 설명: 원소, 질문:나트륨은 물에 뜨나요?, 대답:네",
            "output": ["사실 1:나트륨은 가볍다."],
        },
        {"input": "질문이 없는 자유 서술", "output": ["무시된다."]},
    ]
    (root / "strategyqa_ko" / SOURCES["strategyqa_ko"].files[0]).write_text(
        json.dumps({"Instances": instances}, ensure_ascii=False), encoding="utf-8"
    )
    _csv(
        root / "welfare_qa" / "QA_total.csv",
        ["Question", "Answer", "Documents"],
        [
            ["긴급복지는 누가 받나요?", "위기 가구가 받습니다.", "긴급복지"],
            ["긴급 지원 대상은?", "위기에 처한 가구입니다.", "긴급복지"],
            [eval_query, "보건소에 문의하세요.", "보건"],
            ["아동수당은 얼마?", "월 10만 원입니다.", "아동수당"],
        ],
    )
    _csv(
        root / "chatbot" / "ChatbotData.csv",
        ["Q", "A", "label"],
        [["심심해", "놀아요.", "0"], ["지루해", "놀아요.", "0"]],
    )
    _csv(
        root / "question_pair" / "kor_pair_train.csv",
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        [["1", "1", "2", "이별했어", "헤어졌어", "0"], ["2", "3", "4", "배고파", "졸려", "1"]],
    )
    _csv(
        root / "question_pair" / "kor_Pair_test.csv",
        ["test_id", "question1", "question2", "is_duplicate", ""],
        [],
    )
    (root / "parakqc").mkdir()
    lines = [f"0\t1\t메일 {s}번 질문 {i}" for s in range(2) for i in range(10)]
    (root / "parakqc" / "paraKQC_v1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    nli = [["전제 문장", "함의 문장", "entailment"], ["전제 문장", '"모순" 문장', "contradiction"],
           ["전제 문장", "중립 문장", "neutral"]]  # fmt: skip
    _csv(root / "kornlu" / "xnli.dev.ko.tsv", ["sentence1", "sentence2", "gold_label"], nli, "\t")
    _csv(root / "kornlu" / "xnli.test.ko.tsv", ["sentence1", "sentence2", "gold_label"], [], "\t")
    header = ["genre", "filename", "year", "id", "score", "sentence1", "sentence2"]
    sts = [
        ["g", "f", "y", "1", "4.5", "비슷한 문장", "유사한 문장"],
        ["g", "f", "y", "2", "1.0", "다른 문장", "무관한 문장"],
    ]
    for name in ("sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"):
        _csv(root / "kornlu" / name, header, sts if name == "sts-dev.tsv" else [], "\t")
    (root / "klue").mkdir()
    klue_nli = [
        {"premise": "전제", "hypothesis": h, "gold_label": g}
        for h, g in [("참", "entailment"), ("거짓", "contradiction")]
    ]
    (root / "klue" / "klue-nli-v1.1_dev.json").write_text(
        json.dumps(klue_nli, ensure_ascii=False), encoding="utf-8"
    )
    klue_sts = [{"sentence1": "가", "sentence2": "나", "labels": {"label": 4.2}}]
    (root / "klue" / "klue-sts-v1.1_dev.json").write_text(
        json.dumps(klue_sts, ensure_ascii=False), encoding="utf-8"
    )
    return root


def test_each_source_becomes_rows_with_groups(source_dir, eval_query):
    strategy = read_source("strategyqa_ko", source_dir)
    assert [r["query"] for r in strategy] == ["나트륨은 금속인가요?", "나트륨은 물에 뜨나요?"]
    assert strategy[1]["positive"] == "나트륨은 가볍다." and {r["group"] for r in strategy} == {
        "strategyqa_ko:나트륨"
    }
    welfare = read_source("welfare_qa", source_dir)
    assert Counter(r["group"] for r in welfare)["welfare_qa:긴급복지"] == 2
    assert {r["group"] for r in read_source("chatbot", source_dir)} == {"chatbot:놀아요."}
    assert [(r["query"], r["positive"]) for r in read_source("question_pair", source_dir)] == [
        ("이별했어", "헤어졌어")
    ]
    para = read_source("parakqc", source_dir)
    assert len(para) == 10 and Counter(r["group"] for r in para) == {"parakqc:set0": 5, "parakqc:set1": 5}
    (nli,) = read_source("kornli", source_dir)
    assert (nli["query"], nli["positive"], nli["negative"]) == ("전제 문장", "함의 문장", '"모순" 문장')
    assert [(r["query"], r["positive"]) for r in read_source("korsts", source_dir)] == [
        ("비슷한 문장", "유사한 문장")
    ]
    assert read_source("klue_nli", source_dir)[0]["negative"] == "거짓"
    assert len(read_source("klue_sts", source_dir)) == 1
    assert all(r["source"] == name for name in SOURCES for r in read_source(name, source_dir))


def test_evaluation_texts_are_never_mixed_in(source_dir, eval_query):
    rows, report = build_rows(source_dir, {"welfare_qa": 1.0})
    assert report.overlapping == {"welfare_qa": 1} and len(rows) == 3
    assert all(normalize(r["query"]) != normalize(eval_query) for r in rows)
    texts = evaluation_texts()
    assert normalize(" " + eval_query.replace(" ", "  ") + " ") in texts


def test_weights_sample_and_repeat(source_dir):
    rows, report = build_rows(source_dir, {"parakqc": 0.5, "chatbot": 2, "klue_sts": 0}, exclude=set())
    assert report.kept == {"parakqc": 5, "chatbot": 4} and len(rows) == 9
    assert rows == build_rows(source_dir, {"parakqc": 0.5, "chatbot": 2, "klue_sts": 0}, exclude=set())[0]
    markdown = sources_markdown(report, {"parakqc": 0.5, "chatbot": 2})
    assert "| parakqc | warnikchow/paraKQC" in markdown and "CC BY-SA 4.0" in markdown
    with pytest.raises(InputError, match="unknown source"):
        build_rows(source_dir, {"kowiki": 1})
    with pytest.raises(InputError, match="missing"):
        read_source("welfare_qa", source_dir / "nowhere")


@pytest.mark.skipif(
    default_source_dir() is None, reason="the Korean training material (shared/data/train) is absent"
)
def test_real_material_has_no_overlap_with_the_bundled_evaluation_tasks():
    """Every source as published: sizes as MANIFEST.md says, and not one evaluation text inside."""
    rows, report = build_rows(None, {name: 1.0 for name in SOURCES})
    assert report.read["welfare_qa"] == 9547 and report.read["chatbot"] == 11822
    assert 4100 < report.read["strategyqa_ko"] <= 4244 and 2400 < report.read["kornli"] < 2600
    assert len({r["group"] for r in rows if r["source"] == "welfare_qa"}) > 400
    texts = evaluation_texts()
    overlap = [
        r for r in rows if any(normalize(r[k]) in texts for k in ("query", "positive", "negative") if k in r)
    ]
    assert overlap == []


def test_cli_build_data(source_dir, tmp_path):
    from typer.testing import CliRunner

    from koe5.cli import app
    from koe5.train.triplets import read_pairs

    out = tmp_path / "built" / "rows.jsonl"
    args = ["build-data", "-o", str(out), "--source-dir", str(source_dir), "--weights"]
    result = CliRunner().invoke(app, [*args, "welfare_qa=1,kornli=1"])
    assert result.exit_code == 0, result.output
    rows = read_pairs(str(out))
    assert len(rows) == 4 and {r["source"] for r in rows} == {"welfare_qa", "kornli"}
    assert "1 dropped (in the evaluation data)" in result.output
    assert "| kornli | kakaobrain/KorNLUDatasets" in (out.parent / "SOURCES.md").read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, [*args, "x"])
    assert bad.exit_code == 2 and "source=number" in bad.output
