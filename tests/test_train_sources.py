"""Builders of the Korean training material, and the guarantee that no evaluation text is trained on."""

from __future__ import annotations

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
