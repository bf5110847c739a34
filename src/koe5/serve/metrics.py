"""Prometheus metrics of one server: requests, latency, batches, queues. Each app has its own registry.

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
``koe5_rerank_requests_total``            counter     requests the reranker scored (``/rerank``,
                                                      ``/v1/rerank``, ``/search`` with ``rerank``)
``koe5_rerank_pairs_total``               counter     (query, text) pairs scored
``koe5_rerank_truncated_total``           counter     pairs cut to the reranker's maximum length
``koe5_rerank_tokens_total``              counter     tokens read by the reranker
``koe5_rerank_batch_requests``            histogram   requests per reranker batch
``koe5_rerank_batch_pairs``               histogram   pairs per reranker batch
``koe5_rerank_batch_duration_seconds``    histogram   reranker time per batch (tokenising included)
``koe5_rerank_queue_requests``            gauge       rerank requests admitted and not yet answered
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

#: The reranker's counters, ``koe5_rerank_<key>_total``: key -> help.
RERANK_COUNTERS = {
    "requests": "Requests scored by the reranker.",
    "pairs": "(query, text) pairs scored.",
    "truncated": "Pairs cut to the reranker's maximum length.",
    "tokens": "Tokens read by the reranker.",
}
#: The reranker's histograms, one observation per batch: key -> (name, help, buckets).
RERANK_HISTOGRAMS = {
    "requests": ("koe5_rerank_batch_requests", "Requests per reranker batch.", _COUNTS),
    "pairs": ("koe5_rerank_batch_pairs", "Pairs per reranker batch.", _COUNTS),
    "seconds": ("koe5_rerank_batch_duration_seconds", "Reranker time per batch.", _LATENCY),
}


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
        # the reranker's, from tables: koe5_rerank_<key>_total and the per-batch histograms
        self.rerank_counters = {
            key: Counter(f"koe5_rerank_{key}", text, registry=r) for key, text in RERANK_COUNTERS.items()
        }
        self.rerank_histograms = {
            key: Histogram(name, text, buckets=buckets, registry=r)
            for key, (name, text, buckets) in RERANK_HISTOGRAMS.items()
        }
        self.rerank_queued = Gauge(
            "koe5_rerank_queue_requests", "Rerank requests admitted and not yet answered.", registry=r
        )

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

    def rerank_queue(self, requests: int) -> None:
        self.rerank_queued.set(requests)

    def rerank_batch(self, requests: int, pairs: int, truncated: int, tokens: int, seconds: float) -> None:
        for key, value in (("requests", requests), ("pairs", pairs), ("seconds", seconds)):
            self.rerank_histograms[key].observe(value)
        for key, value in (
            ("requests", requests),
            ("pairs", pairs),
            ("truncated", truncated),
            ("tokens", tokens),
        ):
            self.rerank_counters[key].inc(value)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
