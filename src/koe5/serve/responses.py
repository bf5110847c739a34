"""What the routes answer: compact JSON bodies, and the error responses each route documents.

Example::

    json_response({"object": "list", "data": rows}, truncated=0)   # carries X-Koe5-Truncated: 0
    error_docs(ErrorBody, 401, 413)                                 # for a route's ``responses=``
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

#: What each error status means, as the OpenAPI schema (docs/openapi.json) describes it.
ERROR_DOCS = {
    401: "No or a wrong bearer token (the server was started with KOE5_API_KEY).",
    404: "The server has no index (`no_index`) or no reranker (`no_reranker`), or `model` names "
    "another reranker than the one served (`model_not_found`).",
    413: "Over a size limit: `max_body_bytes`, `max_inputs`, `max_chars`, or `max_tokens` with "
    "truncate=false.",
    422: "Malformed JSON (`malformed_json`), a field of the wrong type (`invalid_request`) or an "
    "unsupported value (the field's name, or `max_k`, `max_rerank_depth`).",
    429: "`max_queue` requests are already waiting: retry after `Retry-After` seconds.",
    503: "The server is shutting down (`shutting_down`).",
}


def error_docs(model: type, *codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: each status in ``codes`` with its body ``model`` and meaning."""
    return {code: {"model": model, "description": ERROR_DOCS[code]} for code in codes}


def json_response(body: Any, *, status: int = 200, truncated: int | None = None) -> Response:
    """``body`` as compact UTF-8 JSON; ``truncated`` (inputs cut to the model's length) as a header."""
    headers = {"X-Koe5-Truncated": str(truncated)} if truncated is not None else None
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )
