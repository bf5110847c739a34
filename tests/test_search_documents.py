"""Reading documents: JSONL, JSON, CSV, Parquet, folders; errors name the file and line."""

from __future__ import annotations

import pytest

from koe5.errors import InputError
from koe5.search.documents import EMPTY, NOT_UTF8, Document, DocumentSource, as_documents


def test_jsonl_with_title_metadata_and_extra_fields(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(
        '{"id": "a", "text": "서울은 수도이다.", "title": "서울", "metadata": {"lang": "ko"}, "year": 2024}\n'
        "\n"
        '{"id": 7, "text": "부산은 항구 도시이다."}\n',
        encoding="utf-8",
    )
    docs = list(DocumentSource(src))
    assert docs[0] == Document("a", "서울은 수도이다.", "서울", {"lang": "ko", "year": 2024}, f"{src}:1")
    assert docs[1].id == "7" and docs[1].origin == f"{src}:3"


def test_csv_tsv_parquet_and_json_arrays(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.csv").write_text('id,text,source\n1,"첫 줄, 쉼표",위키\n2,둘째,뉴스\n', encoding="utf-8")
    csv_docs = list(DocumentSource(tmp_path / "d.csv"))
    assert [(d.id, d.text, d.metadata) for d in csv_docs] == [
        ("1", "첫 줄, 쉼표", {"source": "위키"}),
        ("2", "둘째", {"source": "뉴스"}),
    ]
    (tmp_path / "d.tsv").write_text("doc\tbody\nx\t본문\n", encoding="utf-8")
    tsv = list(DocumentSource(tmp_path / "d.tsv", id_field="doc", text_field="body"))
    assert (tsv[0].id, tsv[0].text) == ("x", "본문")
    pq.write_table(
        pa.table({"id": ["p1"], "text": ["파케이"], "title": [None], "n": [3]}), tmp_path / "d.parquet"
    )
    (parquet,) = DocumentSource(tmp_path / "d.parquet")
    assert (parquet.id, parquet.title, parquet.metadata) == ("p1", "", {"n": 3})
    (tmp_path / "d.json").write_text('[{"id": "j", "text": "제이슨"}]', encoding="utf-8")
    assert [d.id for d in DocumentSource(tmp_path / "d.json")] == ["j"]


def test_folder_of_text_files_counts_what_it_skips(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("가나다", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# 제목\n본문", encoding="utf-8")
    (tmp_path / "euckr.txt").write_bytes("한국어".encode("euc-kr"))
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    (tmp_path / ".hidden.txt").write_text("숨김", encoding="utf-8")
    source = DocumentSource(tmp_path)
    docs = list(source)
    assert [d.id for d in docs] == ["a.txt", "sub/b.md"]
    assert docs[1].metadata == {"path": "sub/b.md"}
    assert source.skipped == {NOT_UTF8: 1}
    assert EMPTY  # blank documents are counted by the index, which sees every source


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "id 없음"}\n', ":1: field 'id' is missing"),
        ('{"id": "a", "text": "좋다"}\n{"id": "b"}\n', ":2: field 'text' is missing"),
        ('{"id": "a", "text": 5}\n', "field 'text' is int"),
        ('{"id": ["a"], "text": "x"}\n', "must be a string or an integer"),
        ('{"id": "a", "text": "x", "metadata": [1]}\n', "'metadata' must be an object"),
        ("not json\n", ":1: not valid JSON"),
        ('["a", "b"]\n', "expected an object"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, content, message):
    src = tmp_path / "bad.jsonl"
    src.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        list(DocumentSource(src))


def test_bad_files(tmp_path):
    (tmp_path / "euckr.jsonl").write_bytes(b'{"id": "a", "text": "ok"}\n' + "한국어".encode("euc-kr"))
    with pytest.raises(InputError, match=r"euckr\.jsonl:2: not valid UTF-8"):
        list(DocumentSource(tmp_path / "euckr.jsonl"))
    with pytest.raises(InputError, match="no such file"):
        DocumentSource(tmp_path / "missing.jsonl")
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(InputError, match="unknown document format"):
        DocumentSource(tmp_path / "x.docx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.txt"):
        list(DocumentSource(tmp_path / "empty"))


def test_python_objects():
    docs = list(as_documents([{"id": "a", "text": "가"}, Document("b", "나")]))
    assert [d.id for d in docs] == ["a", "b"] and docs[0].origin == "document 0"
    with pytest.raises(InputError, match="document 0: field 'id' is missing"):
        list(as_documents([{"text": "가"}]))


def test_uris_and_lists_of_files_read_through_pyarrow_filesystems(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("가나다", encoding="utf-8")
    (tmp_path / "f" / "b.md").write_text("라마바", encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"id": "j", "text": "제이"}\n{"id": "k"}\n', encoding="utf-8")
    by_uri = list(DocumentSource((tmp_path / "f").as_uri()))
    assert [(d.id, d.text) for d in by_uri] == [("a.txt", "가나다"), ("b.md", "라마바")]
    assert by_uri[0].origin == f"{(tmp_path / 'f').as_uri()}/a.txt"
    # a list of sources is read in order; an error names the file (as given) and line
    both = as_documents([tmp_path / "f", (tmp_path / "d.jsonl").as_uri()])
    with pytest.raises(InputError, match=r"d\.jsonl:2: field 'text' is missing"):
        list(both)
    assert [d.id for d in DocumentSource([tmp_path / "f" / "b.md", tmp_path / "f" / "a.txt"])] == [
        "b.md",
        "a.txt",
    ]
    described = DocumentSource([tmp_path / "f", tmp_path / "d.jsonl"]).describe()
    assert described["files"] == 3 and described["path"][0] == str((tmp_path / "f").resolve())
    with pytest.raises(InputError, match="nosuch://x/y: cannot open"):
        DocumentSource("nosuch://x/y")
    with pytest.raises(InputError, match="no such file or folder"):
        DocumentSource((tmp_path / "missing.jsonl").as_uri())
