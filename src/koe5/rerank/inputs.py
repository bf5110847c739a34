"""The rules a rerank call's input must meet, checked before the model sees anything.

Each rule raises :class:`~koe5.errors.InputError` naming what is wrong: a query that is not a string
or is blank, a candidate that is not a string (by its index), a ``top_k`` below 1 or above the number
of candidates. An empty candidate list is not an error: it ranks to an empty list (for any ``top_k``
of at least 1).

Example::

    from koe5.rerank.inputs import check_candidates, check_query, check_top_k

    check_query("한국의 수도는?")
    texts = check_candidates(["서울은 수도이다.", "부산은 항구 도시이다."])
    check_top_k(1, len(texts))
"""

from __future__ import annotations

from collections.abc import Iterable

from koe5.encoder import check_texts
from koe5.errors import InputError
from koe5.textio import check_unicode


def check_query(query: object) -> str:
    """The query, if it is a string with something in it besides whitespace."""
    if not isinstance(query, str):
        raise InputError(f"the query is {type(query).__name__}, not str: {query!r:.60}")
    if not query.strip():
        raise InputError("the query is empty: a reranker scores passages against a question")
    check_unicode(query, "the query")
    return query


def check_candidates(texts: Iterable[str]) -> list[str]:
    """The candidate texts as a list; a lone string is refused (it would rank its characters)."""
    if isinstance(texts, str):
        raise InputError("candidates must be a list of strings, not one str (wrap it: [text])")
    return check_texts(texts)


def check_top_k(top_k: int | None, n: int) -> int:
    """How many ranked candidates to return: all (``None``) or ``1 ≤ top_k ≤ n``; with no candidates
    at all, any ``top_k ≥ 1`` returns none (an empty list is not an error)."""
    if top_k is None:
        return n
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InputError(f"top_k must be an integer, got {type(top_k).__name__}: {top_k!r:.40}")
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, got {top_k}")
    if n and top_k > n:
        raise InputError(f"top_k {top_k} is more than the {n} candidate(s) given")
    return min(top_k, n)
