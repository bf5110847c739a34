"""``POST /v1/embeddings`` (OpenAI) and ``POST /embed`` (text-embeddings-inference).

Both answer with ``X-Koe5-Truncated``: how many of the request's inputs were cut to the model's
maximum length. The bodies are :class:`~koe5.serve.schemas.EmbeddingsRequest` and
:class:`~koe5.serve.schemas.EmbedRequest`.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter
from starlette.responses import Response

from koe5.serve.checks import check_dimensions, check_texts, encode, shorten
from koe5.serve.errors import ApiError
from koe5.serve.responses import error_docs, json_response
from koe5.serve.schemas import EmbeddingsRequest, EmbeddingsResponse, EmbedRequest, ErrorBody, TeiErrorBody
from koe5.serve.state import State

#: ``prompt_name`` of ``/embed`` -> encoder kind (the default model's saved prompts, plus none).
PROMPTS = {"query": "query", "passage": "passage", "document": "passage", "none": None}

router = APIRouter()


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    responses=error_docs(ErrorBody, 401, 413, 422, 429, 503),
    tags=["embeddings"],
    summary="Embed texts (OpenAI-compatible)",
)
async def embeddings(request: EmbeddingsRequest, state: State) -> Response:
    """The OpenAI embeddings API: point the ``openai`` client's ``base_url`` at ``http://host:port/v1``.

    ``input_type`` (koe5 extension, default ``passage``) picks the prefix; ``usage`` counts the
    tokens the model read, prefix and special tokens included.
    """
    texts = check_texts(request.input, "input", state.settings)
    dimensions = check_dimensions(request.dimensions, state.encoder, state.settings)
    kind = None if request.input_type == "none" else request.input_type
    result = await encode(state, texts, kind, request.truncate, "input")
    vectors = shorten(result.vectors, dimensions)
    if request.encoding_format == "base64":
        rows: list = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        rows = vectors.tolist()
    tokens = sum(result.tokens)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": state.encoder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json_response(body, truncated=result.truncated)


@router.post(
    "/embed",
    response_model=list[list[float]],
    responses=error_docs(TeiErrorBody, 401, 413, 422, 429, 503),
    tags=["embeddings"],
    summary="Embed texts (text-embeddings-inference-compatible)",
)
async def embed(request: EmbedRequest, state: State) -> Response:
    """text-embeddings-inference's ``/embed``: a list of vectors, one per input.

    ``prompt_name`` picks the prefix (absent: ``passage``); vectors are always normalised.
    """
    texts = check_texts(request.inputs, "inputs", state.settings)
    if not request.normalize:
        raise ApiError(
            422,
            "normalize",
            "koe5 models end in a normalisation layer: unnormalised vectors are not available; "
            "send normalize=true or leave it out",
            param="normalize",
        )
    if request.truncation_direction.lower() == "left":
        raise ApiError(
            422,
            "truncation_direction",
            "only right truncation is supported (the model's closing token is kept)",
            param="truncation_direction",
        )
    if request.prompt_name is not None and request.prompt_name not in PROMPTS:
        raise ApiError(
            422,
            "prompt_name",
            f"unknown prompt_name {request.prompt_name!r}; this server knows {', '.join(PROMPTS)}",
            param="prompt_name",
        )
    kind = PROMPTS[request.prompt_name or "passage"]
    dimensions = check_dimensions(request.dimensions, state.encoder, state.settings)
    result = await encode(state, texts, kind, request.truncate, "inputs")
    return json_response(shorten(result.vectors, dimensions).tolist(), truncated=result.truncated)
