"""Running the app under uvicorn, with a graceful shutdown.

On SIGTERM or Ctrl-C uvicorn stops accepting connections, lets the requests in flight finish (at
most ``Settings.drain_seconds``), then the app's lifespan encodes whatever is still queued and stops
the worker. A second Ctrl-C exits at once.

Example::

    from koe5.serve import create_app, run
    run(create_app(koe5.load()), host="127.0.0.1", port=8000)
"""

from __future__ import annotations


def run(
    app, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", access_log: bool = False
) -> None:
    """Serve ``app`` (from :func:`koe5.serve.create_app`) until a signal stops it, draining first."""
    import uvicorn

    settings = app.state.settings
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=settings.drain_seconds,
        lifespan="on",
    )
    uvicorn.Server(config).run()
