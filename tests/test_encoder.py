"""The encoder adds the right prefixes, keeps input order, truncates visibly, rejects bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import koe5
from koe5.errors import InputError, ModelCacheError, ModelError


def test_prefixes_equal_manual_prompt(tiny):
    st = tiny.model
    for encode, prefix in ((tiny.encode_queries, "query: "), (tiny.encode_passages, "passage: ")):
        mine = encode(["x", "서울은 대한민국의 수도이다."])
        plain = st.encode([prefix + "x", prefix + "서울은 대한민국의 수도이다."], normalize_embeddings=True)
        np.testing.assert_allclose(mine, plain, atol=1e-5)
    assert not np.allclose(tiny.encode_queries(["x"]), tiny.encode_passages(["x"]))


def test_output_shape_dtype_norm(tiny, sample_texts):
    out = tiny.encode_passages(sample_texts)
    assert out.shape == (len(sample_texts), tiny.dim) == (len(sample_texts), 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_empty_input(tiny):
    out = tiny.encode_queries([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_single_string_is_one_row(tiny):
    np.testing.assert_allclose(tiny.encode_queries("서울"), tiny.encode_queries(["서울"]), atol=1e-6)


def test_length_sorting_keeps_input_order(tiny, sample_texts):
    batched = tiny.encode_passages(sample_texts, batch_size=4)
    one_by_one = np.vstack([tiny.encode_passages([t]) for t in sample_texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_truncation_is_counted(tiny, caplog):
    long_text = "서울 " * 700
    with caplog.at_level("WARNING", logger="koe5"):
        out = tiny.encode_passages([long_text, "짧은 문장", long_text + "끝"])
    assert tiny.last_truncated == 2
    assert "2 of 3 inputs were longer than 512 tokens" in caplog.text
    # truncation keeps the first 511 content tokens + </s>, as Hugging Face's tokenizer does
    plain = tiny.model.encode(["passage: " + long_text], normalize_embeddings=True)
    np.testing.assert_allclose(out[0], plain[0], atol=1e-5)
    tiny.encode_passages(["짧은 문장"])
    assert tiny.last_truncated == 0


def test_long_texts_are_tokenised_from_their_head_with_the_same_result(tiny, sample_texts, monkeypatch):
    from koe5.encoder import CLIP_CHARS_PER_TOKEN

    assert tiny.clip_long_texts  # the XLM-R tokenizer splits words at spaces
    limit = CLIP_CHARS_PER_TOKEN * tiny.max_length
    document = " ".join(sample_texts * 40)  # Korean: far more than 512 tokens in the first 4,096 chars
    assert len(document) > 2 * limit
    long_words = " ".join(["x" * 300] * 40)  # a head of few tokens: tokenised whole
    no_spaces = "서" * (limit + 100)  # nowhere to cut: tokenised whole
    spaced = "\n ".join(sample_texts * 40)  # cut points next to other whitespace
    texts = [document, "짧은 문장", long_words, no_spaces, document[: limit - 10], spaced]
    seen = []
    tokenize = tiny.tokenize
    monkeypatch.setattr(tiny, "tokenize", lambda b: seen.append([len(t) for t in b]) or tokenize(b))
    clipped = tiny.tokenize_for_model(texts)
    heads = seen[0]  # the first pass reads heads of the long texts with spaces, the rest whole
    assert heads[0] <= limit and heads[2] <= limit
    assert heads[1:5] == [len(texts[1]), heads[2], len(no_spaces), len(texts[4])] and heads[5] <= limit
    assert seen[1] == [len(long_words)]  # the head of long words had too few tokens: read again whole
    whole = tokenize(texts)
    assert len(clipped[0]) < len(whole[0])
    assert [tiny._truncate(x) for x in clipped] == [tiny._truncate(x) for x in whole]
    assert [len(x) > tiny.max_length for x in clipped] == [len(x) > tiny.max_length for x in whole]

    monkeypatch.undo()
    out = tiny.encode_passages(texts)
    assert tiny.last_truncated == sum(len(x) > tiny.max_length for x in whole)
    tiny.clip_long_texts = False
    try:
        np.testing.assert_array_equal(tiny.encode_passages(texts), out)
    finally:
        tiny.clip_long_texts = True


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["좋아요", 3], "item 1 is int"),
        (["좋아요", None], "item 1 is NoneType"),
        ([b"\xec\x95\x88"], "item 0 is bytes"),
        (None, "got NoneType"),
        (b"bytes", "got bytes"),
    ],
)
def test_bad_input(tiny, bad, message):
    with pytest.raises(InputError, match=message):
        tiny.encode_queries(bad)


def test_bad_kind(tiny):
    with pytest.raises(InputError, match="kind"):
        tiny.encode(["x"], kind="document")


def test_similarity(tiny):
    q = tiny.encode_queries(["한국의 수도는 어디인가요?"])
    p = tiny.encode_passages(["서울은 대한민국의 수도이다.", "가격은 ￦12,000원이고 할인율은 15%입니다."])
    sim = tiny.similarity(q, p)
    assert sim.shape == (1, 2)
    np.testing.assert_allclose(sim, q @ p.T, atol=1e-6)
    with pytest.raises(InputError, match="dimension mismatch"):
        tiny.similarity(q, np.ones((1, 3)))


def test_attributes(tiny, tiny_model_dir):
    assert tiny.path == str(tiny_model_dir)
    assert (tiny.dim, tiny.max_length) == (384, 512)
    assert (tiny.query_prefix, tiny.passage_prefix) == ("query: ", "passage: ")


def test_prefix_override(tiny_model_dir):
    enc = koe5.load(str(tiny_model_dir), device="cpu", query_prefix="", passage_prefix="")
    np.testing.assert_allclose(enc.encode_queries(["x"]), enc.encode(["x"]), atol=1e-6)


def test_missing_model_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        koe5.load(str(tmp_path / "nothing-here"))


def test_corrupt_model_folder(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot load model"):
        koe5.load(str(broken))


def test_unknown_backend(tiny_model_dir):
    with pytest.raises(ModelError, match="unknown backend"):
        koe5.load(str(tiny_model_dir), backend="tensorrt")


def test_default_model_loads_from_cache(default_model_dir):
    enc = koe5.load(device="cpu")
    assert enc.path == str(default_model_dir)
    assert enc.dim == 384 and enc.query_prefix == "query: "


def test_damaged_cache_is_reported(default_model_dir):
    from koe5.registry import check_model_dir

    weights = default_model_dir / "model.safetensors"
    backup = weights.read_bytes()
    try:
        weights.write_bytes(backup[: len(backup) // 2])
        with pytest.raises(ModelCacheError, match=r"damaged.*koe5 convert --force"):
            koe5.load()
        (default_model_dir / "koe5_model.json").rename(default_model_dir / "moved.json")
        with pytest.raises(ModelCacheError, match="not written by koe5"):
            check_model_dir(default_model_dir, cached=True)
    finally:
        if (default_model_dir / "moved.json").exists():
            (default_model_dir / "moved.json").rename(default_model_dir / "koe5_model.json")
        weights.write_bytes(backup)
    check_model_dir(default_model_dir, cached=True)


def test_unknown_hub_id_offline_is_a_clear_error(caplog):
    with (
        caplog.at_level("WARNING", logger="koe5"),
        pytest.raises(ModelError, match="no-such-org/no-such-model"),
    ):
        koe5.load("no-such-org/no-such-model")
    assert "not in the model registry" in caplog.text


def test_lone_surrogate_is_an_input_error_naming_the_item(tiny):
    with pytest.raises(InputError, match=r"item 1: lone surrogate U\+D800 at character 2"):
        tiny.encode_queries(["서울", "x \ud800 y"])


def test_edited_cache_file_of_the_same_size_is_found(tiny_model_dir, tmp_path):
    """A size check alone let an edited config.json through and gave wrong vectors silently."""
    from koe5.registry import check_model_dir

    copy = tmp_path / "cached"
    shutil.copytree(tiny_model_dir, copy)
    check_model_dir(copy, cached=True)
    config = copy / "config.json"
    text = config.read_text(encoding="utf-8")
    edited = text.replace('"hidden_act": "gelu"', '"hidden_act": "relu"')
    assert edited != text and len(edited) == len(text)
    config.write_text(edited, encoding="utf-8")
    with pytest.raises(
        ModelCacheError, match=r"config.json was changed after conversion.*koe5 convert --force"
    ):
        check_model_dir(copy, cached=True)


def test_edited_weights_are_found_once_their_time_changes(tiny_model_dir, tmp_path):
    import os

    from koe5 import registry

    copy = tmp_path / "cached"
    shutil.copytree(tiny_model_dir, copy)  # copytree keeps modification times
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    stat = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    original = registry.HASH_EVERY_LOAD
    registry.HASH_EVERY_LOAD = 1024  # the tiny model's weights count as large here
    try:
        with pytest.raises(ModelCacheError, match=r"model\.safetensors was changed after conversion"):
            registry.check_model_dir(copy, cached=True)
    finally:
        registry.HASH_EVERY_LOAD = original


def test_unknown_hub_model_offline_fails_at_once_with_one_reason(monkeypatch, caplog):
    """Offline, an unknown hub id used to go through transformers' retries (18-36 log lines, up to a
    minute); now one look-up decides and the loader is never called."""
    import sentence_transformers

    def never(*args, **kwargs):
        raise AssertionError("the loader was called")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", never)
    with caplog.at_level("DEBUG"), pytest.raises(ModelError) as info:
        koe5.load("no-such-org/no-such-model")
    assert "offline mode is on (HF_HUB_OFFLINE)" in str(info.value)
    assert "no-such-org/no-such-model" in str(info.value)
    assert not [r for r in caplog.records if "Retry" in r.getMessage() or "retry" in r.getMessage()]


def test_leftovers_of_a_killed_conversion_are_removed(default_model_dir):
    from koe5 import registry

    folder = registry.default_model_dir()
    stale = folder.parent / f".{folder.name}.tmp-killed"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    said = []
    assert registry.ensure_default_model(log_fn=said.append) == folder
    assert not stale.exists() and any("left by an interrupted conversion" in s for s in said)
