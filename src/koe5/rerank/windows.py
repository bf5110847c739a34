"""Long candidates read in windows: a text scores as its best window (MaxP).

A cross-encoder reads ``max_length`` tokens of query and text together and cuts the rest, so a long
candidate (a page of a report, a chunk of 512 tokens) is judged by its start. With a ``window`` of
``n`` tokens, a text longer than that is cut into windows of ``n`` tokens that overlap by half, each
window is scored with the query, and the text gets its best window's score: the passage that answers
the question is read wherever it is on the page (Dai and Callan's BERT-MaxP, SIGIR 2019). Windows
are cut at token boundaries and given back as the text's own characters, so the reranker tokenises
them as it tokenises any text.

Example::

    pieces, owner = expand(tokenizer, ["짧은 글", long_page], window=128)
    # pieces: ["짧은 글", window 1 of the page, window 2, ...]; owner: [0, 1, 1, ...]
    best(logits_of_pieces, owner, 2)          # one value per text: its best window's
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split(tokenizer, text: str, window: int) -> list[str]:
    """``text`` itself if it has at most ``window`` tokens, else its windows of ``window`` tokens,
    each starting half a window after the one before; the last ends at the text's end."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
        "offset_mapping"
    ]
    if len(offsets) <= window:
        return [text]
    pieces = []
    step = max(1, window // 2)
    for start in range(0, len(offsets), step):
        end = min(start + window, len(offsets))
        pieces.append(text[offsets[start][0] : offsets[end - 1][1]])
        if end == len(offsets):
            break
    return pieces


def expand(tokenizer, texts: Sequence[str], window: int | None) -> tuple[list[str], np.ndarray]:
    """Every text's windows, in order, and for each window the index of its text; without a
    ``window`` the texts themselves."""
    if window is None:
        return list(texts), np.arange(len(texts))
    pieces: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        found = split(tokenizer, text, window)
        pieces.extend(found)
        owner.extend([i] * len(found))
    return pieces, np.asarray(owner, dtype=np.int64)


def best(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per text (``n`` of them), the highest value among its windows."""
    out = np.full(n, -np.inf, dtype=np.float32)
    np.maximum.at(out, owner, np.asarray(values, dtype=np.float32))
    return out
