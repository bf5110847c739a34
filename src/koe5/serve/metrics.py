"""Prometheus metrics of one server: requests, latency, batches, queue. Each app has its own registry.

========================================  ==========  ==============================================
``koe5_requests_total``                   counter     by ``endpoint`` (route) and ``status``
``koe5_request_duration_seconds``         histogram   by ``endpoint``
``koe5_rejected_total``                   counter     by ``code`` (the limit or problem named)
``koe5_queue_requests``                   gauge       requests admitted and not yet answered
``koe5_batch_requests``                   histogram   requests per batch
``koe5_batch_inputs``                     histogram   texts per batch
``koe5_batch_tokens``                     histogram   tokens the model read per batch
``koe5_batch_duration_seconds``           histogram   model time per batch (tokenising included)
``koe5_inputs_total``                     counter     texts embedded
``koe5_tokens_total``                     counter     tokens read by the model
========================================  ==========  ==============================================

Example::

    metrics = Metrics()
    metrics.batch(requests=3, inputs=20, tokens=410, seconds=0.012)
    print(metrics.render()[0].decode())
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKENS = (16, 64, 256, 1024, 4096, 16384, 65536)


class Metrics:
    """The server's metrics in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "koe5_requests", "HTTP requests answered.", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "koe5_request_duration_seconds",
            "Time from request to response.",
            ["endpoint"],
            buckets=_LATENCY,
            registry=r,
        )
        self.rejected = Counter("koe5_rejected", "Requests refused, by error code.", ["code"], registry=r)
        self.queued = Gauge("koe5_queue_requests", "Requests admitted and not yet answered.", registry=r)
        self.batch_requests = Histogram(
            "koe5_batch_requests", "Requests per encoded batch.", buckets=_COUNTS, registry=r
        )
        self.batch_inputs = Histogram(
            "koe5_batch_inputs", "Texts per encoded batch.", buckets=_COUNTS, registry=r
        )
        self.batch_tokens = Histogram(
            "koe5_batch_tokens", "Tokens read by the model per batch.", buckets=_TOKENS, registry=r
        )
        self.batch_seconds = Histogram(
            "koe5_batch_duration_seconds", "Model time per batch.", buckets=_LATENCY, registry=r
        )
        self.inputs = Counter("koe5_inputs", "Texts embedded.", registry=r)
        self.tokens = Counter("koe5_tokens", "Tokens read by the model.", registry=r)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def reject(self, code: str) -> None:
        self.rejected.labels(code).inc()

    def queue(self, requests: int) -> None:
        self.queued.set(requests)

    def batch(self, requests: int, inputs: int, tokens: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_inputs.observe(inputs)
        self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)
        self.inputs.inc(inputs)
        self.tokens.inc(tokens)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
