"""An index build on Ray: each segment's documents chunked, encoded and analysed on the actors.

The driver reads and checks the documents (ids, blanks, the errors that name a file and line) exactly
as a single-process build does, and cuts them into the same segments. Each segment is cut into one
piece per :class:`SegmentActor` (which loaded the index's model and Kiwi once), and the prepared
segments are written in the order they were cut, each one a resume point as in a single-process
build; BM25 and the HNSW graph are built over all segments at the end, as there. So the folder is
the one a single-process build writes: the same ids, chunks and terms, vectors within fp32 rounding
(batches differ), and a build started on one engine resumes on the other.

Ray Data would also stream documents through an actor pool; it is not used here because a segment is
the unit of both the output and the resume point, its order fixes the rows of the index, and the
driver's reading must keep koe5's per-record errors. Calls queued on each actor and collected in
order give all of that in a few lines; Ray restarts a dead actor and runs its lost calls again
(``max_restarts``, ``max_task_retries``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Iterator

import numpy as np

from koe5.distributed.actors import result
from koe5.errors import EngineError

log = logging.getLogger("koe5")

#: The prefix of the encoder actors' names (``ray list actors``; a test kills one by it).
ACTOR_PREFIX = "koe5-segments-"


class SegmentActor:
    """Holds the index's model, chunker and Kiwi analyser; turns documents into a prepared segment.

    The constructor does what takes most of an actor's start and needs only the analyser's settings
    (importing torch and sentence-transformers, loading Kiwi's model), so a build's actors can start
    while the driver is still loading its own model (:meth:`RayEngine.started
    <koe5.distributed.RayEngine.started>`). The index's model is loaded by the first :meth:`prepare`,
    which carries the settings: an actor Ray restarts after a crash loads it again from them.
    """

    def __init__(self, analyzer_config: dict, device: str | None, threads: int) -> None:
        import sentence_transformers  # noqa: F401  (most of the start: imported now, not in the first segment)
        import torch

        from koe5.search.korean import KiwiAnalyzer

        torch.set_num_threads(threads)
        self.analyzer = KiwiAnalyzer.from_config(analyzer_config, num_workers=threads)
        if self.analyzer.config != analyzer_config:  # another kiwipiepy on this worker analyses differently
            raise EngineError(f"this Ray worker's Kiwi is {self.analyzer.config}, wanted {analyzer_config}")
        self.analyzer.analyze(["한국어"])  # Kiwi loads its model on first use
        self.device = device
        self.settings: tuple | None = None  # of the model loaded, with its batch size

    def prepare(self, settings: dict, batch_size: int | None, docs: list) -> tuple:
        """The chunks of ``docs``, their vectors and terms (:meth:`SegmentWriter.prepare
        <koe5.search.building.SegmentWriter.prepare>`) for the index of ``settings``."""
        if (settings, batch_size) != self.settings:
            from koe5.search.building import SegmentWriter
            from koe5.search.indexed_model import load_encoder

            if settings["bm25"]["analyzer"] != self.analyzer.config:
                raise EngineError("this actor's Kiwi settings are not the index's")
            encoder = load_encoder("a Ray build", settings, device=self.device)
            self.writer = SegmentWriter.for_index(settings, encoder, self.analyzer, None, batch_size, False)
            self.settings = (settings, batch_size)
        return self.writer.prepare(docs)


class RayPipeline:
    """A :func:`~koe5.search.building.write_batches` target: each batch (a segment to be) is cut into
    one piece per actor, the pieces are prepared on the actors, and the segments are committed to the
    partial folder in the order the batches came.

    Every actor gets a piece of every segment, so all of them finish together at the end of a build
    (whole segments on actors left one core idle for the last segment when they did not divide
    evenly). Calls go straight to each actor's own queue, ``in_flight`` segments deep, rather than
    through an :class:`ray.util.ActorPool`, which hands an actor its next call only when the driver
    collects that actor's result in order, leaving the actor idle meanwhile.
    """

    def __init__(self, target, actors: list, in_flight: int, batch_size: int | None) -> None:
        self.target, self.actors, self.in_flight = target, actors, in_flight
        self.name = target.name
        # What an actor needs of the manifest (not its growing list of segments): sent with each piece.
        self.settings = {key: target.manifest[key] for key in ("model", "chunking", "bm25")}
        self.batch_size = batch_size
        self.segments: deque[tuple[int, list]] = deque()  # (documents, its pieces' results) in flight

    def done_ids(self) -> set[str]:
        return self.target.done_ids()

    def write(self, batch: list) -> int:
        cuts = np.linspace(0, len(batch), min(len(self.actors), len(batch)) + 1).astype(int)
        pieces = [
            actor.prepare.remote(self.settings, self.batch_size, batch[start:end])
            for actor, start, end in zip(self.actors, cuts[:-1], cuts[1:], strict=False)
        ]
        self.segments.append((len(batch), pieces))
        chunks = 0
        while len(self.segments) > self.in_flight:
            chunks += self._commit_next()
        return chunks

    def flush(self) -> int:
        chunks = 0
        while self.segments:
            chunks += self._commit_next()
        return chunks

    def _commit_next(self) -> int:
        import ray

        documents, pieces = self.segments.popleft()
        prepared = result(ray.get, pieces)
        columns = {key: [v for part in prepared for v in part[0][key]] for key in prepared[0][0]}
        vectors = np.concatenate([part[1] for part in prepared])
        tokens = [terms for part in prepared for terms in part[2]]
        return self.target.commit(documents, columns, vectors, tokens)


class StartedActors:
    """A Ray engine's cluster joined and its segment actors started (:meth:`RayEngine.started
    <koe5.distributed.RayEngine.started>`): the ``engine`` that ``Index.build`` takes, for the builds
    of the ``with`` block, one after another."""

    def __init__(self, engine, plan, actors: list, analyzer_config: dict) -> None:
        self.engine, self.plan, self.actors, self.analyzer_config = engine, plan, actors, analyzer_config
        self.broken = False

    def to_dict(self) -> dict:
        return self.engine.to_dict()

    @contextlib.contextmanager
    def pipeline(self, target) -> Iterator[RayPipeline]:
        wanted = target.manifest["bm25"]["analyzer"]
        if wanted != self.analyzer_config:
            raise EngineError(
                f"the engine's actors were started with Kiwi settings {self.analyzer_config}, "
                f"the index {target.name} has {wanted}: start the engine with the index's analyzer"
            )
        if self.broken:  # segments of the failed build may still be in flight on the actors
            raise EngineError("a build on these started actors failed: start the engine again")
        log.info("koe5: building %s on %d Ray actor(s)", target.name, self.plan.actors)
        try:
            yield RayPipeline(target, self.actors, self.engine.in_flight, self.engine.batch_size)
        except BaseException:
            self.broken = True
            raise


@contextlib.contextmanager
def started_actors(engine, analyzer_config: dict) -> Iterator[StartedActors]:
    """The cluster of ``engine`` (a :class:`~koe5.distributed.RayEngine`) joined or started, and its
    segment actors starting with Kiwi of ``analyzer_config``, for the ``with`` block."""
    name = f"{ACTOR_PREFIX}{uuid.uuid4().hex[:8]}"
    with engine.session() as plan, plan.start(SegmentActor, analyzer_config, name=name) as actors:
        yield StartedActors(engine, plan, actors, analyzer_config)


@contextlib.contextmanager
def ray_pipeline(target, engine) -> Iterator[RayPipeline]:
    """Actors for the build of ``target`` (a :class:`~koe5.search.building.PartialFolder`) for the
    ``with`` block, started for it."""
    with (
        started_actors(engine, target.manifest["bm25"]["analyzer"]) as actors,
        actors.pipeline(target) as pipeline,
    ):
        yield pipeline
