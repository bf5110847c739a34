"""Token-aware chunking: every chunk fits the model with its prefix and title; spans and overlap."""

from __future__ import annotations

import itertools

import pytest

from koe5.errors import InputError
from koe5.search.chunking import Chunker


@pytest.fixture(scope="module")
def long_text(sample_texts):
    paragraphs = [" ".join(sample_texts[i : i + 3]) for i in range(0, len(sample_texts), 3)]
    return "\n".join(paragraphs * 12)


def test_chunks_fit_the_model_with_prefix_and_title(tiny, long_text):
    chunker = Chunker.for_encoder(tiny, max_tokens=64, overlap=16)
    title = "서울 한국어 문장 임베딩 모델"
    chunks = chunker.split(long_text, title=title)
    assert len(chunks) > 5
    lengths = [
        len(ids)
        for ids in tiny.tokenize([tiny.passage_prefix + chunker.embed_text(c.text, title) for c in chunks])
    ]
    assert max(lengths) <= 64
    assert min(lengths) > 16  # not needlessly small
    for c in chunks:
        assert long_text[c.start : c.end] == c.text and c.text == c.text.strip()


def test_chunks_cover_the_text_and_overlap(tiny, long_text):
    chunks = Chunker.for_encoder(tiny, max_tokens=64, overlap=16).split(long_text)
    assert chunks[0].start == 0 and chunks[-1].end == len(long_text.rstrip())
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start < a.end  # consecutive chunks share text, and move forward
    no_overlap = Chunker.for_encoder(tiny, max_tokens=64, overlap=0).split(long_text)
    for a, b in itertools.pairwise(no_overlap):
        assert b.start >= a.end


def test_breaks_prefer_sentence_ends(tiny, long_text):
    chunks = Chunker.for_encoder(tiny, max_tokens=96, overlap=0).split(long_text)
    sentence_ends = [c.text[-1] in ".?!" or long_text[c.end : c.end + 1] == "\n" for c in chunks[:-1]]
    assert all(sentence_ends)


def test_short_documents_are_one_unchanged_chunk(tiny):
    chunker = Chunker.for_encoder(tiny)
    assert chunker.max_tokens == tiny.max_length == 512
    (chunk,) = chunker.split("  서울은 대한민국의 수도이다.  ")
    assert (chunk.text, chunk.start, chunk.end) == ("서울은 대한민국의 수도이다.", 2, 17)
    assert chunker.split("") == [] and chunker.split(" \n ") == []
    assert chunker.embed_text("본문", "제목") == "제목 본문" and chunker.embed_text("본문") == "본문"


def test_a_text_without_spaces_is_still_cut_to_fit(tiny):
    text = "가" * 3000  # no word boundary anywhere
    chunker = Chunker.for_encoder(tiny, max_tokens=48, overlap=8)
    chunks = chunker.split(text)
    assert "".join(c.text for c in chunks).count("가") >= 3000
    assert max(len(x) for x in tiny.tokenize([tiny.passage_prefix + c.text for c in chunks])) <= 48


def test_settings_are_checked(tiny):
    with pytest.raises(InputError, match="no room"):
        Chunker.for_encoder(tiny, max_tokens=8)
    with pytest.raises(InputError, match="overlap"):
        Chunker.for_encoder(tiny, max_tokens=64, overlap=40)
    assert Chunker.for_encoder(tiny, max_tokens=4096).max_tokens == 512  # never above the model
