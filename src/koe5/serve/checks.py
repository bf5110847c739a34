"""The checks every embedding, search and rerank request passes, and the steps around the model they share.

Limits on the texts (``max_inputs``, ``max_chars``), the ``dimensions`` asked for, and truncation
(the request's ``truncate``, else the server's ``auto_truncate``). Each refusal is an
:class:`~koe5.serve.errors.ApiError` naming the limit and the request's field.

Example::

    texts = check_texts(request.input, "input", state.settings)    # 413 max_inputs / max_chars
    dimensions = check_dimensions(request.dimensions, state.encoder, state.settings)
    result = await encode(state, texts, "passage", request.truncate, "input")
    vectors = shorten(result.vectors, dimensions)
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import numpy as np

from koe5.search.ranking import filter_values
from koe5.serve.batcher import Encoded
from koe5.serve.errors import ApiError
from koe5.serve.settings import Settings
from koe5.serve.state import ServeState
from koe5.textio import surrogate_at


def check_length(text: str, name: str, param: str, settings: Settings) -> None:
    """413 ``max_chars`` when ``text`` (called ``name`` in the message) is over the limit."""
    if len(text) > settings.max_chars:
        raise ApiError(
            413,
            "max_chars",
            f"{name} has {len(text)} characters; at most {settings.max_chars} (max_chars)",
            param=param,
        )


def check_texts(value: str | list[str], param: str, settings: Settings) -> list[str]:
    """The request's text or texts as a list, after checking how many and how long they are."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise ApiError(422, "empty_input", f"{param} is an empty list", param=param)
    if len(texts) > settings.max_inputs:
        raise ApiError(
            413,
            "max_inputs",
            f"{len(texts)} inputs; at most {settings.max_inputs} per request (max_inputs)",
            param=param,
        )
    for i, text in enumerate(texts):
        check_length(text, f"{param}[{i}]", param, settings)
        check_unicode(text, f"{param}[{i}]", param)
    return texts


def check_query(query: str, settings: Settings) -> str:
    """A search's or a rerank's ``query``: not blank (422 ``empty_input``), not over ``max_chars``,
    valid Unicode."""
    if not query.strip():
        raise ApiError(422, "empty_input", "query is empty", param="query")
    check_length(query, "query", "query", settings)
    check_unicode(query, "query", "query")
    return query


def check_unicode(text: str, name: str, param: str) -> None:
    """422 ``invalid_text`` for a lone surrogate (a JSON escape such as ``"\\ud800"`` gives one):
    no tokenizer accepts it."""
    at = surrogate_at(text)
    if at is not None:
        raise ApiError(
            422,
            "invalid_text",
            f"{name}: lone surrogate U+{ord(text[at]):04X} at character {at}: not valid Unicode text",
            param=param,
        )


def check_filters(filters: dict | None) -> None:
    """422 naming the key unless each filter value is a scalar or a list of scalars."""
    for key, value in (filters or {}).items():
        if filter_values(value) is None:
            raise ApiError(
                422,
                "invalid_request",
                f"filters.{key}: a value must be a string, number, boolean or null, or a list of them "
                f"(got {type(value).__name__})",
                param="filters",
            )


def check_dimensions(dimensions: int | None, encoder, settings: Settings) -> int | None:
    """The dimensions to cut the vectors to, or ``None`` for the model's own."""
    dim = encoder.dim
    if dimensions is None or dimensions == dim:
        return None
    if dimensions > dim:
        raise ApiError(
            422,
            "dimensions",
            f"{encoder.name} has {dim} dimensions; ask for 1 to {dim}",
            param="dimensions",
        )
    trained = getattr(getattr(encoder, "spec", None), "extra", {}).get("matryoshka_dims")
    if not (settings.allow_dimensions or trained):
        raise ApiError(
            422,
            "dimensions",
            f"{encoder.name} was not trained for shorter embeddings (Matryoshka), so its first "
            f"{dimensions} of {dim} dimensions are not a good embedding; start koe5 serve with "
            "--allow-dimensions to allow it anyway",
            param="dimensions",
        )
    return dimensions


async def encode(
    state: ServeState, texts: list[str], kind: str | None, truncate: bool | None, param: str
) -> Encoded:
    """``texts`` through the batcher; ``truncate=None`` means the server's ``auto_truncate``."""
    future = state.batcher.submit(
        texts, kind, truncate=state.settings.auto_truncate if truncate is None else truncate
    )
    return await answer(future, param)


async def answer(future: Future, param: str):
    """A worker's result for a request whose texts were in the field ``param``; a refusal names it."""
    try:
        return await asyncio.wrap_future(future)
    except ApiError as exc:  # the worker does not know which field held the texts
        exc.param = exc.param or param
        raise


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The first ``dimensions`` components of each vector, renormalised (all of them for ``None``)."""
    if dimensions is None:
        return vectors
    short = vectors[:, :dimensions]
    return short / np.maximum(np.linalg.norm(short, axis=1, keepdims=True), 1e-12)
