"""Kiwi analysis for BM25: content morphemes, configurable tags, empty analyses."""

from __future__ import annotations

import pytest

from koe5.errors import InputError
from koe5.search.korean import DEFAULT_TAGS, KiwiAnalyzer


@pytest.fixture(scope="module")
def analyzer():
    return KiwiAnalyzer()


def test_particles_and_endings_are_split_off(analyzer):
    seoul = analyzer.analyze(["서울은 대한민국의 수도이다.", "서울의 수도권에서", "서울에서"])
    assert seoul[0] == ["서울", "대한민국", "수도"]
    assert all(terms[0] == "서울" for terms in seoul)


def test_verbs_foreign_words_and_numbers(analyzer):
    (terms,) = analyzer.analyze(["COVID-19 백신을 맞았다"])
    assert terms == ["covid", "19", "백신", "맞"]
    (fullwidth,) = analyzer.analyze(["ＡＢＣ１２３"])  # NFKC: full-width letters and digits
    assert fullwidth == analyzer.analyze(["ABC123"])[0]


def test_empty_analyses_are_empty_lists(analyzer):
    assert analyzer.analyze(["...!?", "", "   ", "그리고 또는", "😀👍"]) == [[], [], [], [], []]
    assert analyzer.analyze([]) == []


def test_tags_and_stopwords_are_configurable():
    nouns = KiwiAnalyzer(tags=["NNG", "NNP"])
    assert nouns.analyze(["맛있는 냉면을 먹었다"]) == [["냉면"]]
    assert KiwiAnalyzer(stopwords={"냉면"}).analyze(["맛있는 냉면을 먹었다"]) == [["맛있", "먹"]]
    assert nouns.config["tags"] == ["NNG", "NNP"]
    assert KiwiAnalyzer.from_config(nouns.config).tags == ("NNG", "NNP")
    assert KiwiAnalyzer().tags == DEFAULT_TAGS


def test_bad_input():
    with pytest.raises(InputError, match="unknown Kiwi tag"):
        KiwiAnalyzer(tags=["NNG", "NOUN"])
    with pytest.raises(InputError, match="list of strings"):
        KiwiAnalyzer().analyze("한 문장")
    with pytest.raises(InputError, match="item 1 is bytes"):
        KiwiAnalyzer().analyze(["좋다", b"bytes"])
