"""HTTP errors as JSON that says what went wrong and which limit, in the shape each client expects.

``/embed`` answers as text-embeddings-inference does, ``{"error": "...", "error_type": "validation"}``
(plus ``code``); every other route as the OpenAI API does,
``{"error": {"message": "...", "type": "invalid_request_error", "param": "input", "code": "max_inputs"}}``.
``code`` is the name of the limit (a :class:`~koe5.serve.settings.Settings` field) or of the
problem (``malformed_json``, ``invalid_request``, ``unauthorized``, ``shutting_down``, ...).

Example::

    raise ApiError(413, "max_inputs", "300 inputs; at most 256 per request", param="input")
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

_OPENAI_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
_TEI_TYPES = {401: "unauthorized", 413: "validation", 422: "validation", 429: "overloaded", 503: "unhealthy"}


class ApiError(Exception):
    """An error answered with ``status`` and a JSON body naming ``code`` (and ``param``, the field)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}


def is_tei_path(path: str) -> bool:
    return path.rstrip("/") == "/embed"


def error_body(path: str, status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON error body for a request to ``path``."""
    if is_tei_path(path):
        return {"error": message, "error_type": _TEI_TYPES.get(status, "backend"), "code": code}
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(path: str, error: ApiError) -> Response:
    body = error_body(path, error.status, error.code, error.message, error.param)
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )
