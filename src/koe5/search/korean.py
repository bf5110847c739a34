"""Korean morphological analysis for BM25: Kiwi morphemes, content words only.

Generic BM25 tokenizers split on spaces, so ``서울은``, ``서울의`` and ``서울에서`` become three
unrelated terms. Kiwi separates the particles and endings from the stems; keeping only content tags
(nouns, verb/adjective stems, roots, foreign words, numbers) leaves the words a query and a document
share. Queries and documents go through the same analysis.

Example::

    from koe5.search.korean import KiwiAnalyzer

    KiwiAnalyzer().analyze(["한국의 수도는 서울입니다.", "COVID-19 백신을 맞았다"])
    # [['한국', '수도', '서울'], ['covid', '19', '백신', '맞']]
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from koe5.errors import InputError

#: Kiwi (Sejong) tags kept by default: general and proper nouns, numerals, verb and adjective stems,
#: roots, foreign words, hanja and numbers. Particles (J*), endings (E*), suffixes (XS*), bound nouns
#: (NNB: 년, 등, 것), pronouns, adverbs and symbols carry little to match on and are dropped.
DEFAULT_TAGS: tuple[str, ...] = ("NNG", "NNP", "NR", "VV", "VA", "XR", "SL", "SH", "SN")

# Kiwi's own tag set (kiwipiepy 0.20): a configured tag outside it is a typo, not a choice.
_KIWI_TAGS = (
    "NNG NNP NNB NR NP VV VA VX VCP VCN MM MAG MAJ IC JKS JKC JKG JKO JKB JKV JKQ JX JC EP EF EC ETN ETM "
    "XPN XSN XSV XSA XSM XR SF SP SS SSO SSC SE SO SW SL SH SN SB UN W_URL W_EMAIL W_HASHTAG W_MENTION "
    "W_SERIAL W_EMOJI Z_CODA Z_SIOT USER0 USER1 USER2 USER3 USER4"
)
KIWI_TAGS = frozenset(_KIWI_TAGS.split())


@lru_cache(maxsize=4)
def _kiwi(num_workers: int | None):
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=num_workers)


class KiwiAnalyzer:
    """Texts -> lists of content morphemes (Kiwi), the same analysis for queries and documents.

    ``tags``: the Kiwi tags to keep (default :data:`DEFAULT_TAGS`; irregular variants such as
    ``VV-I`` count as their base tag). ``stopwords``: morphemes to drop after tagging (forms, e.g.
    ``{"것", "수"}``). Latin letters are lower-cased and text is NFKC-normalised first (full-width
    letters and digits, decomposed Hangul). ``num_workers``: Kiwi's threads (default: all cores).

    >>> KiwiAnalyzer().analyze(["서울에서 먹은 냉면"])      # doctest: +SKIP
    [['서울', '먹', '냉면']]
    """

    def __init__(
        self,
        tags: Iterable[str] = DEFAULT_TAGS,
        *,
        stopwords: Iterable[str] = (),
        num_workers: int | None = None,
    ) -> None:
        self.tags = tuple(dict.fromkeys(tags))
        unknown = [t for t in self.tags if t not in KIWI_TAGS]
        if unknown:
            raise InputError(
                f"unknown Kiwi tag(s) {', '.join(unknown)}; known: {' '.join(sorted(KIWI_TAGS))}"
            )
        if not self.tags:
            raise InputError("KiwiAnalyzer needs at least one tag to keep")
        self.stopwords = frozenset(stopwords)
        self.num_workers = num_workers
        self._keep = frozenset(self.tags)
        self._lock = threading.Lock()  # one Kiwi instance is shared; serialise calls on it

    @property
    def config(self) -> dict:
        """What decides the analysis (stored in index manifests; equal configs analyse alike)."""
        import kiwipiepy

        return {
            "analyzer": "kiwi",
            "kiwipiepy": kiwipiepy.__version__,
            "tags": list(self.tags),
            "stopwords": sorted(self.stopwords),
            "normalization": "NFKC, lower-cased Latin",
        }

    @classmethod
    def from_config(cls, config: dict, *, num_workers: int | None = None) -> KiwiAnalyzer:
        return cls(
            config.get("tags", DEFAULT_TAGS), stopwords=config.get("stopwords", ()), num_workers=num_workers
        )

    def analyze(self, texts: Sequence[str]) -> list[list[str]]:
        """Content morphemes of each text; an empty list for a text with none (e.g. only punctuation)."""
        if isinstance(texts, str):
            raise InputError("analyze takes a list of strings; wrap a single text in a list")
        items = list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InputError(f"item {i} is {type(text).__name__}, not str")
        # Kiwi gives nothing useful for blank input; skip it rather than send it
        todo = [i for i, t in enumerate(items) if t.strip()]
        out: list[list[str]] = [[] for _ in items]
        if not todo:
            return out
        normalised = [unicodedata.normalize("NFKC", items[i]) for i in todo]
        kiwi = _kiwi(self.num_workers)
        with self._lock:
            if kiwi.num_workers >= 1 and len(normalised) > 1:  # Kiwi batches only with worker threads
                analysed = kiwi.tokenize(normalised)
            else:
                analysed = [kiwi.tokenize(t) for t in normalised]
            for i, tokens in zip(todo, analysed, strict=True):
                out[i] = self._terms(tokens)
        return out

    def _terms(self, tokens) -> list[str]:
        terms = []
        for tok in tokens:
            tag = tok.tag.split("-", 1)[0]  # VV-I, VA-R: irregular conjugations of VV, VA
            if tag not in self._keep:
                continue
            form = tok.form.lower() if tag == "SL" else tok.form
            if form and form not in self.stopwords:
                terms.append(form)
        return terms

    def __repr__(self) -> str:
        return f"KiwiAnalyzer(tags={self.tags!r})"
