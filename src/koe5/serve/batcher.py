"""Micro-batching: requests that arrive together are encoded together, on one worker thread.

The encoder is not thread-safe, so every encoder call of the server runs here. Requests wait in a FIFO
queue; the worker takes the oldest, then keeps taking queued requests until the batch would exceed
``batch_tokens`` tokens or ``batch_inputs`` texts, or until ``batch_wait_ms`` have passed since the
oldest was queued (the queue and the thread are :mod:`koe5.serve.worker`'s, shared with the
reranker's worker). Under load the worker is busy while requests queue up, so they are batched with
no wait at all; when it was idle, the short wait lets a burst of requests share the batch.

The batch is encoded with one ``Encoder.encode`` call per kind (query / passage / none), which sorts
its texts by length and runs them in forward passes of the encoder's own budget (32 texts and 4,096
padded token-equivalents on CPU, :mod:`koe5.batching`); each request gets its rows back. A batch of a
few small requests is one forward pass. Why a batch may hold several: on a CPU the cost of a pass is
its padded tokens, so gluing requests of mixed lengths into one padded pass saves nothing (measured:
``benchmarks/serve_load.py``); what saves is sorting many requests' texts together so that each pass
holds texts of about the same length, as the library does with a long list. Hence the defaults: a
batch holds up to four forward passes' worth (``4 × batch_size`` texts, ``4 × max_tokens`` tokens).

Token counts come from ``Encoder.tokenize`` on the worker (the tokenizer is not thread-safe either):
they size the batch, decide truncation per request and fill ``usage``.

Example::

    batcher = Batcher(koe5.load(), Settings())
    batcher.start()
    result = batcher.submit(["서울은 대한민국의 수도이다."], "passage", truncate=True).result()
    result.vectors.shape, result.tokens          # (1, 384), [11]
    batcher.close()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from koe5.serve.errors import ApiError
from koe5.serve.settings import Settings
from koe5.serve.worker import Job, QueueWorker

log = logging.getLogger("koe5.serve")

#: Kinds a request may ask for: the encoder's prefixes, or none.
KINDS = ("query", "passage", None)
#: Default size of a batch, in the encoder's forward passes (texts and tokens).
PASSES = 4


@dataclass
class Encoded:
    """A request's result: vectors (n, dim), tokens the model read per text, how many were cut."""

    vectors: np.ndarray
    tokens: list[int]
    truncated: int


@dataclass(kw_only=True)
class _Job(Job):
    texts: list[str]
    kind: str | None


class Batcher(QueueWorker):
    """Owns the encoder; encodes queued requests in token-budgeted batches on one thread
    (:class:`~koe5.serve.worker.QueueWorker`).

    ``metrics`` (optional) gets ``batch(requests, inputs, tokens, seconds)`` after each batch and
    ``queue(requests)`` when the number of requests waiting or in work changes.
    """

    thread_name = "koe5-encoder"

    def __init__(self, encoder, settings: Settings, metrics=None) -> None:
        super().__init__(
            settings,
            metrics,
            batch_inputs=settings.batch_inputs or PASSES * (getattr(encoder, "batch_size", None) or 64),
            batch_tokens=settings.batch_tokens or PASSES * (getattr(encoder, "max_tokens", None) or 4096),
        )
        self.encoder = encoder
        self._prefix = {"query": encoder.query_prefix, "passage": encoder.passage_prefix, None: ""}

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def submit(self, texts: Sequence[str], kind: str | None, *, truncate: bool) -> Future:
        """Queue ``texts`` for encoding; the future's result is an :class:`Encoded`.

        Raises :class:`ApiError` 503 (``shutting_down``) once :meth:`close` has begun and 429
        (``max_queue``) when ``max_queue`` requests are already waiting. The future fails with 413
        (``max_tokens``) when a text is too long and ``truncate`` is false.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be 'query', 'passage' or None, got {kind!r}")
        return self._enqueue(_Job(texts=list(texts), kind=kind, truncate=truncate))

    # --- on the worker ---------------------------------------------------------------------------

    def _warm_up(self) -> None:
        self.encoder.encode(["준비"], "query")

    def _queued(self, pending: int) -> None:
        if self.metrics is not None:
            self.metrics.queue(pending)

    def _lengths(self, job: _Job) -> np.ndarray:
        """Tokens per text, prefix and special tokens included, uncut."""
        prefix = self._prefix[job.kind]
        return np.fromiter(
            (len(ids) for ids in self.encoder.tokenize([prefix + t for t in job.texts])),
            dtype=np.int64,
            count=len(job.texts),
        )

    def _too_long(self, item: int, tokens: int) -> ApiError:
        return ApiError(
            413,
            "max_tokens",
            f"item {item} has {tokens} tokens (prefix and special tokens included), more than the "
            f"model's {self.max_length} (max_tokens); send truncate=true to cut it",
        )

    def _run_batch(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        limit = self.encoder.max_length
        inputs = tokens = 0
        for kind in KINDS:
            jobs = [j for j in batch if j.kind == kind]
            if not jobs:
                continue
            texts = [t for j in jobs for t in j.texts]
            try:
                vectors = self.encoder.encode(texts, kind) if texts else None
            except Exception as exc:  # answer the requests, keep the worker alive
                log.exception("koe5: encoding a batch of %d texts failed", len(texts))
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            start = 0
            for j in jobs:
                rows = len(j.texts)
                if vectors is None:
                    vecs = np.zeros((0, self.encoder.dim), dtype=np.float32)
                else:
                    vecs = vectors[start : start + rows]
                start += rows
                seen = np.minimum(j.lengths, limit)
                j.future.set_result(Encoded(vecs, seen.tolist(), int((j.lengths > limit).sum())))
                inputs += rows
                tokens += int(seen.sum())
        if self.metrics is not None:
            self.metrics.batch(len(batch), inputs, tokens, time.perf_counter() - started)
