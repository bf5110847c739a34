"""Hard-negative mining: candidates from BM25 or a dense model, the rank window, the false-negative guard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from koe5.errors import InputError
from koe5.train.mine import mine_hard_negatives

PAIRS = [
    {"query": "서울 지하철 노선", "positive": "서울 지하철 노선은 아홉 개이다.", "group": "seoul"},
    {"query": "서울 지하철 요금", "positive": "서울 지하철 요금은 천오백 원이다.", "group": "seoul"},
    {"query": "부산 바다 축제", "positive": "부산 바다 축제는 여름에 열린다.", "group": "busan"},
]
CORPUS = [
    "서울 지하철 노선 지하철 노선 안내",  # scores above the positive: a likely false negative
    "부산 지하철 노선은 네 개이다.",
    "서울 버스 노선은 많다.",
    "대구 지하철 노선은 세 개이다.",
    "광주 지하철 요금 안내",
    "오늘 날씨는 맑다.",
]


@pytest.fixture(scope="module")
def bm25():
    from koe5.search.bm25 import KoreanBM25

    texts = list(dict.fromkeys([*CORPUS, *(p["positive"] for p in PAIRS)]))
    return KoreanBM25().index(texts), texts


def test_negatives_are_never_positives_of_the_query_or_its_group(bm25):
    index, texts = bm25
    rows, report = mine_hard_negatives(PAIRS, corpus=CORPUS, method="bm25", num_negatives=3, margin=0.0)
    group_positives = {p["positive"] for p in PAIRS if p["group"] == "seoul"}
    for row in rows:
        assert row["hard_negative"] != row["document"]
        if row["group"] == "seoul":
            assert row["hard_negative"] not in group_positives
        scores = index.scores(row["query"])
        assert scores[texts.index(row["hard_negative"])] < scores[texts.index(row["document"])]  # the guard
    assert sum(k * n for k, n in report.histogram.items()) == len(rows) == report.rows_out
    assert report.queries == 3 and set(rows[0]) == {"query", "document", "hard_negative", "group"}


def test_group_texts_guard_the_answers_of_rows_left_out_of_the_sample():
    # only the first seoul row is mined; the second's answer is in the corpus and would be its negative
    sample, left_out = PAIRS[:1], PAIRS[1]["positive"]
    corpus = [*CORPUS, left_out]
    args = {"corpus": corpus, "method": "bm25", "num_negatives": 5, "margin": 0.0, "range_min": 0}
    rows, _ = mine_hard_negatives(sample, **args)
    assert left_out in {r["hard_negative"] for r in rows}
    rows, _ = mine_hard_negatives(sample, group_texts={"seoul": [left_out, "not in the corpus"]}, **args)
    assert rows and left_out not in {r["hard_negative"] for r in rows}


def test_range_and_margin(bm25):
    index, texts = bm25
    query = PAIRS[0]["query"]
    scores = index.scores(query)
    own = {texts.index(p["positive"]) for p in PAIRS[:2]}
    ranked = [int(j) for j in np.argsort(-scores, kind="stable") if int(j) not in own and scores[j] > 0]
    top = mine_hard_negatives(PAIRS[:1], corpus=CORPUS, method="bm25", sampling="top", margin=-1e9)[0]
    assert top[0]["hard_negative"] == texts[ranked[0]]
    skipped = mine_hard_negatives(
        PAIRS[:1], corpus=CORPUS, method="bm25", sampling="top", margin=-1e9, range_min=1
    )[0]
    assert skipped[0]["hard_negative"] == texts[ranked[1]]
    guarded, report = mine_hard_negatives(PAIRS[:1], corpus=CORPUS, method="bm25", sampling="top", margin=0.0)
    positive = scores[texts.index(PAIRS[0]["positive"])]
    assert scores[ranked[0]] >= positive and guarded[0]["hard_negative"] != texts[ranked[0]]
    assert report.dropped_by_margin >= 1
    wide = mine_hard_negatives(PAIRS[:1], corpus=CORPUS, method="bm25", margin=10.0, relative_margin=False)[1]
    assert wide.histogram == {0: 1}  # an absolute margin larger than any score gap leaves nothing


def test_formats_given_negatives_and_seed():
    given = [{**PAIRS[2], "negative": "미리 준 오답"}, *PAIRS[:2]]
    rows, report = mine_hard_negatives(given, corpus=CORPUS, method="bm25", num_negatives=2, margin=0.0)
    assert rows[0]["hard_negative"] == "미리 준 오답" and report.kept_given == 1
    tuples, _ = mine_hard_negatives(
        PAIRS, corpus=CORPUS, method="bm25", num_negatives=2, output_format="n-tuple"
    )
    assert all({"hard_negative_1", "hard_negative_2"} <= set(r) for r in tuples)
    a = mine_hard_negatives(PAIRS, corpus=CORPUS, method="bm25", num_negatives=2, seed=1)[0]
    assert a == mine_hard_negatives(PAIRS, corpus=CORPUS, method="bm25", num_negatives=2, seed=1)[0]
    with pytest.raises(InputError, match="range_min < range_max"):
        mine_hard_negatives(PAIRS, method="bm25", range_min=5, range_max=5)
    with pytest.raises(InputError, match="encoder"):
        mine_hard_negatives(PAIRS, method="dense")
    with pytest.raises(InputError, match=r"row 1: field 'positive'"):
        mine_hard_negatives([{"query": "q", "positive": " "}], method="bm25")


def test_dense_mining_with_the_tiny_model(tiny):
    pairs = [{"query": t, "positive": t + " 입니다."} for t in ("서울은 대한민국의 수도이다.", "한국")]
    rows, report = mine_hard_negatives(
        pairs, corpus=["부산", "가", "x", "수도"], encoder=tiny, num_negatives=2
    )
    assert report.histogram and all(r["hard_negative"] != r["document"] for r in rows)


def test_cli_mine(tmp_path):
    from typer.testing import CliRunner

    from koe5.cli import app

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    out = tmp_path / "triplets.parquet"
    result = CliRunner().invoke(
        app,
        ["mine", str(pairs), "-o", str(out), "--corpus", str(corpus), "--method", "bm25", "--range-max", "5"],
    )
    assert result.exit_code == 0, result.output
    assert "3 queries mined" in result.output
    from koe5.train.triplets import load_triplets

    assert load_triplets(str(out)).dataset.column_names == ["query", "positive", "negative_1"]
