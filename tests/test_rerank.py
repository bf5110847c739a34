"""The reranker: scores as sentence-transformers computes them, rankings, batching, bad input, folders."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from koe5.errors import ConfigError, InputError, ModelError, TooLongError
from koe5.rerank import Ranked, Reranker, default_reranker_dir, known_rerankers, ranked
from koe5.rerank.folders import inspect_folder

QUERY = "한국의 수도는 어디인가요?"


@pytest.fixture(scope="module")
def reranker(tiny_reranker_dir) -> Reranker:
    return Reranker.load(str(tiny_reranker_dir), device="cpu")


@pytest.fixture(scope="module")
def cross_encoder(tiny_reranker_dir):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_reranker_dir), device="cpu")


@pytest.fixture()
def long_texts(sample_texts) -> list[str]:
    """Two short texts and two over 32 tokens with the query (the one at 2 far over)."""
    return [sample_texts[0], " ".join(sample_texts * 3), sample_texts[1], " ".join(sample_texts[:4])]


def test_scores_equal_cross_encoder_predict_raw_and_sigmoid(reranker, cross_encoder, sample_texts):
    import torch

    pairs = [(QUERY, t) for t in sample_texts]
    expected_sigmoid = cross_encoder.predict(pairs)
    expected_raw = cross_encoder.predict(pairs, activation_fn=torch.nn.Identity())
    scores = reranker.score(QUERY, sample_texts)
    assert scores.dtype == np.float32 and scores.shape == (len(sample_texts),)
    np.testing.assert_allclose(scores, expected_sigmoid, atol=1e-5)
    np.testing.assert_allclose(reranker.score(QUERY, sample_texts, raw=True), expected_raw, atol=1e-5)
    assert np.ptp(expected_raw) > 0  # the seeded head tells pairs apart: the comparison means something


def test_pair_lengths_are_the_tokenizer_s_pair_lengths(reranker, sample_texts):
    expected = [len(reranker.tokenizer(QUERY, t)["input_ids"]) for t in sample_texts]
    assert reranker.pair_lengths(QUERY, sample_texts).tolist() == expected


def test_rank_is_best_first_and_ties_go_to_the_lower_index(reranker, sample_texts):
    texts = [sample_texts[2], sample_texts[0], sample_texts[2], sample_texts[5]]  # 0 and 2 are equal
    scores = reranker.score(QUERY, texts)
    hits = reranker.rank(QUERY, texts)
    assert [h.score for h in hits] == sorted((float(s) for s in scores), reverse=True)
    assert {h.index for h in hits} == {0, 1, 2, 3}
    assert all(h.text == texts[h.index] for h in hits)
    twins = [h.index for h in hits if h.text == sample_texts[2]]
    assert twins == [0, 2]
    assert ranked(np.array([0.5, 0.9, 0.5, 0.1]), list("abcd")) == [
        Ranked(1, 0.9, "b"), Ranked(0, 0.5, "a"), Ranked(2, 0.5, "c"), Ranked(3, 0.1, "d"),
    ]  # fmt: skip


def test_top_k_bounds(reranker, sample_texts):
    texts = sample_texts[:3]
    assert [h.index for h in reranker.rank(QUERY, texts, top_k=2)] == [
        h.index for h in reranker.rank(QUERY, texts)[:2]
    ]
    assert len(reranker.rank(QUERY, texts, top_k=3)) == 3
    for bad, words in ((0, "at least 1"), (-1, "at least 1"), (4, "more than the 3")):
        with pytest.raises(InputError, match=words):
            reranker.rank(QUERY, texts, top_k=bad)
    with pytest.raises(InputError, match="integer"):
        reranker.rank(QUERY, texts, top_k=True)


def test_no_candidates_give_an_empty_result_without_the_model(reranker, monkeypatch):
    def untouchable(*args, **kwargs):
        raise AssertionError("the model was used")

    monkeypatch.setattr(reranker, "pair_lengths", untouchable)
    monkeypatch.setattr(reranker, "_logits", untouchable)
    assert reranker.score(QUERY, []).shape == (0,)
    assert reranker.rank(QUERY, [], top_k=5) == []
    stats = reranker.score_with_stats(QUERY, iter([]))
    assert (stats.truncated, stats.tokens) == (0, 0)


@pytest.mark.parametrize(
    ("query", "texts", "words"),
    [
        (QUERY, ["좋아요", 5, "싫어요"], "item 1 is int, not str"),
        (QUERY, ["좋아요", b"bytes"], "item 1 is bytes"),
        (QUERY, "서울", "not one str"),
        ("", ["좋아요"], "the query is empty"),
        ("   \n", ["좋아요"], "the query is empty"),
        (None, ["좋아요"], "the query is NoneType"),
        (QUERY, ["좋아요", "bad \ud800"], "item 1: lone surrogate"),
    ],
)
def test_bad_input_is_named(reranker, query, texts, words):
    with pytest.raises(InputError, match=words):
        reranker.score(query, texts)


def test_truncation_is_counted_and_matches_sentence_transformers(tiny_reranker_dir, long_texts):
    from sentence_transformers import CrossEncoder

    short = Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=32)
    lengths = short.pair_lengths(QUERY, long_texts)
    assert (lengths > 32).tolist() == [False, True, False, True]
    stats = short.score_with_stats(QUERY, long_texts)
    assert stats.truncated == 2
    assert stats.tokens == int(np.minimum(lengths, 32).sum())
    expected = CrossEncoder(str(tiny_reranker_dir), device="cpu", max_length=32).predict(
        [(QUERY, t) for t in long_texts]
    )
    np.testing.assert_allclose(stats.scores, expected, atol=1e-5)


def test_no_truncate_refuses_naming_the_item_its_tokens_and_the_limit(tiny_reranker_dir, long_texts):
    short = Reranker.load(str(tiny_reranker_dir), device="cpu", max_length=32)
    tokens = int(short.pair_lengths(QUERY, long_texts)[1])
    with pytest.raises(TooLongError, match=rf"item 1: .* {tokens} tokens .* 32 \(2 item"):
        short.score(QUERY, long_texts, truncate=False)
    assert short.score(QUERY, [long_texts[0]], truncate=False).shape == (1,)  # short ones pass


def test_token_budget_batches_score_like_one_pair_at_a_time(tiny_reranker_dir, sample_texts, monkeypatch):
    texts = [*sample_texts, " ".join(sample_texts)]
    together = Reranker.load(str(tiny_reranker_dir), device="cpu")
    alone = Reranker.load(str(tiny_reranker_dir), device="cpu", max_tokens=1)  # every pair over budget
    passes = {"together": 0, "alone": 0}
    for name, r in (("together", together), ("alone", alone)):
        forward = r._logits

        def counted(query, batch, name=name, forward=forward):
            passes[name] += 1
            return forward(query, batch)

        monkeypatch.setattr(r, "_logits", counted)
    np.testing.assert_allclose(together.score(QUERY, texts), alone.score(QUERY, texts), atol=1e-5)
    assert passes == {"together": 1, "alone": len(texts)}


def test_calls_from_several_threads_agree(reranker, sample_texts):
    expected = reranker.score(QUERY, sample_texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: reranker.score(QUERY, sample_texts), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_an_embedding_folder_is_refused_naming_it_before_weights_load(tiny_model_dir, monkeypatch):
    import koe5.rerank.model as model_module

    monkeypatch.setattr(model_module, "_load_cross_encoder", lambda *a: pytest.fail("weights were loaded"))
    with pytest.raises(ModelError, match="embedding model") as caught:
        Reranker.load(str(tiny_model_dir))
    assert str(tiny_model_dir) in str(caught.value)


def _copy_config(src: Path, dst: Path, **changes) -> Path:
    dst.mkdir()
    config = json.loads((src / "config.json").read_text(encoding="utf-8")) | changes
    (dst / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


def test_folders_without_a_one_label_classification_head_are_refused(tiny_reranker_dir, tmp_path):
    two = _copy_config(tiny_reranker_dir, tmp_path / "two", id2label={"0": "no", "1": "yes"})
    with pytest.raises(ModelError, match="has 2 labels"):
        Reranker.load(str(two))
    bare = _copy_config(tiny_reranker_dir, tmp_path / "bare", architectures=["BertModel"])
    with pytest.raises(ModelError, match=r"bare is not a reranker: .* BertModel, none of them"):
        Reranker.load(str(bare))
    with pytest.raises(ModelError, match=r"config\.json is missing"):
        Reranker.load(str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        Reranker.load(str(tmp_path / "nowhere"))


def test_a_plain_hugging_face_folder_scores_like_the_cross_encoder_folder(reranker, tiny_reranker_dir):
    plain = tiny_reranker_dir.parent / "hf"  # what the fixture saved before CrossEncoder.save
    assert not (plain / "modules.json").exists()
    texts = ["서울은 대한민국의 수도이다.", "부산은 항구 도시이다."]
    np.testing.assert_allclose(
        Reranker.load(str(plain), device="cpu").score(QUERY, texts), reranker.score(QUERY, texts), atol=1e-6
    )


def test_max_length_comes_from_the_folder_and_cannot_exceed_its_positions(reranker, tiny_reranker_dir):
    assert reranker.max_length == 512  # the tokenizer's limit, within the 512 positions
    with pytest.raises(ConfigError, match=r"max_length 600 is more than .* can read \(512 positions\)"):
        Reranker.load(str(tiny_reranker_dir), max_length=600)
    with pytest.raises(ConfigError, match="at least 8"):
        Reranker.load(str(tiny_reranker_dir), max_length=0)


def test_xlm_roberta_positions_start_after_the_padding_index(tmp_path):
    config = {"architectures": ["XLMRobertaForSequenceClassification"], "model_type": "xlm-roberta",
              "max_position_embeddings": 514, "pad_token_id": 1, "id2label": {"0": "LABEL_0"}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 8192}', encoding="utf-8")
    facts = inspect_folder(tmp_path, "xlmr")
    assert (facts.positions, facts.tokenizer_max, facts.num_labels) == (512, 8192, 1)


def test_the_missing_default_says_to_run_train_reranker(isolated_cache):
    assert not default_reranker_dir().exists()
    with pytest.raises(ModelError, match="run `koe5 train-reranker`"):
        Reranker.load()


def test_the_default_loads_from_the_cache_once_trained(tiny_reranker_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KOE5_CACHE", str(tmp_path))
    shutil.copytree(tiny_reranker_dir, default_reranker_dir())
    assert default_reranker_dir() == tmp_path / "models" / "koe5-reranker-small"
    loaded = Reranker.load(device="cpu")
    # the registry's length (the recipe's 256), not the tiny folder's 512
    assert (loaded.name, loaded.activation, loaded.max_length) == ("koe5-reranker-small", "sigmoid", 256)


def test_an_unknown_hub_id_offline_is_a_model_error():
    with pytest.raises(ModelError, match=r"nobody/no-such-reranker: .*offline"):
        Reranker.load("nobody/no-such-reranker")


def test_save_and_load_round_trip(reranker, sample_texts, tmp_path, monkeypatch):
    saved = reranker.save(tmp_path / "saved")
    assert (
        json.loads((saved / "config_sentence_transformers.json").read_text())["model_type"] == "CrossEncoder"
    )
    assert not list(tmp_path.glob(".saved.tmp-*"))  # written beside it, then renamed
    again = Reranker.load(str(saved), device="cpu")
    np.testing.assert_allclose(
        again.score(QUERY, sample_texts), reranker.score(QUERY, sample_texts), atol=1e-6
    )
    with pytest.raises(ModelError, match="already exists"):
        reranker.save(saved)
    monkeypatch.setattr(reranker, "activation", "identity")
    reranker.save(saved, overwrite=True)
    identity = Reranker.load(str(saved), device="cpu")
    assert identity.activation == "identity"
    np.testing.assert_allclose(
        identity.score(QUERY, sample_texts), reranker.score(QUERY, sample_texts, raw=True), atol=1e-6
    )


def test_the_registry_is_complete_data():
    registry = known_rerankers()
    assert set(registry) == {"default", "BAAI/bge-reranker-v2-m3", "dragonkue/bge-reranker-v2-m3-ko",
                             "Dongjin-kr/ko-reranker"}  # fmt: skip
    for spec in registry.values():
        assert spec.known and spec.max_length and spec.activation in ("sigmoid", "identity")
        assert spec.licence and spec.description and spec.query_prefix == spec.passage_prefix == ""
    assert registry["Dongjin-kr/ko-reranker"].activation == "identity"
    assert registry["BAAI/bge-reranker-v2-m3"].activation == "sigmoid"
