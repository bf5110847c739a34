"""Reranking on a worker thread of its own: the pairs of requests that arrive together, scored together.

The reranker (a :class:`koe5.rerank.Reranker`) is not safe to call from two threads at once, and a
forward pass must not block the event loop, so every reranker call of the server runs here, on the
queue and thread of :mod:`koe5.serve.worker` (the embedding worker's, with the reranker's lengths). The
worker tokenises each request's pairs (``Reranker.pair_lengths``: the sizes and the
``truncate=false`` check), then scores every pair of the batch in forward passes of at most
``Reranker.max_tokens`` padded tokens, sorted by length across requests: a pair carries its own query,
so pairs of different queries share a pass. Each request gets its scores back in input order, with
its activation (or the logits, for ``raw``).

Left truncation (text-embeddings-inference's ``truncation_direction: Left``) tells the tokenizer
``truncation_side="left"`` for the passes of those pairs: the longer of query and text loses its start
instead of its end, and the special tokens stay (the tokenizer adds them after cutting).

(``Reranker.pair_logits`` sets and restores the tokenizer's ``truncation_side`` under the reranker's
lock, so a search reranking on another thread never sees it changed.)

Example::

    worker = RerankBatcher(Reranker.load("dragonkue/bge-reranker-v2-m3-ko"), Settings())
    worker.start()
    result = worker.submit("한국의 수도는?", ["서울은 수도이다.", "부산은 항구이다."]).result()
    result.scores, result.tokens, result.truncated        # float32 (2,), 27, 0
    worker.close()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from koe5.batching import length_sorted_batches
from koe5.rerank.model import MAX_PAIRS, MAX_TOKENS, activate
from koe5.rerank.windows import best
from koe5.serve.errors import ApiError
from koe5.serve.settings import Settings
from koe5.serve.worker import Job, QueueWorker

log = logging.getLogger("koe5.serve")

#: Which end of the longer half of a pair is cut: text-embeddings-inference's two directions.
SIDES = ("right", "left")
#: Default size of a batch, in the reranker's forward passes (pairs and tokens).
PASSES = 4


@dataclass
class RerankResult:
    """A request's result: a score per text (input order), tokens the model read, pairs cut."""

    scores: np.ndarray
    tokens: int
    truncated: int


@dataclass(kw_only=True)
class _Job(Job):
    query: str
    texts: list[str]
    raw: bool
    side: str
    #: what the model reads: the texts, or their windows (``Reranker.windows``), and each one's text
    pieces: list[str] | None = None
    owner: np.ndarray | None = None


class RerankBatcher(QueueWorker):
    """Owns the reranker; scores queued requests' pairs together on one thread.

    ``metrics`` (optional) gets ``rerank_batch(requests, pairs, truncated, tokens, seconds)`` after
    each batch and ``rerank_queue(requests)`` when the number of requests waiting or in work changes.
    """

    thread_name = "koe5-reranker"

    def __init__(self, reranker, settings: Settings, metrics=None) -> None:
        max_tokens = getattr(reranker, "max_tokens", None) or MAX_TOKENS
        super().__init__(
            settings,
            metrics,
            batch_inputs=settings.batch_inputs or PASSES * MAX_PAIRS,
            batch_tokens=settings.batch_tokens or PASSES * max_tokens,
        )
        self.reranker = reranker
        self.pass_tokens = max_tokens

    @property
    def max_length(self) -> int:
        return self.reranker.max_length

    def submit(
        self,
        query: str,
        texts: Sequence[str],
        *,
        raw: bool = False,
        truncate: bool = True,
        side: str = "right",
    ) -> Future:
        """Queue the pairs (``query``, text) for scoring; the future's result is a :class:`RerankResult`.

        Refused as :meth:`Batcher.submit <koe5.serve.batcher.Batcher.submit>` refuses (503, 429); the
        future fails with 413 (``max_tokens``) when a pair is too long and ``truncate`` is false.
        """
        if side not in SIDES:
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        return self._enqueue(_Job(query=query, texts=list(texts), raw=raw, side=side, truncate=truncate))

    # --- on the worker ---------------------------------------------------------------------------

    def _warm_up(self) -> None:
        self._logits(["준비"], ["준비"], np.array(["right"]), np.array([8]))

    def _queued(self, pending: int) -> None:
        if self.metrics is not None:
            self.metrics.rerank_queue(pending)

    def _lengths(self, job: _Job) -> np.ndarray:
        """Tokens per pair, query and special tokens included, uncut; with the reranker's ``window``
        a pair is a window of a text."""
        job.pieces, job.owner = self.reranker.windows(job.texts)
        if not job.pieces:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.reranker.pair_lengths(job.query, job.pieces), dtype=np.int64)

    def _item_of(self, job: _Job, index: int) -> int:
        return int(job.owner[index])

    def _too_long(self, item: int, tokens: int) -> ApiError:
        return ApiError(
            413,
            "max_tokens",
            f"item {item}: the query and this text are {tokens} tokens together (special tokens "
            f"included), more than the reranker's {self.max_length} (max_tokens); send truncate=true "
            "to cut it",
        )

    def _run_batch(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        limit = self.max_length
        queries = [j.query for j in batch for _ in j.pieces]
        texts = [t for j in batch for t in j.pieces]
        sides = np.array([j.side for j in batch for _ in j.pieces])
        read = np.minimum(np.concatenate([j.lengths for j in batch]), limit)
        try:
            logits = self._logits(queries, texts, sides, read)
        except Exception as exc:  # answer the requests, keep the worker alive
            log.exception("koe5: reranking a batch of %d pairs failed", len(texts))
            for j in batch:
                j.future.set_exception(exc)
            return
        start = truncated = 0
        for j in batch:
            n = len(j.pieces)
            part = logits[start : start + n]
            cut = int((j.lengths > limit).sum())
            if self.reranker.window is not None:  # each text scores as its best window
                part = best(part, j.owner, len(j.texts))
            scores = part if j.raw else activate(self.reranker.activation, part)
            j.future.set_result(RerankResult(scores, int(read[start : start + n].sum()), cut))
            start += n
            truncated += cut
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            self.metrics.rerank_batch(len(batch), len(texts), truncated, int(read.sum()), seconds)

    def _logits(
        self, queries: list[str], texts: list[str], sides: np.ndarray, read: np.ndarray
    ) -> np.ndarray:
        """The logit of every pair: per side, in length-sorted passes within the pass budget."""
        out = np.empty(len(texts), dtype=np.float32)
        for side in SIDES:
            rows = np.flatnonzero(sides == side)
            for part in length_sorted_batches(read[rows], MAX_PAIRS, self.pass_tokens) if rows.size else []:
                chosen = rows[part]
                pairs = [queries[i] for i in chosen], [texts[i] for i in chosen]
                out[chosen] = self.reranker.pair_logits(*pairs, truncation_side=side)
        return out
