"""What every request passes before a route: timing for metrics, the bearer token, the body size.

Plain ASGI middleware, outermost first: :class:`Timing` (``koe5_requests_total`` and latency by
route), :class:`BearerAuth` (401 without the right token; the token is compared in constant time and
never echoed), :class:`BodyLimit` (413 ``max_body_bytes`` from ``Content-Length`` before reading,
or while reading a chunked body).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection

from koe5.serve.errors import INTERNAL_ERROR, error_body

log = logging.getLogger("koe5.serve")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(
    send: Send,
    path: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    body = json.dumps(error_body(path, status, code, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Timing:
    """Counts requests by route and status and observes their latency (unknown paths: ``other``)."""

    def __init__(self, app: ASGIApp, metrics, routes: Collection[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, set(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope["path"]
            endpoint = path if path in self.routes else "other"
            self.metrics.request(endpoint, status, time.perf_counter() - started)


class BearerAuth:
    """Requires ``Authorization: Bearer <key>`` on every path but ``open_paths``."""

    def __init__(self, app: ASGIApp, key: str, metrics, open_paths: Collection[str] = ("/health",)) -> None:
        self.app, self.key, self.metrics = app, key.encode(), metrics
        self.open_paths = set(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        # compare_digest on the whole token: the time taken says nothing about how much matched
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        self.metrics.reject("unauthorized")
        await send_error(
            send,
            scope["path"],
            401,
            "unauthorized",
            "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
            {"WWW-Authenticate": "Bearer"},
        )


class ContainErrors:
    """A failure no handler turned into an answer becomes a 500 here, and the connection lives on.

    Starlette answers such an exception with a 500 and then raises it again to the server, which
    drops the connection without ``Connection: close``: the client's next request on that keep-alive
    connection fails. Here the exception ends with the answer (its traceback in the log).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_watch(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            if started:  # half an answer is out: only closing the connection can end it
                raise
            log.exception("koe5: %s %s failed", scope.get("method"), scope.get("path"))
            await send_error(send, scope.get("path", ""), 500, "internal_error", INTERNAL_ERROR)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413 ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, limit: int, metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def _refuse(self, scope: Scope, send: Send, size: str) -> None:
        self.metrics.reject("max_body_bytes")
        await send_error(
            send,
            scope["path"],
            413,
            "max_body_bytes",
            f"the request body has {size} bytes; at most {self.limit} (max_body_bytes)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, send, length.decode())  # without reading a byte of it
            return
        chunks, size = [], 0
        while True:  # a chunked body has no Content-Length: count while reading
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, send, f"more than {self.limit}")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
