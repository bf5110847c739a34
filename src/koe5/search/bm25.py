"""Korean BM25: Kiwi content morphemes (:mod:`koe5.search.korean`) scored by bm25s.

The analysed tokens of every indexed text are kept beside bm25s's score matrix, so texts can be added
or removed without analysing the rest again: only bm25s's (fast, vectorised) statistics are rebuilt,
because every term's IDF and the average length depend on the whole collection.

Example::

    from koe5.search.bm25 import KoreanBM25

    bm25 = KoreanBM25()
    bm25.index(["서울은 대한민국의 수도이다.", "부산은 항구 도시이다.", "서울의 지하철"])
    rows, scores = bm25.search(["서울에서 지하철 타기"], k=2)
    rows[0]          # array([2, 0]): row indices into the indexed texts, best first
    bm25.save("bm25-folder"); again = KoreanBM25.load("bm25-folder")
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from koe5.errors import InputError
from koe5.search.korean import KiwiAnalyzer

_PARAMS = "koe5_bm25.json"
_TOKENS = "tokens.npz"
FORMAT_VERSION = 1


class KoreanBM25:
    """BM25 (Lucene variant, bm25s) over Kiwi morphemes.

    ``search`` returns ``(rows, scores)``, both ``(n_queries, k)``: row indices into the indexed texts
    (best first) and their scores. Only texts sharing at least one term with the query are returned;
    the rest of a row is padded with ``-1`` and ``-inf`` (so a query whose analysis is empty, e.g. only
    punctuation or stopwords, gets an all-padding row rather than an error).
    """

    def __init__(self, analyzer: KiwiAnalyzer | None = None, k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise InputError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={k1}, b={b})")
        self.analyzer = analyzer or KiwiAnalyzer()
        self.k1, self.b = float(k1), float(b)
        self._vocab: dict[str, int] = {}
        self._ids = np.zeros(0, dtype=np.int32)  # every text's term ids, concatenated
        self._offsets = np.zeros(1, dtype=np.int64)  # text i is _ids[_offsets[i]:_offsets[i + 1]]
        self._bm25 = None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocab)

    # --- building ---------------------------------------------------------------------------

    def index(self, texts: Sequence[str], *, show_progress: bool = False) -> KoreanBM25:
        """Index ``texts`` (replacing anything indexed before); row i of the results is ``texts[i]``."""
        return self.index_tokens(self.analyzer.analyze(texts), show_progress=show_progress)

    def index_tokens(self, tokens: Sequence[Sequence[str]], *, show_progress: bool = False) -> KoreanBM25:
        """Index texts already analysed (with this analyzer's settings)."""
        self._vocab, self._ids, self._offsets = {}, np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
        self._append(tokens)
        self._rebuild(show_progress)
        return self

    def add(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Append ``texts``; returns their row indices. Only the new texts are analysed."""
        return self.add_tokens(self.analyzer.analyze(texts), show_progress=show_progress)

    def add_tokens(self, tokens: Sequence[Sequence[str]], *, show_progress: bool = False) -> np.ndarray:
        start = len(self)
        self._append(tokens)
        self._rebuild(show_progress)
        return np.arange(start, len(self))

    def remove(self, rows: Sequence[int] | np.ndarray) -> None:
        """Drop the given rows; the remaining rows keep their order and are renumbered 0..n-1."""
        drop = np.zeros(len(self), dtype=bool)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise InputError(f"row out of range 0..{len(self) - 1}")
        drop[rows] = True
        lengths = np.diff(self._offsets)
        keep_token = np.repeat(~drop, lengths)
        self._ids = self._ids[keep_token]
        self._offsets = np.concatenate([[0], np.cumsum(lengths[~drop])]).astype(np.int64)
        self._rebuild(False)

    def tokens(self, row: int) -> list[str]:
        """The analysed terms of one indexed text (for inspection and tests)."""
        words = self._words()
        return [words[i] for i in self._ids[self._offsets[row] : self._offsets[row + 1]]]

    def _words(self) -> list[str]:
        words = [""] * len(self._vocab)
        for word, i in self._vocab.items():
            words[i] = word
        return words

    def _append(self, tokens: Sequence[Sequence[str]]) -> None:
        vocab = self._vocab
        new_ids = [vocab.setdefault(t, len(vocab)) for doc in tokens for t in doc]
        lengths = np.fromiter((len(doc) for doc in tokens), dtype=np.int64, count=len(tokens))
        self._ids = np.concatenate([self._ids, np.asarray(new_ids, dtype=np.int32)])
        self._offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)])

    def _rebuild(self, show_progress: bool) -> None:
        bm25s = _bm25s()
        if len(self) == 0:
            self._bm25 = None
            return
        per_doc = np.split(self._ids, self._offsets[1:-1])
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._bm25.index(
            ([d.tolist() for d in per_doc], dict(self._vocab)),
            create_empty_token=False,
            show_progress=show_progress,
        )

    # --- searching --------------------------------------------------------------------------

    def query_ids(self, query: str) -> np.ndarray:
        """The vocabulary ids of a query's terms (terms the index never saw are dropped)."""
        return self._term_ids(self.analyzer.analyze([query])[0])

    def _term_ids(self, terms: list[str]) -> np.ndarray:
        return np.asarray([self._vocab[t] for t in terms if t in self._vocab], dtype=np.int32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed text for ``query`` (float32, 0 for texts sharing no term)."""
        return self.scores_of_ids(self.query_ids(query))

    def scores_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`scores` of a query already turned into term ids (:meth:`query_ids`)."""
        if self._bm25 is None or ids.size == 0:
            return np.zeros(len(self), dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids.tolist()), dtype=np.float32)

    def idf_total(self, ids: np.ndarray) -> float:
        """The sum of Lucene IDF, ``ln(1 + (N - df + 0.5) / (df + 0.5))``, over the distinct terms
        among ``ids`` that some indexed text has (the fusion's coverage signal)."""
        if self._bm25 is None or ids.size == 0:
            return 0.0
        indptr, terms = self._bm25.scores["indptr"], np.unique(ids)
        df = (indptr[terms + 1] - indptr[terms]).astype(np.float64)  # the query's terms only, not all
        df = df[df > 0]
        return float(np.log1p((len(self) - df + 0.5) / (df + 0.5)).sum())

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows and scores per query, ``(n_queries, k)`` each; ``-1`` / ``-inf`` padding."""
        if isinstance(queries, str):
            raise InputError("search takes a list of queries; wrap a single query in a list")
        if k < 1:
            raise InputError(f"k must be positive, got {k}")
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        out = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for q, terms in enumerate(self.analyzer.analyze(queries)):  # one batch: Kiwi runs in parallel
            top, vals = top_k(self.scores_of_ids(self._term_ids(terms)), k)
            rows[q, : len(top)], out[q, : len(top)] = top, vals
        return rows, out

    # --- storage ----------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder`` (bm25s's files plus the analysed tokens and settings)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None:
            self._bm25.save(str(folder / "bm25s"), show_progress=False)
        np.savez(folder / _TOKENS, ids=self._ids, offsets=self._offsets)
        params = {
            "format": "koe5-bm25",
            "version": FORMAT_VERSION,
            "k1": self.k1,
            "b": self.b,
            "method": "lucene",
            "analyzer": self.analyzer.config,
            "texts": len(self),
            "vocabulary": self._words(),
        }
        (folder / _PARAMS).write_text(json.dumps(params, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> KoreanBM25:
        """Read an index written by :meth:`save`."""
        bm25s = _bm25s()
        folder = Path(folder)
        try:
            params = json.loads((folder / _PARAMS).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError(f"{folder}: not a koe5 BM25 index ({_PARAMS} is missing)") from exc
        if params.get("format") != "koe5-bm25" or params.get("version") != FORMAT_VERSION:
            raise InputError(f"{folder}: unsupported BM25 index format {params.get('version')!r}")
        self = cls(KiwiAnalyzer.from_config(params["analyzer"]), k1=params["k1"], b=params["b"])
        self._vocab = {word: i for i, word in enumerate(params["vocabulary"])}
        with np.load(folder / _TOKENS) as arrays:
            self._ids, self._offsets = arrays["ids"], arrays["offsets"]
        if len(self):
            self._bm25 = bm25s.BM25.load(str(folder / "bm25s"), show_progress=False)
        return self


def _bm25s():
    """bm25s, imported on first use, its logger quietened: it sets itself to DEBUG on import and would
    print "Building index from IDs" on every build."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest positive scores, best first (ties: lower index first)."""
    hits = np.flatnonzero(scores > 0)
    if hits.size > k:
        part = np.argpartition(-scores[hits], k - 1)[:k]
        hits = hits[part]
    order = np.lexsort((hits, -scores[hits]))
    hits = hits[order]
    return hits, scores[hits]
