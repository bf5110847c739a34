"""HTTP errors as JSON that says what went wrong and which limit, in the shape each client expects.

``/embed`` and ``/rerank`` answer as text-embeddings-inference does,
``{"error": "...", "error_type": "validation"}`` (plus ``code``); every other route as the OpenAI API does,
``{"error": {"message": "...", "type": "invalid_request_error", "param": "input", "code": "max_inputs"}}``.
``code`` is the name of the limit (a :class:`~koe5.serve.settings.Settings` field) or of the
problem (``malformed_json``, ``invalid_request``, ``unauthorized``, ``shutting_down``, ...).

The app's exception handlers (:func:`api_error`, :func:`invalid_request`, :func:`http_error`,
:func:`internal_error`) turn every failure into such a body; refusals count in ``koe5_rejected_total``.

Example::

    raise ApiError(413, "max_inputs", "300 inputs; at most 256 per request", param="input")
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

log = logging.getLogger("koe5.serve")

_OPENAI_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
#: The message of every 500: the details go to the server's log only.
INTERNAL_ERROR = "internal error; the server log has the details"
_TEI_TYPES = {
    401: "unauthorized",
    404: "validation",
    413: "validation",
    422: "validation",
    429: "overloaded",
    503: "unhealthy",
}
#: The routes that answer errors in text-embeddings-inference's shape.
TEI_PATHS = ("/embed", "/rerank")


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
    return path.rstrip("/") in TEI_PATHS


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


def validation_error(errors: list[dict]) -> ApiError:
    """One readable 422 from pydantic's error list."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "not JSON")
        where = first["loc"][-1] if len(first.get("loc", ())) > 1 else "?"
        return ApiError(422, "malformed_json", f"the body is not valid JSON: {reason} (at character {where})")
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more problems)" if len(errors) > 3 else ""
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    return ApiError(422, "invalid_request", "; ".join(parts) + more, param=loc[0] if loc else None)


async def api_error(request: Request, exc: ApiError) -> Response:
    """A refusal by a route or the batcher: counted by its code, answered in the route's shape."""
    request.app.state.koe5.metrics.reject(exc.code)
    return error_response(request.url.path, exc)


async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A body FastAPI could not read: not JSON, or fields of the wrong type."""
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and content_type and "json" not in content_type:
        error = ApiError(
            422,
            "content_type",
            f"send the body as JSON with 'Content-Type: application/json' (got {content_type[:60]!r})",
        )
    else:
        error = validation_error(list(exc.errors()))
    return await api_error(request, error)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own errors (an unknown path, a wrong method) in koe5's shape; not counted as refusals."""
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        # FastAPI's answer to a body json.loads cannot read: invalid UTF-8, or nested too deeply
        message = "the body is not valid JSON (not UTF-8, or nested too deeply)"
        error = ApiError(422, "malformed_json", message)
        return await api_error(request, error)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    error = ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
    return error_response(request.url.path, error)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered with a 500 that shows nothing of it."""
    log.error("koe5: %s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(
        request.url.path,
        ApiError(500, "internal_error", INTERNAL_ERROR),
    )
