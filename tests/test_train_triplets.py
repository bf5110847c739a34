"""Reading training rows: column names, formats, explicit mapping, and errors naming file, line, field."""

from __future__ import annotations

import json

import pytest

from koe5.errors import InputError
from koe5.train.triplets import load_triplets, read_pairs, write_rows


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"query": "수도는?", "document": "서울은 수도이다.", "hard_negative": "부산은 항구이다.", "group": "a"},
    {"query": "항구는?", "document": "부산은 항구이다.", "hard_negative": "서울은 수도이다.", "group": "b"},
]


def test_ko_triplet_columns(tmp_path):
    rows = load_triplets(str(_jsonl(tmp_path / "t.jsonl", ROWS)))
    assert rows.dataset.column_names == ["query", "positive", "negative_1"]
    assert rows.dataset[0] == {
        "query": "수도는?",
        "positive": "서울은 수도이다.",
        "negative_1": "부산은 항구이다.",
    }
    assert rows.groups == ["a", "b"] and rows.num_negatives == 1


def test_several_negatives_pairs_and_list_column(tmp_path):
    many = [{"anchor": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2"}]
    assert load_triplets(str(_jsonl(tmp_path / "m.jsonl", many))).num_negatives == 2
    listed = [{"query": "q", "positive": "p", "negatives": ["n1", "n2", "n3"]}]
    rows = load_triplets(str(_jsonl(tmp_path / "l.jsonl", listed)))
    assert rows.dataset.column_names == ["query", "positive", "negative_1", "negative_2", "negative_3"]
    pairs = load_triplets(str(_jsonl(tmp_path / "p.jsonl", [{"query": "q", "positive": "p"}])))
    assert pairs.num_negatives == 0 and pairs.groups is None


def test_csv_parquet_and_saved_dataset(tmp_path):
    import datasets

    write_rows(tmp_path / "t.csv", ROWS)
    write_rows(tmp_path / "t.parquet", ROWS)
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    for source in ("t.csv", "t.parquet", "saved"):
        rows = load_triplets(str(tmp_path / source))
        assert rows.dataset.to_dict() == load_triplets(str(tmp_path / "t.csv")).dataset.to_dict()
    two = load_triplets([str(tmp_path / "t.csv"), str(tmp_path / "t.parquet")])
    assert len(two) == 4 and two.groups == ["a", "b", "a", "b"]


def test_explicit_column_mapping(tmp_path):
    rows = [{"q": "질문", "a": "답", "bad": "오답", "other": "x", "prog": "g"}]
    path = _jsonl(tmp_path / "m.jsonl", rows)
    t = load_triplets(
        str(path), query_column="q", positive_column="a", negative_columns=["bad"], group_column="prog"
    )
    assert t.dataset[0] == {"query": "질문", "positive": "답", "negative_1": "오답"} and t.groups == ["g"]


def test_missing_columns_are_named(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", [{"question_text": "q", "document": "d"}])
    with pytest.raises(InputError, match=r"x.jsonl: no query column .*question_text, document.*--query-col"):
        load_triplets(str(path))
    with pytest.raises(InputError, match="no column 'nope' for the query"):
        load_triplets(str(path), query_column="nope")
    with pytest.raises(InputError, match="no column 'grp'"):
        load_triplets(str(path), query_column="question_text", group_column="grp")


def test_empty_and_non_string_texts_name_file_line_and_field(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(
        json.dumps({"query": "q", "document": "d"})
        + "\n\n"
        + json.dumps({"query": "q2", "document": "  "})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"e.jsonl:3: field 'document' is empty"):
        load_triplets(str(path))
    _jsonl(path, [{"query": "q", "document": 5}])
    with pytest.raises(InputError, match=r"e.jsonl:1: field 'document' is int, not a string"):
        load_triplets(str(path))
    _jsonl(path, [{"query": "q", "document": "d", "hard_negative": "n"}, {"query": "q", "document": "d"}])
    with pytest.raises(InputError, match=r"e.jsonl:2: field 'hard_negative' is missing"):
        load_triplets(str(path))
    write_rows(tmp_path / "e.csv", [{"query": "q", "positive": ""}])
    with pytest.raises(InputError, match=r"e.csv:2: field 'positive' is empty"):
        load_triplets(str(tmp_path / "e.csv"))


def test_files_must_agree_and_exist(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", ROWS)
    b = _jsonl(tmp_path / "b.jsonl", [{"query": "q", "document": "d"}])
    with pytest.raises(InputError, match="same number"):
        load_triplets([str(a), str(b)])
    with pytest.raises(InputError, match="no such file"):
        load_triplets(str(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no rows"):
        load_triplets(str(tmp_path / "empty.jsonl"))


def test_read_pairs_keeps_group_source_and_negative(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{**ROWS[0], "source": "s"}, {"query": "q", "document": "d"}])
    pairs = read_pairs(str(path))
    expected = {"query": "수도는?", "positive": "서울은 수도이다.", "negative": "부산은 항구이다."}
    assert pairs[0] == {**expected, "group": "a", "source": "s"}
    assert pairs[1] == {"query": "q", "positive": "d"}
