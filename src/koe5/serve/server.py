"""Running the app under uvicorn, with a graceful shutdown.

On SIGTERM or Ctrl-C uvicorn stops accepting connections, lets the requests in flight finish (at
most ``Settings.drain_seconds``), then the app's lifespan encodes whatever is still queued and stops
the worker. A second Ctrl-C exits at once.

A connection has ``Settings.read_timeout_s`` to deliver a whole request, from its opening or from
the previous response (:class:`ReadTimeout`); uvicorn's own keep-alive timer starts only after a
response, so a client that connects and sends nothing, or sends a byte now and then, would hold a
connection forever. ``Settings.max_connections`` is uvicorn's ``limit_concurrency``.

Example::

    from koe5.serve import create_app, run
    run(create_app(koe5.load()), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ReadTimeout(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request is not read whole in time."""

    read_timeout_s = 30.0  # set per server by :func:`run`

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        timer = getattr(self, "_read_timer", None)
        if timer is not None:
            timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._disarm()
            self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def run(
    app, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", access_log: bool = False
) -> None:
    """Serve ``app`` (from :func:`koe5.serve.create_app`) until a signal stops it, draining first."""
    import uvicorn

    settings = app.state.settings
    protocol = type("ReadTimeout", (ReadTimeout,), {"read_timeout_s": settings.read_timeout_s})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=settings.drain_seconds,
        lifespan="on",
        http=protocol,
        limit_concurrency=settings.max_connections,
    )
    uvicorn.Server(config).run()
