"""Token-aware chunking: split long documents into overlapping pieces the model reads whole.

A chunk is a span of the document's text whose embedding input (``passage prefix + title + chunk``,
special tokens included) fits the model's ``max_length`` tokens, so nothing is truncated. Breaks fall
at a sentence end where one lies in the last half of the window, else at a word boundary; consecutive
chunks share about ``overlap`` tokens, so a sentence cut at one chunk's end is whole in the next.
A document that fits is one chunk with its text unchanged.

Example::

    import koe5
    from koe5.search.chunking import Chunker

    chunker = Chunker.for_encoder(koe5.load(), overlap=64)
    chunks = chunker.split(long_text, title="문서 제목")
    [(c.start, c.end) for c in chunks]               # character spans in long_text
    chunker.embed_text(chunks[0].text, "문서 제목")     # what the model encodes (prefix added by it)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from koe5.errors import InputError

_SENTENCE_END = frozenset(".?!。！？…\n")
MIN_BUDGET = 16  # tokens of text per chunk below which chunking stops making sense


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: its text and its character span ``[start, end)`` in the document."""

    text: str
    start: int
    end: int


class Chunker:
    """Splits texts into chunks of at most ``max_tokens`` tokens including the prefix and specials.

    ``tokenizer``: a Hugging Face fast tokenizer (offsets are needed); ``prefix``: the passage prefix
    the encoder adds; ``overlap``: tokens shared by consecutive chunks; ``title_tokens``: a title is
    repeated in every chunk's embedding input, cut to this many tokens.
    """

    def __init__(
        self,
        tokenizer,
        *,
        max_tokens: int = 512,
        overlap: int = 64,
        prefix: str = "passage: ",
        title_tokens: int = 64,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = int(max_tokens)
        self.overlap = int(overlap)
        self.prefix = prefix
        self.title_tokens = int(title_tokens)
        specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
        # The prefix alone may count one token more than it costs in context (a trailing space that
        # merges with the next word): the budget errs on the safe side, and split() verifies anyway.
        prefix_len = len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
        self._fixed = specials + prefix_len
        if self.max_tokens - self._fixed < MIN_BUDGET:
            raise InputError(f"max_tokens={max_tokens} leaves no room for text after the prefix")
        half = (self.max_tokens - self._fixed) // 2
        if not 0 <= self.overlap <= half:
            raise InputError(f"overlap must be between 0 and half a chunk ({half} tokens), got {overlap}")

    @classmethod
    def for_encoder(cls, encoder, *, max_tokens: int | None = None, overlap: int = 64) -> Chunker:
        """A chunker for ``encoder``: its tokenizer, passage prefix and (at most) its ``max_length``."""
        limit = encoder.max_length if max_tokens is None else min(int(max_tokens), encoder.max_length)
        return cls(encoder.tokenizer, max_tokens=limit, overlap=overlap, prefix=encoder.passage_prefix)

    @property
    def config(self) -> dict:
        return {
            "max_tokens": self.max_tokens,
            "overlap": self.overlap,
            "title_tokens": self.title_tokens,
            "prefix": self.prefix,
        }

    def _tokens(self, texts: Sequence[str]) -> list:
        enc = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=False,
            verbose=False,
        )
        return enc["offset_mapping"]

    def short_title(self, title: str) -> str:
        """``title`` cut to ``title_tokens`` tokens (at a token boundary)."""
        if not title:
            return ""
        offsets = self._tokens([title])[0]
        if len(offsets) <= self.title_tokens:
            return title
        return title[: offsets[self.title_tokens - 1][1]].rstrip()

    def embed_text(self, text: str, title: str = "") -> str:
        """The text the model encodes for a chunk: title and chunk joined by a space (as MTEB joins)."""
        title = self.short_title(title)
        return f"{title} {text}".strip() if title else text

    def split(self, text: str, title: str = "") -> list[Chunk]:
        """Chunks of one document (none for an empty or blank text)."""
        return self.split_many([text], [title])[0]

    def split_many(self, texts: Sequence[str], titles: Sequence[str] | None = None) -> list[list[Chunk]]:
        """Chunks of each document; tokenizes in batches (the tokenizer runs in parallel)."""
        titles = list(titles) if titles is not None else [""] * len(texts)
        if len(titles) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(titles)} titles")
        short = [self.short_title(t) for t in titles]
        title_cost = [len(o) + 1 if t else 0 for t, o in zip(short, self._tokens(short), strict=True)]
        out: list[list[Chunk]] = []
        for text, offsets, cost in zip(texts, self._tokens(texts), title_cost, strict=True):
            out.append(_split(text, offsets, self.max_tokens - self._fixed - cost, self.overlap))
        # Verify against the real count (prefix, title and chunk tokenized together) and split again,
        # with a smaller budget, any document with a chunk over the limit.
        for i in range(len(texts)):
            budget = self.max_tokens - self._fixed - title_cost[i]
            while out[i] and (excess := self._excess(out[i], short[i])) > 0:
                budget -= excess + 1
                if budget < MIN_BUDGET:
                    raise InputError(f"document {i}: cannot fit its chunks into {self.max_tokens} tokens")
                out[i] = _split(texts[i], self._tokens([texts[i]])[0], budget, min(self.overlap, budget // 2))
        return out

    def _excess(self, chunks: list[Chunk], title: str) -> int:
        inputs = [self.prefix + (f"{title} {c.text}".strip() if title else c.text) for c in chunks]
        lengths = [
            len(ids) for ids in self.tokenizer(inputs, add_special_tokens=True, verbose=False)["input_ids"]
        ]
        return max(lengths) - self.max_tokens


def _split(text: str, offsets: Sequence[tuple[int, int]], budget: int, overlap: int) -> list[Chunk]:
    """Windows of at most ``budget`` tokens, ending at sentence or word starts, ``overlap`` shared."""
    n = len(offsets)
    if not text.strip():
        return []
    if n <= budget:
        stripped = text.strip()
        start = text.index(stripped[0])
        return [Chunk(stripped, start, start + len(stripped))]
    starts = [a for a, _ in offsets]
    # a token starts a word if whitespace precedes its content (SentencePiece offsets include it)
    word = [True] + [
        starts[i] > offsets[i - 1][1] or text[starts[i] : starts[i] + 1].isspace() for i in range(1, n)
    ]
    sentence = [False] * n
    for i in range(1, n):
        if word[i]:
            before = text[offsets[i - 1][0] : max(starts[i], offsets[i - 1][1])]
            gap = text[offsets[i - 1][1] : offsets[i][1]]
            sentence[i] = (before.rstrip()[-1:] in _SENTENCE_END) or "\n" in gap
    chunks: list[Chunk] = []
    s = 0
    while True:
        limit = s + budget
        if limit >= n:
            end = n
        else:
            floor = s + budget // 2
            end = next((e for e in range(limit, floor, -1) if sentence[e]), 0) or next(
                (e for e in range(limit, floor, -1) if word[e]), limit
            )
        a, b = offsets[s][0], offsets[end - 1][1]
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        if piece:
            chunks.append(Chunk(piece, a + lead, a + lead + len(piece)))
        if end >= n:
            return chunks
        target = max(end - overlap, s + 1)
        s = next((i for i in range(target, end) if word[i]), target)
