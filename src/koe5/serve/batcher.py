"""Micro-batching: requests that arrive together are encoded together, on one worker thread.

The encoder is not thread-safe, so every model call of the server runs here. Requests wait in a FIFO
queue; the worker takes the oldest, then keeps taking queued requests until the batch would exceed
``batch_tokens`` tokens or ``batch_inputs`` texts, or until ``batch_wait_ms`` have passed since the
oldest was queued. Under load the worker is busy while requests queue up, so they are batched with
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
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from koe5.serve.errors import ApiError
from koe5.serve.settings import Settings

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


@dataclass
class _Job:
    texts: list[str]
    kind: str | None
    truncate: bool
    future: Future
    queued: float = field(default_factory=time.monotonic)
    lengths: np.ndarray | None = None  # token counts, prefix and special tokens included, uncut


class Batcher:
    """Owns the encoder; encodes queued requests in token-budgeted batches on one thread.

    ``metrics`` (optional) gets ``batch(requests, inputs, tokens, seconds)`` after each batch and
    ``queue(requests)`` when the number of requests waiting or in work changes.
    """

    def __init__(self, encoder, settings: Settings, metrics=None) -> None:
        self.encoder = encoder
        self.settings = settings
        self.metrics = metrics
        self.batch_tokens = settings.batch_tokens or PASSES * (getattr(encoder, "max_tokens", None) or 4096)
        self.batch_inputs = settings.batch_inputs or PASSES * (getattr(encoder, "batch_size", None) or 64)
        self._wait = settings.batch_wait_ms / 1000 if settings.batching else 0.0
        self._prefix = {"query": encoder.query_prefix, "passage": encoder.passage_prefix, None: ""}
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._carry: _Job | None = None
        self._stopping = False
        self._closing = False
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._started_error: BaseException | None = None

    # --- the request side (any thread; the server's event loop) ---------------------------------

    @property
    def pending(self) -> int:
        """Requests admitted and not yet answered."""
        return self._pending

    @property
    def closing(self) -> bool:
        return self._closing

    def submit(self, texts: Sequence[str], kind: str | None, *, truncate: bool) -> Future:
        """Queue ``texts`` for encoding; the future's result is an :class:`Encoded`.

        Raises :class:`ApiError` 503 (``shutting_down``) once :meth:`close` has begun and 429
        (``max_queue``) when ``max_queue`` requests are already waiting. The future fails with 413
        (``max_tokens``) when a text is too long and ``truncate`` is false.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be 'query', 'passage' or None, got {kind!r}")
        with self._lock:
            if self._closing or self._thread is None:
                raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance")
            if self._pending >= self.settings.max_queue:
                raise ApiError(
                    429,
                    "max_queue",
                    f"{self._pending} requests are queued, the limit (max_queue) is "
                    f"{self.settings.max_queue}; retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._pending += 1
            pending = self._pending
            job = _Job(list(texts), kind, truncate, Future())
            job.future.add_done_callback(self._done)
            self._queue.put(job)  # under the lock: never behind the stop mark of close()
        if self.metrics is not None:
            self.metrics.queue(pending)
        return job.future

    def _done(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1
            pending = self._pending
        if self.metrics is not None:
            self.metrics.queue(pending)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, warmup: bool = True) -> None:
        """Start the worker (and encode one text, so the first request does not pay for start-up)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(warmup,), name="koe5-encoder", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._started_error is not None:
            raise self._started_error

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, finish the queued ones, stop the worker."""
        with self._lock:
            self._closing = True
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    # --- the worker ------------------------------------------------------------------------------

    def _run(self, warmup: bool) -> None:
        try:
            if warmup:
                self.encoder.encode(["준비"], "query")
        except BaseException as exc:  # a model that cannot encode one word should stop the server
            self._started_error = exc
            self._ready.set()
            return
        self._ready.set()
        while not self._stopping:
            job = self._take(None)
            if job is None:
                break
            batch = self._collect(job)
            if batch:
                self._encode(batch)

    def _take(self, timeout: float | None) -> _Job | None:
        """The next live job (carried over or queued); None at the stop mark or when none came in time."""
        while True:
            if self._carry is not None:
                job, self._carry = self._carry, None
                return job
            try:
                if timeout is None or timeout > 0:
                    job = self._queue.get(timeout=timeout)
                else:  # past the wait: take what is queued already, do not wait for more
                    job = self._queue.get_nowait()
            except queue.Empty:
                return None
            if job is None:
                self._stopping = True
                return None
            if self._admit(job):
                return job

    def _admit(self, job: _Job) -> bool:
        """Tokenise a job and check its lengths; False (and the job answered) if it cannot run."""
        if not job.future.set_running_or_notify_cancel():
            return False  # the client went away while it waited
        try:
            prefix = self._prefix[job.kind]
            job.lengths = np.fromiter(
                (len(ids) for ids in self.encoder.tokenize([prefix + t for t in job.texts])),
                dtype=np.int64,
                count=len(job.texts),
            )
        except Exception as exc:
            log.exception("koe5: tokenising a request failed")
            job.future.set_exception(exc)
            return False
        limit = self.encoder.max_length
        if not job.truncate and len(job.lengths) and job.lengths.max() > limit:
            item = int(np.argmax(job.lengths > limit))
            job.future.set_exception(
                ApiError(
                    413,
                    "max_tokens",
                    f"item {item} has {int(job.lengths[item])} tokens (prefix and special tokens "
                    f"included), more than the model's {limit} (max_tokens); send truncate=true to cut it",
                )
            )
            return False
        return True

    def _collect(self, first: _Job) -> list[_Job]:
        """``first`` and the jobs that join it within the budget and the wait."""
        batch = [first]
        if not self.settings.batching:
            return batch
        n, tokens = len(first.lengths), int(np.minimum(first.lengths, self.encoder.max_length).sum())
        deadline = first.queued + self._wait
        while n < self.batch_inputs and tokens < self.batch_tokens and not self._stopping:
            job = self._take(deadline - time.monotonic())
            if job is None:
                break
            more = int(np.minimum(job.lengths, self.encoder.max_length).sum())
            if n + len(job.lengths) > self.batch_inputs or tokens + more > self.batch_tokens:
                self._carry = job  # first in line for the next batch
                break
            batch.append(job)
            n, tokens = n + len(job.lengths), tokens + more
        return batch

    def _encode(self, batch: list[_Job]) -> None:
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
