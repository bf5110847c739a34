"""koe5.textio: reading texts (JSONL, plain lines, stdin) and writing vectors; errors name file and line."""

import io
import json
import sys

import numpy as np
import pytest

from koe5.errors import InputError
from koe5.textio import json_lines, read_texts, write_embeddings


def test_jsonl_with_ids_strings_and_a_bom(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes("\ufeff".encode() + b'{"id": 7, "text": "\xea\xb0\x80"}\n\n{"id": "b", "text": "b"}\n')
    got = read_texts(path)
    assert got.texts == ["가", "b"] and got.ids == ["7", "b"] and got.source == str(path)


def test_plain_text_keeps_every_line_so_rows_match_lines(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("하나\n\n셋\n", encoding="utf-8")
    assert read_texts(path).texts == ["하나", "", "셋"]
    assert read_texts(path).ids is None


def test_auto_format_sniffs_json_without_a_known_suffix(tmp_path):
    path = tmp_path / "input"
    path.write_text('"첫째"\n"둘째"\n', encoding="utf-8")
    assert read_texts(path).texts == ["첫째", "둘째"]
    path.write_text("{not json at all\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"input:1: not valid JSON"):
        read_texts(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a"}\n[1, 2]\n', r":2: expected a JSON string or object, got list"),
        ('{"text": "a"}\n{"body": "b"}\n', r":2: field 'text' is missing"),
        ('{"text": 5}\n', r":1: field 'text' is int, not a string"),
        ('{"id": 1, "text": "a"}\n{"text": "b"}\n', r"some records have 'id' and some do not"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_texts(path)
    assert str(path) in str(info.value)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok\nalso ok\ncaf\xe9\n")
    with pytest.raises(InputError, match=r"latin1.txt:3: not valid UTF-8"):
        read_texts(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_texts(tmp_path / "nope.jsonl")
    (tmp_path / "a.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown input format 'csv'"):
        read_texts(tmp_path / "a.txt", fmt="csv")


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO('{"text": "표준 입력"}\n'.encode())))
    got = read_texts("-")
    assert got.texts == ["표준 입력"] and got.source == "<stdin>"


def test_json_lines_objects_only():
    assert list(json_lines(['{"a": 1}', "", '{"b": 2}'], "f", objects=True)) == [(1, {"a": 1}), (3, {"b": 2})]
    with pytest.raises(InputError, match=r"^f:2: expected a JSON object, got str$"):
        list(json_lines(['{"a": 1}', '"s"'], "f", objects=True))


def test_write_embeddings_npy_and_jsonl_round_trip(tmp_path):
    vectors = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float64)
    write_embeddings(tmp_path / "v.npy", vectors)
    back = np.load(tmp_path / "v.npy")
    assert back.dtype == np.float32 and np.allclose(back, vectors)
    write_embeddings(tmp_path / "v.jsonl", vectors, ids=["a", "b"])
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == [{"id": "a", "embedding": [0.6, 0.8]}, {"id": "b", "embedding": [1.0, 0.0]}]
    assert not list(tmp_path.glob(".*tmp*")), "atomic writes leave no temporary files"


def test_write_embeddings_to_stdout_and_refusing_other_suffixes(tmp_path, capsys):
    write_embeddings("-", np.ones((1, 2), dtype=np.float32))
    assert json.loads(capsys.readouterr().out) == {"embedding": [1.0, 1.0]}
    with pytest.raises(InputError, match=r"out.csv: output must end in .npy or .jsonl"):
        write_embeddings(tmp_path / "out.csv", np.ones((1, 2)))
    assert not (tmp_path / "out.csv").exists()


def test_lone_surrogate_from_a_json_escape_names_file_and_line(tmp_path):
    """json.loads turns "\\ud800" into a lone surrogate, which the tokenizer rejected with a bare
    TypeError (a 45-line traceback naming nothing)."""
    path = tmp_path / "q.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "x \\ud800"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"q.jsonl:2: field 'text': lone surrogate U\+D800 at character 2"):
        read_texts(path)
    path.write_text('"fine"\n"\\udfff"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"q.jsonl:2: lone surrogate U\+DFFF"):
        read_texts(path)
