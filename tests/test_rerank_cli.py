"""`koe5 rerank`: candidates from JSONL, plain lines or stdin; JSON and table output; bad lines named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from koe5.cli import app
from koe5.rerank import Reranker

QUERY = "한국의 수도는?"
TEXTS = ["부산은 항구 도시이다.", "서울은 대한민국의 수도이다.", "제주도에는 한라산이 있다."]
runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, ["--quiet", "rerank", *map(str, args)], input=input)


@pytest.fixture(scope="module")
def expected(tiny_reranker_dir) -> list[int]:
    """The indices of TEXTS best first, as the library ranks them."""
    return [h.index for h in Reranker.load(str(tiny_reranker_dir), device="cpu").rank(QUERY, TEXTS)]


def test_jsonl_file_to_json_with_fields_passed_through(tiny_reranker_dir, tmp_path, expected):
    src = tmp_path / "hits.jsonl"
    lines = [
        json.dumps({"id": f"d{i}", "text": t, "score": 0.5 + i, "year": 2020 + i})
        for i, t in enumerate(TEXTS)
    ]
    src.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    result = invoke(QUERY, "--candidates", src, "--model", tiny_reranker_dir, "--json", "--top-k", 2)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["index"] for r in rows] == expected[:2]
    first = rows[0]
    i = first["index"]
    assert first["text"] == TEXTS[i] and first["id"] == f"d{i}" and first["year"] == 2020 + i
    assert first["input_score"] == 0.5 + i and 0 < first["score"] < 1  # the first stage's score is kept
    assert rows[0]["score"] >= rows[1]["score"]


def test_stdin_plain_lines_and_raw_scores(tiny_reranker_dir, expected):
    result = invoke(
        QUERY, "--model", tiny_reranker_dir, "--json", "--raw-scores", input="\n".join(TEXTS) + "\n\n"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["index"] for r in rows] == expected  # the blank line is no candidate
    raw = Reranker.load(str(tiny_reranker_dir), device="cpu").score(QUERY, TEXTS, raw=True)
    np.testing.assert_allclose([r["score"] for r in rows], raw[expected], atol=1e-5)
    assert set(rows[0]) == {"index", "score", "text"}


def test_a_plain_text_file_and_a_table(tiny_reranker_dir, tmp_path, expected):
    src = tmp_path / "cands.txt"
    src.write_text("\n".join(TEXTS), encoding="utf-8")
    result = invoke(QUERY, "-c", src, "-m", tiny_reranker_dir)
    assert result.exit_code == 0, result.output
    assert "reranked by" in result.stdout
    best = TEXTS[expected[0]]
    assert result.stdout.index(best) < result.stdout.index(TEXTS[expected[-1]])


def test_another_text_field(tiny_reranker_dir, tmp_path, expected):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"body": t, "text": "x"}) + "\n" for t in TEXTS), encoding="utf-8")
    result = invoke(QUERY, "-c", src, "-m", tiny_reranker_dir, "--field", "body", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["text"] for r in rows] == [TEXTS[i] for i in expected]
    assert rows[0]["input_text"] == "x"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "좋아요"}\n{"text": 5}\n', ":2: field 'text' is int, not a string"),
        ('{"text": "좋아요"}\n\n{"title": "x"}\n', ":3: field 'text' is missing"),
        ('{"text": "좋아요"}\n{"text": \n', ":2: not valid JSON"),
        ('{"text": "좋아요"}\n["a"]\n', ":2: expected a JSON object, got list"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_file_and_line(tiny_reranker_dir, tmp_path, content, message):
    src = tmp_path / "bad.jsonl"
    src.write_text(content, encoding="utf-8")
    result = invoke(QUERY, "-c", src, "-m", tiny_reranker_dir)
    assert result.exit_code == 2
    assert f"error: {src}{message}" in result.output


def test_bad_options_fail_before_a_model_loads(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("\n".join(TEXTS), encoding="utf-8")
    nowhere = tmp_path / "no-model"
    result = invoke(QUERY, "-c", src, "-m", nowhere, "--top-k", 4)
    assert result.exit_code == 2 and "top_k 4 is more than the 3 candidate(s)" in result.output
    result = invoke("  ", "-c", src, "-m", nowhere)
    assert result.exit_code == 2 and "the query is empty" in result.output
    result = invoke(QUERY, "-c", tmp_path / "missing.txt")
    assert result.exit_code == 2 and "missing.txt: cannot read" in result.output


def test_no_truncate_and_a_too_long_candidate(tiny_reranker_dir, sample_texts):
    long = " ".join(sample_texts)
    result = invoke(
        QUERY, "-m", tiny_reranker_dir, "--max-length", 16, "--no-truncate", input=f"서울\n{long}\n"
    )
    assert result.exit_code == 2
    assert (
        "error: item 1: the query and this text are" in result.output
        and "than the reranker's 16" in result.output
    )


def test_a_window_reads_a_long_candidate_in_parts_as_the_library_does(tiny_reranker_dir, sample_texts):
    texts = ["서울", " ".join(sample_texts)]
    args = ("-m", tiny_reranker_dir, "--max-length", 32, "--window", 16, "--no-truncate", "--json")
    result = invoke(QUERY, *args, input="\n".join(texts) + "\n")
    assert result.exit_code == 0, result.output  # nothing is too long: the long one is read in windows
    rows = json.loads(result.stdout)
    library = Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=32, window=16)
    want = library.score(QUERY, texts)
    np.testing.assert_allclose([r["score"] for r in rows], want[[r["index"] for r in rows]], atol=1e-5)


def test_help():
    result = runner.invoke(app, ["rerank", "--help"])
    assert result.exit_code == 0 and "--candidates" in result.output and "--raw-scores" in result.output
