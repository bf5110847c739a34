"""One worker thread that owns a model, and the queue in front of it: what every batching worker shares.

Neither the encoder nor the reranker may be called from two threads at once, so each runs on a thread
of its own. Requests wait in a FIFO queue; the worker takes the oldest, then keeps taking queued
requests until the batch would exceed ``batch_tokens`` tokens or ``batch_inputs`` items, or until
``batch_wait_ms`` have passed since the oldest was queued. Under load the worker is busy while requests
queue up, so they are batched with no wait at all; when it was idle, the short wait lets a burst of
requests share the batch.

A subclass says what a request's items cost (:meth:`QueueWorker._lengths`, tokens per item, counted on
the worker since tokenizers are not thread-safe either), how to refuse an item too long for the model
(:meth:`QueueWorker._too_long`) and how to run a batch (:meth:`QueueWorker._run_batch`), and answers
each request's future. :class:`koe5.serve.batcher.Batcher` (embeddings) and
:class:`koe5.serve.rerank_batcher.RerankBatcher` (reranking) are the two.

Example (a worker that answers each request with its texts' lengths)::

    @dataclass(kw_only=True)
    class Texts(Job):
        texts: list[str]

    class Lengths(QueueWorker):
        max_length = 512

        def submit(self, texts):
            return self._enqueue(Texts(texts=texts))

        def _lengths(self, job):
            return np.array([len(t) for t in job.texts])

        def _run_batch(self, batch):
            for job in batch:
                job.future.set_result(job.lengths.tolist())

    worker = Lengths(Settings(), batch_inputs=64, batch_tokens=4096)
    worker.start()
    worker.submit(["가나다"]).result()      # [3]
    worker.close()
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from koe5.serve.errors import ApiError
from koe5.serve.settings import Settings

log = logging.getLogger("koe5.serve")


@dataclass(kw_only=True)
class Job:
    """One request in the queue: its future, whether its items may be cut, when it was queued."""

    future: Future = field(default_factory=Future)
    truncate: bool = True
    queued: float = field(default_factory=time.monotonic)
    #: tokens per item as the model would read it uncut (set on the worker by :meth:`QueueWorker._admit`)
    lengths: np.ndarray | None = None


class QueueWorker:
    """A FIFO queue of :class:`Job` s and the thread that runs them in token-budgeted batches."""

    #: the worker thread's name, as a debugger or ``py-spy`` shows it
    thread_name = "koe5-worker"
    #: tokens the model reads per item; longer items are cut or refused (a subclass sets it)
    max_length: int

    def __init__(self, settings: Settings, metrics=None, *, batch_inputs: int, batch_tokens: int) -> None:
        self.settings = settings
        self.metrics = metrics
        self.batch_inputs = batch_inputs
        self.batch_tokens = batch_tokens
        self._wait = settings.batch_wait_ms / 1000 if settings.batching else 0.0
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._carry: Job | None = None
        self._stopping = False
        self._closing = False
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._started_error: BaseException | None = None

    # --- what a subclass says --------------------------------------------------------------------

    def _warm_up(self) -> None:
        """One small call of the model at start, so the first request does not pay for start-up."""

    def _lengths(self, job: Job) -> np.ndarray:
        raise NotImplementedError

    def _item_of(self, job: Job, index: int) -> int:
        """The request's item that the ``index``-th of its counted lengths belongs to (the same here;
        a worker that reads an item in several parts maps them back)."""
        return index

    def _too_long(self, item: int, tokens: int) -> ApiError:
        return ApiError(413, "max_tokens", f"item {item} has {tokens} tokens, more than {self.max_length}")

    def _run_batch(self, batch: list[Job]) -> None:
        raise NotImplementedError

    def _queued(self, pending: int) -> None:
        """Told when the number of requests admitted and not yet answered changes (for a gauge)."""

    # --- the request side (any thread; the server's event loop) ---------------------------------

    @property
    def pending(self) -> int:
        """Requests admitted and not yet answered."""
        return self._pending

    @property
    def closing(self) -> bool:
        return self._closing

    def _enqueue(self, job: Job) -> Future:
        """Queue ``job``; :class:`ApiError` 503 (``shutting_down``) once :meth:`close` has begun and
        429 (``max_queue``) when ``max_queue`` requests are already waiting."""
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
            job.future.add_done_callback(self._done)
            self._queue.put(job)  # under the lock: never behind the stop mark of close()
        self._queued(pending)
        return job.future

    def _done(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1
            pending = self._pending
        self._queued(pending)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, warmup: bool = True) -> None:
        """Start the worker (and, with ``warmup``, call the model once before the first request)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(warmup,), name=self.thread_name, daemon=True)
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
                self._warm_up()
        except BaseException as exc:  # a model that cannot run one input should stop the server
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
                self._run_batch(batch)

    def _take(self, timeout: float | None) -> Job | None:
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

    def _admit(self, job: Job) -> bool:
        """Count a job's tokens and check its lengths; False (and the job answered) if it cannot run."""
        if not job.future.set_running_or_notify_cancel():
            return False  # the client went away while it waited
        try:
            job.lengths = self._lengths(job)
        except Exception as exc:
            log.exception("koe5: tokenising a request failed")
            job.future.set_exception(exc)
            return False
        limit = self.max_length
        if not job.truncate and len(job.lengths) and job.lengths.max() > limit:
            item = int(np.argmax(job.lengths > limit))
            job.future.set_exception(self._too_long(self._item_of(job, item), int(job.lengths[item])))
            return False
        return True

    def _cost(self, job: Job) -> tuple[int, int]:
        """Items and tokens (after cutting) a job adds to a batch."""
        return len(job.lengths), int(np.minimum(job.lengths, self.max_length).sum())

    def _collect(self, first: Job) -> list[Job]:
        """``first`` and the jobs that join it within the budget and the wait."""
        batch = [first]
        if not self.settings.batching:
            return batch
        n, tokens = self._cost(first)
        deadline = first.queued + self._wait
        while n < self.batch_inputs and tokens < self.batch_tokens and not self._stopping:
            job = self._take(deadline - time.monotonic())
            if job is None:
                break
            more_n, more = self._cost(job)
            if n + more_n > self.batch_inputs or tokens + more > self.batch_tokens:
                self._carry = job  # first in line for the next batch
                break
            batch.append(job)
            n, tokens = n + more_n, tokens + more
        return batch
