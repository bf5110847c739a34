"""The command line: encode, similarity, models, convert."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import koe5
from koe5.cli import app

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, ["--quiet", *map(str, args)], input=input)


def test_help_everywhere():
    for cmd in ([], ["encode"], ["similarity"], ["models"], ["convert"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_encode_jsonl_to_npy(tiny, tiny_model_dir, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(
        '{"id": "a", "text": "서울은 대한민국의 수도이다."}\n\n'
        '{"id": "b", "text": "부산은 항구 도시이다."}\n',
        encoding="utf-8",
    )
    out = tmp_path / "vectors.npy"
    result = invoke("encode", src, "-o", out, "--kind", "passage", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    vectors = np.load(out)
    np.testing.assert_allclose(
        vectors, tiny.encode_passages(["서울은 대한민국의 수도이다.", "부산은 항구 도시이다."]), atol=1e-5
    )


def test_encode_stdin_text_to_jsonl(tiny, tiny_model_dir):
    result = invoke("encode", "-", "--kind", "query", "--model", tiny_model_dir, input="한국의 수도\n서울\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2
    np.testing.assert_allclose(rows[1]["embedding"], tiny.encode_queries(["서울"])[0], atol=1e-5)


def test_encode_bad_line_names_file_and_line(tiny_model_dir, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "좋아요"}\n{"text": 5}\n', encoding="utf-8")
    result = invoke("encode", src, "--model", tiny_model_dir)
    assert result.exit_code == 2
    assert f"{src}:2: field 'text' is int" in result.output


def test_encode_non_utf8(tiny_model_dir, tmp_path):
    src = tmp_path / "euckr.txt"
    src.write_bytes("첫 줄\n".encode() + "한국어".encode("euc-kr"))
    result = invoke("encode", src, "--model", tiny_model_dir)
    assert result.exit_code == 2
    assert f"{src}:2: not valid UTF-8" in result.output


def test_similarity_json(tiny_model_dir):
    result = invoke("similarity", "--model", tiny_model_dir, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    matrix = np.array(data["similarity"])
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-4)
    assert data["texts"][0].startswith("query: ")


def test_similarity_table(tiny_model_dir):
    result = invoke("similarity", "--model", tiny_model_dir, "-q", "서울", "-p", "수도", "-p", "부산")
    assert result.exit_code == 0, result.output
    assert "cosine similarity" in result.stdout and "1.0000" in result.stdout


def test_models_json(default_model_dir):
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads(result.stdout)}
    assert rows["default"]["cached"] == str(default_model_dir)
    assert rows["nlpai-lab/KoE5"]["dim"] == 1024
    assert rows["nlpai-lab/KoE5"]["query_prefix"] == "query: "
    assert rows["BAAI/bge-m3"]["passage_prefix"] == ""


@pytest.mark.parametrize("extra", [["--layers", "1"]])
def test_convert_pruned(tmp_path, extra):
    keep = tmp_path / "keep.txt"
    keep.write_text("서울은 대한민국의 수도이다.\n", encoding="utf-8")
    out = tmp_path / "small"
    result = invoke("convert", "-o", out, "--keep-texts", keep, *extra)
    assert result.exit_code == 0, result.output
    assert (out / "koe5_model.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["vocab_size"] < 100


def test_missing_model_is_exit_2(tmp_path):
    result = invoke("similarity", "--model", tmp_path / "missing")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_batch_size_defaults_to_the_encoders(tiny_model_dir, monkeypatch):
    """The CLI leaves the batch to the encoder (32 inputs on CPU, 512 on CUDA) unless told."""
    seen = []
    encode = koe5.Encoder.encode

    def spy(self, texts, kind=None, **kwargs):
        seen.append(kwargs.get("batch_size"))
        return encode(self, texts, kind, **kwargs)

    monkeypatch.setattr(koe5.Encoder, "encode", spy)
    assert invoke("encode", "-", "--model", tiny_model_dir, input="서울\n").exit_code == 0
    assert invoke("encode", "-", "--model", tiny_model_dir, "-b", "4", input="서울\n").exit_code == 0
    assert seen == [None, 4]


def test_env_reports_what_koe5_uses(default_model_dir):
    import torch

    from koe5.cpu import attention, mkl

    result = invoke("env", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["koe5"] == koe5.__version__
    assert report["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert report["cpu"]["threads"] == torch.get_num_threads()
    assert report["cuda"]["available"] == torch.cuda.is_available()
    assert report["speedups"]["mkl_shim"] == mkl.status
    assert report["speedups"]["attention_kernel"] == attention.status
    assert report["speedups"]["attention_code_path"] == attention.variant
    assert report["default_model"]["folder"] == str(default_model_dir)
    text = invoke("env")
    assert text.exit_code == 0 and f"attention_kernel: {attention.status}" in text.stdout


def test_encode_checks_the_output_before_loading_and_counts_blank_lines(tiny_model_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("서울\n\n부산\n  \n", encoding="utf-8")
    refused = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "out.csv"), "-m", "no/such-model"])
    assert refused.exit_code == 2 and "out.csv: output must end in .npy or .jsonl" in refused.output
    out = tmp_path / "out.npy"
    done = runner.invoke(app, ["-q", "encode", str(src), "-o", str(out), "-m", str(tiny_model_dir)])
    assert done.exit_code == 0, done.output
    assert "warning: 2 blank input(s), the first at line/record 2" in done.output
    assert np.load(out).shape[0] == 4
