"""An index build on Ray: each segment's documents chunked, encoded and analysed on an actor.

The driver reads and checks the documents (ids, blanks, the errors that name a file and line) exactly
as a single-process build does, and cuts them into the same segments. Each segment goes to a
:class:`SegmentActor` (which loaded the index's model and Kiwi once), and the prepared segments are
written in the order they were cut, each one a resume point as in a single-process build; BM25 and
the HNSW graph are built over all segments at the end, as there. So the folder is the one a
single-process build writes: the same ids, chunks and terms, vectors within fp32 rounding (batches
differ), and a build started on one engine resumes on the other.

Ray Data would also stream documents through an actor pool; it is not used here because a segment is
the unit of both the output and the resume point, its order fixes the rows of the index, and the
driver's reading must keep koe5's per-record errors. An :class:`ray.util.ActorPool` with results taken
in submission order gives all of that in a few lines; Ray restarts a dead actor and retries its
segment (``max_restarts``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Iterator

import numpy as np

from koe5.distributed.actors import next_result
from koe5.errors import EngineError

log = logging.getLogger("koe5")

#: The prefix of the encoder actors' names (``ray list actors``; a test kills one by it).
ACTOR_PREFIX = "koe5-segments-"


class SegmentActor:
    """Holds the index's model, chunker and Kiwi analyser; turns documents into a prepared segment."""

    def __init__(self, settings: dict, batch_size: int | None, device: str | None, threads: int) -> None:
        import torch

        from koe5.search.building import SegmentWriter
        from koe5.search.indexed_model import load_encoder
        from koe5.search.korean import KiwiAnalyzer

        torch.set_num_threads(threads)
        config = settings["bm25"]["analyzer"]
        analyzer = KiwiAnalyzer.from_config(config, num_workers=threads)
        if analyzer.config != config:  # another kiwipiepy on this worker would analyse differently
            raise EngineError(f"this Ray worker's Kiwi is {analyzer.config}, the index's {config}")
        encoder = load_encoder("a Ray build", settings, device=device)
        self.writer = SegmentWriter.for_index(settings, encoder, analyzer, None, batch_size, False)

    def prepare(self, docs: list) -> tuple[dict[str, list], np.ndarray, list[list[str]]]:
        return self.writer.prepare(docs)


class RayPipeline:
    """A :func:`~koe5.search.building.write_batches` target: each batch is prepared on an actor, and the
    prepared segments are committed to the partial folder in the order the batches came."""

    def __init__(self, target, pool, window: int) -> None:
        self.target, self.pool, self.window = target, pool, window
        self.name = target.name
        self.sizes: deque[int] = deque()  # documents of each batch in flight, in order

    def done_ids(self) -> set[str]:
        return self.target.done_ids()

    def write(self, batch: list) -> int:
        self.pool.submit(lambda actor, docs: actor.prepare.remote(docs), batch)
        self.sizes.append(len(batch))
        chunks = 0
        while len(self.sizes) > self.window:
            chunks += self._commit_next()
        return chunks

    def flush(self) -> int:
        chunks = 0
        while self.sizes:
            chunks += self._commit_next()
        return chunks

    def _commit_next(self) -> int:
        columns, vectors, tokens = next_result(self.pool)
        return self.target.commit(self.sizes.popleft(), columns, vectors, tokens)


@contextlib.contextmanager
def ray_pipeline(target, engine) -> Iterator[RayPipeline]:
    """Actors for the build of ``target`` (a :class:`~koe5.search.building.PartialFolder`) for the
    ``with`` block; the cluster is started or joined as ``engine`` (a
    :class:`~koe5.distributed.RayEngine`) says."""
    name = f"{ACTOR_PREFIX}{uuid.uuid4().hex[:8]}"
    with (
        engine.session() as plan,
        plan.pool(SegmentActor, target.manifest, engine.batch_size, name=name) as pool,
    ):
        log.info("koe5: building %s on %d Ray actor(s)", target.name, plan.actors)
        yield RayPipeline(target, pool, plan.actors * engine.in_flight)
